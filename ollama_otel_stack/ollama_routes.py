"""Ollama's HTTP routes (server/routes.go ``GenerateRoutes``), as both services name them: the GenAI operation each
generation route performs, and the low-cardinality ``http.route`` of any path. The proxy labels what it forwards by
them, and the collector the requests Ollama's own access log lists."""

from __future__ import annotations

CHAT = "chat"
TEXT_COMPLETION = "text_completion"
EMBEDDINGS = "embeddings"

OPERATIONS: dict[str, str] = {
    "/api/chat": CHAT,
    "/api/generate": TEXT_COMPLETION,
    "/api/embed": EMBEDDINGS,
    "/api/embeddings": EMBEDDINGS,
    "/v1/chat/completions": CHAT,
    "/v1/completions": TEXT_COMPLETION,
    "/v1/embeddings": EMBEDDINGS,
    "/v1/responses": CHAT,  # the OpenAI Responses API (Codex-style clients)
    "/v1/messages": CHAT,  # the Anthropic Messages API (Claude Code)
}
# Every other endpoint Ollama documents; anything else is recorded as OTHER_ROUTE so
# that a client probing random paths cannot grow the metrics.
_PLAIN_ROUTES = {
    "/",
    "/api/version",
    "/api/tags",
    "/api/ps",
    "/api/show",
    "/api/pull",
    "/api/push",
    "/api/create",
    "/api/copy",
    "/api/delete",
    "/v1/models",
    "/v1/audio/transcriptions",
    "/api/experimental/web_search",
    "/api/experimental/web_fetch",
}
_TEMPLATE_ROUTES = (
    ("/api/blobs/", "/api/blobs/{digest}"),
    ("/v1/models/", "/v1/models/{model}"),
)
OTHER_ROUTE = "other"
# The query the stack's own requests to Ollama carry (the dashboard's status line asks a model directly): Ollama's
# access log writes the query, so the collector tells them from clients that bypass the proxy.
OWN_QUERY = "source=ollama-otel-stack"


def route_of(path: str) -> str:
    """The low-cardinality ``http.route`` for a request path."""
    if path in OPERATIONS or path in _PLAIN_ROUTES:
        return path
    for prefix, template in _TEMPLATE_ROUTES:
        if path.startswith(prefix) and len(path) > len(prefix):
            return template
    return OTHER_ROUTE
