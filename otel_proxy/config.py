"""The proxy's settings: one object with documented defaults, built once in ``__main__``."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from otel_proxy.clients import ApiKeys, KeyFile
from ollama_otel_stack.stack.defaults import OLLAMA_URL, PROXY_PORT


@dataclass(frozen=True)
class ProxySettings:
    host: str = "127.0.0.1"  # loopback: the proxy never exposes Ollama to the network by accident
    port: int = PROXY_PORT
    upstream: str = OLLAMA_URL
    connect_timeout_s: float = 5.0
    # The longest silence allowed between two chunks from Ollama (and before the first:
    # a cold load of a large model can take minutes). Streams that keep flowing are never cut.
    idle_timeout_s: float = 300.0
    max_models: int = 100  # distinct gen_ai.request.model values; the rest become "other"
    recent_requests: int = 200  # finished requests kept for /-/requests
    # conversations remembered per model, to tell a turn that lost the prompt cache (otel_proxy/continuations.py); 0: none
    conversations: int = 32
    body_prefix_bytes: int = 1 << 20  # the most of a request body read to learn model and stream
    max_header_bytes: int = 64 << 10  # a larger request head gets 431 as it is parsed, never forwarded (Ollama's own limit is 1 MiB)
    header_timeout_s: float = 30.0  # a head must arrive, and a body keep arriving, within this (otel_proxy/server_protocol.py)
    max_connections: int = 0  # open client connections at once; 0: from the file limit (connection_caps)
    max_connections_per_peer: int = 0  # from one address; 0: a quarter of max_connections
    cold_load_threshold_s: float = 0.1  # a load_duration under this was no load (scheduling only)
    ps_interval_s: float = 5.0
    num_parallel: int = 1  # Ollama's OLLAMA_NUM_PARALLEL (its default is 1): replays the slot waits of answers Ollama did not time
    max_clients: int = 50  # distinct X-Client-Name values in the metrics; the rest are "other"
    api_keys: ApiKeys | KeyFile | None = None  # with keys, every Ollama path needs one (otel_proxy/clients.py)
    max_concurrent_per_key: int = 0  # with keys: requests one key may have in flight at once (0: no limit); past it 429
    metrics_token: str | None = None  # with a token, /metrics, /-/requests and /-/ready need it (as a key is presented)
    tls: tuple[str, str] | None = None  # certificate and key files: the proxy then serves https
    capture_content: bool = False  # OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
    # A Server-Timing header on every answer with the proxy's own time (proxy_added_s): off, so that an answer's
    # head is Ollama's, byte for byte; the histogram otel_proxy_added_duration_seconds is always kept.
    server_timing: bool = False
    # Who makes the CLIENT span of each call to Ollama: the proxy ("proxy": the span
    # opentelemetry-instrumentation-httpx makes, for a fifth of the cost, see
    # otel_proxy/upstream_spans.py) or the instrumentation's own wrapper ("httpx").
    client_spans: str = "proxy"
    # Who speaks HTTP/1.1 to a plain-http Ollama: the proxy's own transport ("proxy",
    # otel_proxy/upstream.py, held to httpcore by tests/e2e/proxy/test_transport_conformance.py) or
    # httpx's default one, httpcore ("httpx"). An https upstream always gets httpcore.
    upstream_transport: str = "proxy"

    @property
    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout_s,
            read=self.idle_timeout_s,
            write=self.idle_timeout_s,
            pool=self.connect_timeout_s,
        )

    def connection_caps(self, file_limit: int) -> tuple[int, int]:
        """(total, per peer): where not set, from the process's file limit, each proxied request holding two files (the
        client's connection and Ollama's), less some for the rest (listeners, logs, /api/ps)."""
        total = self.max_connections or max(16, (file_limit - 64) // 2)
        return total, self.max_connections_per_peer or max(4, total // 4)

    @property
    def instance_id(self) -> str:
        return f"{self.host}:{self.port}"
