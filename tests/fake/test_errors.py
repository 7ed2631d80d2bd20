"""The fake's error answers, text for text as Ollama's Go source writes them (ollama/ollama fb30760): each case names
the handler or middleware and what it writes. A client (and the proxy's error_type) sees what Ollama would send."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fake.ollama import create_app

MODEL = "llama3.2:1b"
USER = [{"role": "user", "content": "hi"}]
BUSY = "server busy, please try again.  maximum pending requests exceeded"  # server/sched.go ErrMaxQueue (two spaces)


def openai_error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}  # openai.NewError, written by middleware/openai.go


CASES = [
    # server/routes.go GenerateHandler: io.EOF → "missing request body"; writeModelRefParseError(404, "model '%s' not found"); getExistingName
    ("/api/generate", b"", 400, {"error": "missing request body"}),
    ("/api/generate", {"prompt": "x"}, 404, {"error": "model '' not found"}),
    ("/api/generate", {"model": "nope:1b", "prompt": "x"}, 404, {"error": "model 'nope:1b' not found"}),
    # ChatHandler: writeModelRefParseError(400, "model is required")
    ("/api/chat", b"", 400, {"error": "missing request body"}),
    ("/api/chat", {"messages": USER}, 400, {"error": "model is required"}),
    ("/api/chat", {"model": "nope:1b", "messages": USER}, 404, {"error": "model 'nope:1b' not found"}),
    # EmbedHandler: writeModelRefParseError(404, "model '%s' not found")
    ("/api/embed", {"input": "x"}, 404, {"error": "model '' not found"}),
    ("/api/embed", b"", 400, {"error": "missing request body"}),
    # EmbeddingsHandler: writeModelRefParseError(400, "model is required")
    ("/api/embeddings", {"prompt": "x"}, 400, {"error": "model is required"}),
    # ShouldBindJSON is Go's json.Decoder (tests/fake/go_decode.py): its syntax errors, unexpected EOF, the first value only
    ("/api/chat", b"{not json", 400, {"error": "invalid character 'n' looking for beginning of object key string"}),
    ("/api/generate", b'{"model": "nope:1b",}', 400, {"error": "invalid character '}' looking for beginning of object key string"}),
    ("/api/generate", b'{"model": "nope:1b"', 400, {"error": "unexpected EOF"}),
    ("/api/generate", b'{"model": "nope:1b"} and more', 404, {"error": "model 'nope:1b' not found"}),
    ("/api/chat", b"[1]", 400, {"error": "json: cannot unmarshal array into Go value of type api.ChatRequest"}),
    ("/api/embed", b'{"model": 7}', 400, {"error": "json: cannot unmarshal number into Go struct field EmbedRequest.model of type string"}),
    ("/v1/chat/completions", b'{"model": "x", "messages": [}', 400, openai_error("invalid character '}' looking for beginning of value", "invalid_request_error")),
    ("/v1/messages", b"true", 400, ("invalid_request_error", "json: cannot unmarshal bool into Go value of type anthropic.MessagesRequest")),
    # middleware/openai.go: ShouldBindJSON's error (io.EOF's text) in openai.NewError; ChatMiddleware's empty messages
    ("/v1/chat/completions", b"", 400, openai_error("EOF", "invalid_request_error")),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, openai_error("[] is too short - 'messages'", "invalid_request_error")),
    ("/v1/chat/completions", {"messages": USER}, 400, openai_error("model is required", "invalid_request_error")),
    ("/v1/chat/completions", {"model": "nope:1b", "messages": USER}, 404, openai_error("model 'nope:1b' not found", "not_found_error")),
    ("/v1/completions", {"prompt": "x"}, 404, openai_error("model '' not found", "not_found_error")),
    ("/v1/responses", {"model": "nope:1b", "input": "x"}, 404, openai_error("model 'nope:1b' not found", "not_found_error")),
    # middleware/anthropic.go AnthropicMessagesMiddleware, then ChatHandler; anthropic.NewError's types
    ("/v1/messages", {"max_tokens": 5, "messages": USER}, 400, ("invalid_request_error", "model is required")),
    ("/v1/messages", {"model": MODEL, "messages": USER}, 400, ("invalid_request_error", "max_tokens is required and must be positive")),
    ("/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": []}, 400, ("invalid_request_error", "messages is required")),
    ("/v1/messages", {"model": "nope:1b", "max_tokens": 5, "messages": USER}, 404, ("not_found_error", "model 'nope:1b' not found")),
]


async def post(path: str, body: bytes | dict, configure: dict | None = None) -> httpx.Response:
    app = create_app(token_delay=0, load_delay=0)
    fake = app.state.fake
    if configure:
        fake.scheduler.max_queue = configure.get("max_queue", fake.scheduler.max_queue)
        fake.failures.update(configure.get("failures", {}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as client:
        if isinstance(body, bytes):
            return await client.post(path, content=body)
        return await client.post(path, json=body)


def check(answer: httpx.Response, status: int, expected: dict | tuple) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    if isinstance(expected, tuple):  # anthropic.NewError: a request id of its own each time
        assert body["type"] == "error" and body["error"] == {"type": expected[0], "message": expected[1]} and body["request_id"].startswith("req_")
    else:
        assert body == expected


@pytest.mark.parametrize(("path", "body", "status", "expected"), CASES)
def test_each_error_is_ollamas_text(path, body, status, expected):
    check(asyncio.run(post(path, body)), status, expected)


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("/api/generate", {"model": MODEL, "prompt": "x"}, {"error": BUSY}),  # streamed: the 503 comes before any chunk
    ("/api/chat", {"model": MODEL, "messages": USER, "stream": False}, {"error": BUSY}),
    ("/v1/chat/completions", {"model": MODEL, "messages": USER, "stream": True}, openai_error(BUSY, "api_error")),
    ("/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": USER, "stream": True}, ("overloaded_error", BUSY)),
])
def test_past_ollama_max_queue_a_load_is_refused_with_a_503(path, body, expected):
    """handleScheduleError: ErrMaxQueue → 503; a loaded runner would take the request at once (GetRunner's warm path)."""
    check(asyncio.run(post(path, body, {"max_queue": 0})), 503, expected)


def test_a_failing_model_answers_its_status_in_each_apis_shape():
    failures = {"failures": {MODEL: (500, "llama runner process has terminated: exit status 2")}}
    check(asyncio.run(post("/api/generate", {"model": MODEL, "prompt": "x"}, failures)), 500, {"error": "llama runner process has terminated: exit status 2"})
    check(asyncio.run(post("/v1/responses", {"model": MODEL, "input": "x"}, failures)), 500, openai_error("llama runner process has terminated: exit status 2", "api_error"))
    check(asyncio.run(post("/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": USER}, failures)), 500, ("api_error", "llama runner process has terminated: exit status 2"))
