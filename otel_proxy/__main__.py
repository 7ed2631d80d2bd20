"""``python -m otel_proxy``: flags and environment into ProxySettings, then serve."""

from __future__ import annotations

import functools
import logging
import os
import resource
from pathlib import Path

from otel_proxy.app import create_app
from otel_proxy.server_protocol import ConnectionLimits, ServerProtocol
from otel_proxy.clients import KeyFile, KeyFileError
from otel_proxy.config import ProxySettings
from ollama_otel_stack.service import add_flag, configure_logging, serve, service_parser
from ollama_otel_stack.telemetry import setup_telemetry

log = logging.getLogger("otel_proxy")
DEFAULTS = ProxySettings()
CLIENT_SPANS = ("proxy", "httpx")
UPSTREAM_TRANSPORTS = ("proxy", "httpx")


def settings_from(argv: list[str] | None = None) -> ProxySettings:
    parser = service_parser("otel-proxy", "A measuring proxy in front of Ollama.", "OTEL_PROXY", DEFAULTS.host, DEFAULTS.port)
    add_flag(parser, "--upstream", "OLLAMA_UPSTREAM", DEFAULTS.upstream, str, "Ollama's base URL")
    add_flag(parser, "--connect-timeout", "OTEL_PROXY_CONNECT_TIMEOUT", DEFAULTS.connect_timeout_s, float, "seconds to connect to Ollama")
    add_flag(parser, "--idle-timeout", "OTEL_PROXY_IDLE_TIMEOUT", DEFAULTS.idle_timeout_s, float, "longest silence from Ollama, in seconds, before a request fails")
    add_flag(parser, "--max-models", "OTEL_PROXY_MAX_MODELS", DEFAULTS.max_models, int, "distinct model names in metrics before the rest become 'other'")
    add_flag(parser, "--recent-requests", "OTEL_PROXY_RECENT_REQUESTS", DEFAULTS.recent_requests, int, "finished requests kept for /-/requests")
    add_flag(parser, "--conversations", "OTEL_PROXY_CONVERSATIONS", DEFAULTS.conversations, int,
             "conversations remembered per model, to tell the turns that lost the prompt cache (fingerprints of the bodies, never text); 0: none")
    add_flag(parser, "--cold-load-threshold", "OTEL_PROXY_COLD_LOAD_THRESHOLD", DEFAULTS.cold_load_threshold_s, float, "a load_duration under this many seconds was no model load")
    add_flag(parser, "--ps-interval", "OTEL_PROXY_PS_INTERVAL", DEFAULTS.ps_interval_s, float, "seconds between reads of Ollama's /api/ps (resident models)")
    add_flag(parser, "--num-parallel", "OLLAMA_NUM_PARALLEL", DEFAULTS.num_parallel, int,
             "Ollama's OLLAMA_NUM_PARALLEL (read from the same variable): the slot count that times the slot waits of answers Ollama does not time")
    add_flag(
        parser, "--client-spans", "OTEL_PROXY_CLIENT_SPANS", DEFAULTS.client_spans, str,
        "who makes the client span of each call to Ollama: proxy (the proxy, with opentelemetry-instrumentation-httpx's attribute functions) or httpx (the instrumentation's wrapper, five times the cost)",
    )
    add_flag(
        parser, "--upstream-transport", "OTEL_PROXY_UPSTREAM_TRANSPORT", DEFAULTS.upstream_transport, str,
        "who speaks HTTP/1.1 to Ollama: proxy (its own transport, for speed) or httpx (httpx's default transport, httpcore)",
    )
    add_flag(parser, "--server-timing", "OTEL_PROXY_SERVER_TIMING", DEFAULTS.server_timing, lambda value: value.strip().lower() in ("1", "true", "yes", "on"),
             "add `Server-Timing: otel-proxy;dur=<ms>` to every answer of Ollama's: the time the proxy held the request and the answer's head (1/0)")
    add_flag(parser, "--header-timeout", "OTEL_PROXY_HEADER_TIMEOUT", DEFAULTS.header_timeout_s, float,
             "seconds a request head may take to arrive, and a body between two of its reads (nginx's client_header_timeout)")
    add_flag(parser, "--max-connections", "OTEL_PROXY_MAX_CONNECTIONS", DEFAULTS.max_connections, int,
             "open client connections at once, past which a new one gets 503 (0: half the open-file limit)")
    add_flag(parser, "--max-connections-per-peer", "OTEL_PROXY_MAX_CONNECTIONS_PER_PEER", DEFAULTS.max_connections_per_peer, int,
             "open connections from one address (0: a quarter of --max-connections)")
    add_flag(parser, "--max-clients", "OTEL_PROXY_MAX_CLIENTS", DEFAULTS.max_clients, int, "distinct X-Client-Name values in metrics before the rest become 'other'")
    add_flag(parser, "--api-keys", "OTEL_PROXY_API_KEYS_FILE", "", str, "a file of `name: key` lines: every Ollama path then needs one of the keys")
    add_flag(parser, "--max-concurrent-per-key", "OTEL_PROXY_MAX_CONCURRENT_PER_KEY", DEFAULTS.max_concurrent_per_key, int, "with --api-keys: requests one key may have in flight at once, 0 for no limit (past it: 429)")
    add_flag(parser, "--metrics-token", "OTEL_PROXY_METRICS_TOKEN", "", str, "a token /metrics, /-/requests and /-/ready then need (Authorization: Bearer <token>); visible in ps, prefer --metrics-token-file")
    add_flag(parser, "--metrics-token-file", "OTEL_PROXY_METRICS_TOKEN_FILE", "", str, "a file holding that token")
    add_flag(parser, "--tls-cert", "OTEL_PROXY_TLS_CERT", "", str, "a PEM certificate (chain): the proxy then serves https")
    add_flag(parser, "--tls-key", "OTEL_PROXY_TLS_KEY", "", str, "the certificate's PEM private key")
    args = parser.parse_args(argv)
    keys = None
    if args.api_keys:
        try:
            keys = KeyFile(Path(args.api_keys))
        except KeyFileError as exc:
            parser.error(str(exc))
    if args.max_concurrent_per_key < 0 or (args.max_concurrent_per_key and keys is None):
        parser.error("--max-concurrent-per-key needs --api-keys (it limits each key) and a count of 0 or more")
    token = args.metrics_token or None
    if args.metrics_token_file:
        if token is not None:
            parser.error("give --metrics-token or --metrics-token-file, not both")
        try:
            token = Path(args.metrics_token_file).read_text().strip()
        except OSError as exc:
            parser.error(f"--metrics-token-file {args.metrics_token_file}: cannot be read ({exc.strerror})")
        if not token:
            parser.error(f"--metrics-token-file {args.metrics_token_file} is empty")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path and not os.access(path, os.R_OK):
            parser.error(f"{flag} {path} cannot be read")
    if args.client_spans not in CLIENT_SPANS:
        parser.error(f"--client-spans must be one of {', '.join(CLIENT_SPANS)}, not {args.client_spans!r}")
    if args.header_timeout <= 0 or args.max_connections < 0 or args.max_connections_per_peer < 0:
        parser.error("--header-timeout is a number of seconds over 0; --max-connections and --max-connections-per-peer are 0 (from the file limit) or more")
    if args.upstream_transport not in UPSTREAM_TRANSPORTS:
        parser.error(f"--upstream-transport must be one of {', '.join(UPSTREAM_TRANSPORTS)}, not {args.upstream_transport!r}")
    capture = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() in {"true", "1", "yes"}
    return ProxySettings(
        host=args.host,
        port=args.port,
        upstream=args.upstream,
        connect_timeout_s=args.connect_timeout,
        idle_timeout_s=args.idle_timeout,
        max_models=args.max_models,
        recent_requests=args.recent_requests,
        conversations=args.conversations,
        cold_load_threshold_s=args.cold_load_threshold,
        ps_interval_s=args.ps_interval,
        num_parallel=max(1, args.num_parallel),
        capture_content=capture,
        server_timing=args.server_timing,
        client_spans=args.client_spans,
        upstream_transport=args.upstream_transport,
        max_clients=args.max_clients,
        header_timeout_s=args.header_timeout,
        max_connections=args.max_connections,
        max_connections_per_peer=args.max_connections_per_peer,
        api_keys=keys,
        max_concurrent_per_key=args.max_concurrent_per_key,
        metrics_token=token,
        tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
    )


def raise_file_limit() -> int:
    """The soft limit on open files raised to the hard one (systemd's default soft limit is 1,024: at it every other client
    is refused, silently); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("the open-file limit stays %d (raising it to %d failed: %s)", soft, hard, exc)
    return soft


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    settings = settings_from(argv)
    telemetry = setup_telemetry("otel-proxy", settings.instance_id)
    files = raise_file_limit()
    total, per_peer = settings.connection_caps(files)
    log.info("open files up to %d: at most %d client connections, %d from one address", files, total, per_peer)
    limits = ConnectionLimits(settings.max_header_bytes, settings.header_timeout_s, total, per_peer)
    try:
        protocol = functools.partial(ServerProtocol, limits=limits)
        serve(create_app(settings, telemetry), settings.host, settings.port, http=protocol, tls=settings.tls)
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
