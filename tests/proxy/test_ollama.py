"""otel_proxy/ollama.py on its own: routes, request facts, reports and error bodies, each against what
Ollama's Go source writes (api/types.go, server/routes.go, openai/openai.go, anthropic/anthropic.go).

Every case states the whole expected value (a Report compared field by field), so that a changed
field name, default or unit fails here in milliseconds; `make mutation` runs these on the module."""

from __future__ import annotations

import json

import pytest

from otel_proxy.ollama import (
    CHAT,
    EMBEDDINGS,
    OPERATIONS,
    OTHER_ROUTE,
    TEXT_COMPLETION,
    Report,
    RequestFacts,
    error_body,
    is_cloud_model,
    parse_json,
    read_request,
    report_from_body,
    report_from_json,
    report_from_tail,
    route_of,
)

# server/routes.go GenerateRoutes: every route Ollama serves, with the operation the GenAI conventions name for it.
OLLAMA_ROUTES = {
    "/api/chat": CHAT, "/api/generate": TEXT_COMPLETION, "/api/embed": EMBEDDINGS, "/api/embeddings": EMBEDDINGS,
    "/v1/chat/completions": CHAT, "/v1/completions": TEXT_COMPLETION, "/v1/embeddings": EMBEDDINGS,
    "/v1/responses": CHAT, "/v1/messages": CHAT,
}
PLAIN = ["/", "/api/version", "/api/tags", "/api/ps", "/api/show", "/api/pull", "/api/push", "/api/create", "/api/copy",
         "/api/delete", "/v1/models", "/v1/audio/transcriptions", "/api/experimental/web_search", "/api/experimental/web_fetch"]


def test_each_route_ollama_serves_is_its_own_label_and_anything_else_is_other():
    assert OPERATIONS == OLLAMA_ROUTES
    for path in [*OLLAMA_ROUTES, *PLAIN]:
        assert route_of(path) == path
    assert route_of("/api/blobs/sha256:1a2b") == "/api/blobs/{digest}"
    assert route_of("/v1/models/llama3.2:1b") == "/v1/models/{model}"
    for path in ("/api/blobs/", "/v1/models/x"[:-1], "/api/chatx", "/API/chat", "/wp-admin", "", "/api/blob/x"):
        assert route_of(path) == OTHER_ROUTE, path
    assert OTHER_ROUTE == "other"


def test_cloud_models_are_named_by_their_suffix():
    assert [is_cloud_model(name) for name in ("gpt-oss:120b-cloud", "qwen3-coder:cloud", "llama3.2", "cloudy:1b", "", None)] == \
        [True, True, False, False, False, False]


@pytest.mark.parametrize(
    ("route", "body", "facts"),
    [
        ("/api/chat", {"model": "llama3.2"}, RequestFacts("llama3.2", True, False, {}, None)),
        ("/api/generate", {"model": "m", "stream": False}, RequestFacts("m", False, False, {}, None)),
        ("/api/pull", {"model": "m"}, RequestFacts("m", True, False, {}, None)),
        ("/api/push", {"model": "m"}, RequestFacts("m", True, False, {}, None)),
        ("/api/create", {"model": "m"}, RequestFacts("m", True, False, {}, None)),
        ("/api/embed", {"model": "m"}, RequestFacts("m", False, False, {}, None)),
        ("/v1/chat/completions", {"model": "m", "stream": True, "stream_options": {"include_usage": True}},
         RequestFacts("m", True, True, {}, None)),
        ("/v1/chat/completions", {"model": "m", "stream": True, "stream_options": {"include_usage": 1}}, RequestFacts("m", True, False, {}, None)),
        ("/v1/chat/completions", {"model": "m", "stream_options": ["include_usage"]}, RequestFacts("m", False, False, {}, None)),
        ("/api/chat", {"model": "m", "stream": "no", "options": {"num_ctx": 8192}, "keep_alive": "5m"},
         RequestFacts("m", True, False, {"num_ctx": 8192}, "5m")),
        ("/api/chat", {"model": "", "options": [1]}, RequestFacts(None, True, False, {}, None)),
        ("/api/chat", {"model": 7, "keep_alive": 0}, RequestFacts(None, True, False, {}, 0)),
        ("/api/generate", [1, 2], RequestFacts(None, True)),
        ("/v1/completions", "text", RequestFacts(None, False)),
    ],
)
def test_a_whole_body_gives_its_model_stream_flag_usage_request_options_and_keep_alive(route, body, facts):
    assert read_request(route, json.dumps(body).encode(), complete=True) == facts


