"""What the proxy and the hardware collector share, and the tools around them.

- ``telemetry``: the OpenTelemetry set-up (resource, readers, exporters) both services use;
- ``otlp_spans``: the lean OTLP/protobuf span encoder behind the trace exporter;
- ``service``: flags with environment fallbacks, logging and the uvicorn server set-up;
- ``stack``: ``make up`` / ``make down``, the whole stack as native processes;
- ``loadgen``: ``ollama-load``, the traffic generator.
"""
