"""What both services' command lines share: flags with environment fallbacks, logging, serving."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")

# How long an idle keep-alive connection stays open. Ollama never closes one (Go's http.Server without
# an IdleTimeout), so clients reuse theirs after any pause. uvicorn's default of 5 s equals httpx's own
# expiry and Prometheus' 5 s scrape interval: a request sent as the server's timer fires meets a socket
# being closed, and the client gets "connection reset" instead of an answer. Ten minutes outlasts every
# common client's expiry (httpx 5 s, aiohttp 15 s, Go 90 s, curl 118 s, Prometheus 5 min), so the client
# always closes first. IDLE_CONNECTION_TIMEOUT (seconds) changes it for both services.
IDLE_CONNECTION_TIMEOUT_S = 600


def env_default(name: str, default: T, cast: Callable[[str], T]) -> T:
    """The value of environment variable ``name`` (flags still win), or ``default``."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not valid: {exc}") from exc


def add_flag(parser: argparse.ArgumentParser, flag: str, env: str, default: T, cast: Callable[[str], T], help: str) -> None:
    parser.add_argument(flag, type=cast, default=env_default(env, default, cast), help=f"{help} (env {env}; default {default})")


def service_parser(prog: str, description: str, prefix: str, host: str, port: int) -> argparse.ArgumentParser:
    """A service's command line, with its --host and --port (from ``{prefix}_HOST`` and ``{prefix}_PORT``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_flag(parser, "--host", f"{prefix}_HOST", host, str, "address to listen on")
    add_flag(parser, "--port", f"{prefix}_PORT", port, int, "port to listen on")
    return parser


def configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is the metrics' job


def serve(app: Any, host: str, port: int, http: Callable[..., Any] | str = "auto", tls: tuple[str, str] | None = None) -> None:
    """Run an ASGI app with uvicorn's fastest settings; access logging is the metrics' job.

    ``http``: uvicorn's HTTP protocol (a name, or a factory of its protocol objects);
    ``tls``: the certificate and key files to serve https with.
    """
    certfile, keyfile = tls or (None, None)
    uvicorn.run(
        app, host=host, port=port, http=http, ssl_certfile=certfile, ssl_keyfile=keyfile,
        log_level="warning", access_log=False, lifespan="on",
        server_header=False, date_header=False,  # the upstream's own headers pass through
        proxy_headers=False,  # nothing here reads the client's address: skip X-Forwarded-* on every request
        timeout_keep_alive=env_default("IDLE_CONNECTION_TIMEOUT", IDLE_CONNECTION_TIMEOUT_S, float),
    )