def test_a_body_that_is_not_json_gives_nothing_but_the_routes_default():
    for body in (b"{", b"\xff\xfe", b"[" * 100_000, b""):
        assert read_request("/api/chat", body, complete=True) == RequestFacts(None, True)
        assert read_request("/v1/embeddings", body, complete=True) == RequestFacts(None, False)


def test_the_first_bytes_of_a_large_body_give_model_and_stream_by_pattern():
    prefix = b'{"messages": [{"role": "user"}], "model" :  "qwen\\"3:8b", "stream":false, "stream_options": {"include_usage": true}, "x'
    assert read_request("/api/chat", prefix, complete=False) == RequestFacts('qwen"3:8b', False, True)
    assert read_request("/api/chat", b'{"model":"m","stream": true', complete=False) == RequestFacts("m", True, False)
    assert read_request("/v1/chat/completions", b'{"model":"m"', complete=False) == RequestFacts("m", False, False)
    assert read_request("/api/generate", b'{"model":"m"', complete=False) == RequestFacts("m", True, False)
    assert read_request("/api/chat", b'{"model":"' + b"a" * 256 + b'"', complete=False).model == "a" * 256
    assert read_request("/api/chat", b'{"model":"' + b"a" * 257 + b'"', complete=False).model is None
    assert read_request("/api/chat", b'{"model":"bad\\x"', complete=False) == RequestFacts(None, True, False)
    assert read_request("/api/chat", b'{"model":""', complete=False).model is None
    assert read_request("/api/chat", b'{"images":["AAAA', complete=False) == RequestFacts(None, True, False)
    # the options of a body not read whole are not known (None), never taken for Ollama's defaults ({})
    assert read_request("/api/chat", b'{"model":"m","options":{"num_ctx":8192}', complete=False).options is None


# A final /api/chat chunk as server/routes.go ChatHandler writes it (api.ChatResponse, durations in ns).
NATIVE_FINAL = {
    "model": "llama3.2", "created_at": "2026-12-01T10:00:00Z", "message": {"role": "assistant", "content": "", "thinking": "hm", "tool_calls": [{}]},
    "done": True, "done_reason": "stop", "total_duration": 2_500_000_000, "load_duration": 1_000_000_000, "prompt_eval_count": 26,
    "prompt_eval_duration": 250_000_000, "eval_count": 298, "eval_duration": 1_200_000_000,
}


def test_a_native_final_chunk_is_read_in_seconds_and_a_missing_or_mistyped_field_is_not_reported():
    assert report_from_json("/api/chat", NATIVE_FINAL) == Report(
        input_tokens=26, output_tokens=298, finish_reason="stop", response_model="llama3.2", load_s=1.0, prompt_eval_s=0.25,
        eval_s=1.2, total_s=2.5, reasoning=True, tool_calls=True)
    assert report_from_json("/api/generate", {"done": True}) == Report()
    mistyped = {"prompt_eval_count": True, "eval_count": 3.0, "load_duration": False, "total_duration": "1", "done_reason": 1, "model": 2, "message": "x"}
    assert report_from_json("/api/generate", mistyped) == Report()
    assert report_from_json("/api/embed", {"model": "e", "prompt_eval_count": 4, "total_duration": 5e8, "load_duration": 0}) == \
        Report(input_tokens=4, response_model="e", total_s=0.5, load_s=0.0)
    assert report_from_json("/api/chat", {"error": "model 'x' not found"}) == Report(error="model 'x' not found")
    assert report_from_json("/api/chat", {"error": 5}) == Report()


