# One image for the proxy, the hardware collector and the dashboard; compose picks the command.
FROM python:3.11.14-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md telemetry.py otlp_spans.py service.py ./
COPY otel_proxy/ otel_proxy/
COPY hw_collector/ hw_collector/
COPY ui/ ui/
COPY loadgen/ loadgen/
COPY stack/ stack/
RUN pip install --no-cache-dir '.[nvidia]'
ENV PYTHONUNBUFFERED=1
EXPOSE 8001 8002 3001
CMD ["otel-proxy", "--host", "0.0.0.0"]