def test_an_openai_body_gives_its_usage_and_the_first_choices_finish_reason():
    body = {"model": "llama3.2", "choices": [{"index": 0, "message": {"role": "assistant", "reasoning": "r", "tool_calls": [{}]}, "finish_reason": "tool_calls"},
                                             {"finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
    assert report_from_json("/v1/chat/completions", body) == Report(
        input_tokens=11, output_tokens=7, finish_reason="tool_calls", response_model="llama3.2", reasoning=True, tool_calls=True)
    assert report_from_json("/v1/completions", {"choices": [{"text": "x", "finish_reason": "length"}]}) == Report(finish_reason="length")
    for choices in ([], ["x"], {"0": {}}, [{"finish_reason": 3}]):
        assert report_from_json("/v1/chat/completions", {"choices": choices, "usage": "none", "model": 5}) == Report()
    # openai.NewError: {"error": {"message", "type", "param", "code"}}
    assert report_from_json("/v1/chat/completions", {"error": {"message": "bad", "type": "api_error"}}) == Report(error="bad")
    assert report_from_json("/v1/chat/completions", {"error": {"type": "api_error"}}) == Report(error="{'type': 'api_error'}")


def test_a_responses_object_gives_usage_status_or_the_reason_it_stopped_and_its_output_kinds():
    response = {"id": "resp_1", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "model": "gpt-oss:20b",
                "output": [{"type": "reasoning"}, {"type": "function_call"}, "x"], "usage": {"input_tokens": 40, "output_tokens": 16}}
    assert report_from_json("/v1/responses", response) == Report(
        input_tokens=40, output_tokens=16, finish_reason="max_output_tokens", response_model="gpt-oss:20b", reasoning=True, tool_calls=True)
    assert report_from_json("/v1/responses", {"status": "completed", "output": [{"type": "message"}], "incomplete_details": None}) == \
        Report(finish_reason="completed")
    assert report_from_json("/v1/responses", {"status": "", "model": "", "output": {"type": "reasoning"}}) == Report()
    assert report_from_json("/v1/responses", {"status": "failed", "error": {"code": "server_error", "message": "boom"}}) == \
        Report(finish_reason="failed", error="boom")


def test_an_anthropic_message_gives_usage_stop_reason_and_its_block_kinds():
    body = {"type": "message", "model": "qwen3:8b", "stop_reason": "tool_use", "content": [{"type": "thinking"}, {"type": "tool_use"}, 1],
            "usage": {"input_tokens": 9, "output_tokens": 30}}
    assert report_from_json("/v1/messages", body) == Report(
        input_tokens=9, output_tokens=30, finish_reason="tool_use", response_model="qwen3:8b", reasoning=True, tool_calls=True)
    assert report_from_json("/v1/messages", {"content": [{"type": "text"}], "stop_reason": None}) == Report()
    assert report_from_json("/v1/messages", {"content": {"type": "thinking"}}) == Report()
    # anthropic.NewError: {"type": "error", "error": {"type", "message"}}
    assert report_from_json("/v1/messages", {"type": "error", "error": {"type": "api_error", "message": "boom"}}) == Report(error="boom")


def test_a_whole_body_that_is_not_an_object_reports_nothing_and_one_that_is_not_json_says_so():
    assert report_from_body("/api/chat", json.dumps(NATIVE_FINAL).encode()) == report_from_json("/api/chat", NATIVE_FINAL)
    assert report_from_body("/api/chat", b"<html>bad gateway</html>") == Report(error="response body is not JSON")
    assert report_from_body("/api/chat", b"  \n") == Report()
    assert report_from_body("/v1/chat/completions", b"[1]") == Report()
    assert parse_json(b"[" * 100_000) is None and parse_json(b"\xff") is None and parse_json(b'{"a": 1}') == {"a": 1}


def test_the_tail_of_a_large_body_gives_the_numbers_written_last():
    tail = b'...ing "x\\"eval_count\\": 999" here","done":true,"total_duration":3000000000,"load_duration":1000000,"prompt_eval_count":12,' \
           b'"prompt_eval_duration":500000000,"eval_count":40,"eval_duration":2000000000}'
    assert report_from_tail("/api/generate", tail) == Report(input_tokens=12, output_tokens=40, load_s=0.001, prompt_eval_s=0.5, eval_s=2.0, total_s=3.0)
    usage = b'..."usage":{"prompt_tokens":5,"completion_tokens": 6,"total_tokens":11}}'
    assert report_from_tail("/v1/chat/completions", usage) == Report(input_tokens=5, output_tokens=6)
    assert report_from_tail("/v1/responses", b'"usage":{"input_tokens":3,"output_tokens":4}') == Report(input_tokens=3, output_tokens=4)
    assert report_from_tail("/v1/messages", b'"usage":{"input_tokens":3,"output_tokens":4}') == Report(input_tokens=3, output_tokens=4)
    assert report_from_tail("/api/chat", b"no numbers") == Report()
    # the cached count from a tail, in each API's own details object (Ollama 0.33.3 and later write it last but one)
    usage = b'"usage":{"prompt_tokens":50,"completion_tokens":6,"total_tokens":56,"prompt_tokens_details":{"cached_tokens":32}}}'
    assert report_from_tail("/v1/chat/completions", usage) == Report(input_tokens=50, output_tokens=6, cached_input_tokens=32)
    usage = b'"usage":{"input_tokens":50,"input_tokens_details":{"cached_tokens":32},"output_tokens":6,"total_tokens":56}}}'
    assert report_from_tail("/v1/responses", usage) == Report(input_tokens=50, output_tokens=6, cached_input_tokens=32)
    usage = b'"usage":{"input_tokens":18,"cache_read_input_tokens":32,"output_tokens":6}}'
    assert report_from_tail("/v1/messages", usage) == Report(input_tokens=50, output_tokens=6, cached_input_tokens=32)
    assert report_from_tail("/api/chat", b'"prompt_eval_count":50,"prompt_eval_cached_count":32,"eval_count":6}') == \
        Report(input_tokens=50, output_tokens=6, cached_input_tokens=32)


@pytest.mark.parametrize(
    ("route", "status", "expected"),
    [
        # gin.H{"error": ...}, server/routes.go
        ("/api/chat", 502, {"error": "m"}),
        # openai.NewError (openai/openai.go): 400 and 401 invalid_request_error, 404 not_found_error, else api_error
        ("/v1/chat/completions", 400, {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}),
        ("/v1/embeddings", 401, {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}),
        ("/v1/responses", 404, {"error": {"message": "m", "type": "not_found_error", "param": None, "code": None}}),
        ("/v1/models", 502, {"error": {"message": "m", "type": "api_error", "param": None, "code": None}}),
        # anthropic.NewError (anthropic/anthropic.go), with the error types of Anthropic's API
        *(("/v1/messages", status, {"type": "error", "error": {"type": kind, "message": "m"}}) for status, kind in (
            (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"),
            (413, "request_too_large"), (429, "rate_limit_error"), (431, "invalid_request_error"), (502, "api_error"),
            (503, "overloaded_error"), (504, "api_error"))),
    ],
)
def test_the_proxys_own_errors_take_the_shape_of_the_api_called(route, status, expected):
    body = error_body(route, status, "m")
    assert json.loads(body) == expected
    assert body == json.dumps(expected, separators=(",", ":")).encode()  # compact, as Go's encoder writes it
