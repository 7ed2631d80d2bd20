"""The proxy's own HTTP/1.1 transport (otel_proxy/upstream.py) against httpx's default one (httpcore).

Each case sends the same request sequence through two proxies, one with each transport
(``--upstream-transport proxy`` / ``httpx``), in front of the same upstream, and every client
must get the same answers both ways: status, headers (less Date), body, whether it arrived
whole, and the interim responses before it. Chunk boundaries are TCP's and are not compared.
Beyond agreeing, each case asserts what the answer must be, so a fault both transports share
fails too. Two upstreams: tests/support/go_upstream (Go's net/http, what Ollama's HTTP layer is) and
the fake Ollama.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator

import pytest

from tests.support.harness import Server, go_upstream, otel_proxy
from tests.support.raw_http import Answer, RawConnection, chunked, request

Case = Callable[[int], list[Answer]]
BIG = bytes(range(256)) * (3 * 4096)  # 3 MiB: curl sends Expect: 100-continue for bodies over 1 MiB


@pytest.fixture(scope="module")
def go() -> Iterator[Server]:
    with go_upstream() as server:
        yield server


@pytest.fixture(scope="module")
def go_proxies(go: Server) -> Iterator[dict[str, Server]]:
    with otel_proxy(go.url) as own, otel_proxy(go.url, "--upstream-transport", "httpx") as httpcore:
        yield {"proxy": own, "httpx": httpcore}


def ids(answers: list[Answer]) -> list[str | None]:
    """The id each answer names (the Go upstream's answers all do)."""
    found = []
    for answer in answers:
        match = re.search(rb'"id":"([^"]*)"', answer.body) or re.match(rb"([\w-]+)\n", answer.body)
        found.append(match.group(1).decode() if match else None)
    return found


def expect_continue(port: int) -> list[Answer]:
    """curl's way with a large body: headers, wait for 100, then the body; then two more on the connection."""
    with RawConnection(port) as conn:
        head = request("POST", "/echo?id=big", [("Expect", "100-continue"), ("Content-Type", "application/octet-stream")])
        conn.send(head.replace(b"Content-Length: 0", b"Content-Length: %d" % len(BIG)))
        continued = conn.interim()
        conn.send(BIG)
        answers = [conn.answer()]
        answers[0].interim.insert(0, continued)
        for index in range(2):
            conn.send(request("GET", f"/echo?id=after{index}"))
            answers.append(conn.answer())
    return answers


def keep_alive_reuse(port: int) -> list[Answer]:
    with RawConnection(port) as conn:
        answers = []
        for index in range(5):
            conn.send(request("GET", f"/echo?id=reuse{index}"))
            answers.append(conn.answer())
    return answers


def streaming(port: int) -> list[Answer]:
    with RawConnection(port) as conn:
        conn.send(request("GET", "/stream?id=s1&n=20&delay_ms=5"))
        first = conn.answer()
        conn.send(request("GET", "/stream?id=s2&n=3"))
        return [first, conn.answer()]


def upstream_closes(port: int) -> list[Answer]:
    """Ollama's side says Connection: close; the client's connection to the proxy stays up."""
    with RawConnection(port) as conn:
        conn.send(request("GET", "/close?id=c1"))
        first = conn.answer()
        conn.send(request("GET", "/close?id=c2"))
        return [first, conn.answer()]


def client_closes(port: int) -> list[Answer]:
    with RawConnection(port) as conn:
        conn.send(request("GET", "/echo?id=bye", [("Connection", "close")]))
        answer = conn.answer()
        assert conn.parser.their_state.__name__ in ("MUST_CLOSE", "CLOSED"), conn.parser.their_state
    return [answer]


def head_and_empty(port: int) -> list[Answer]:
    with RawConnection(port) as conn:
        answers = []
        for target in ("/echo?id=h1&size=1000", "/stream?id=h2"):
            conn.send(request("HEAD", target))
            answers.append(conn.answer(head_request=True))
        for code in (204, 304):
            conn.send(request("GET", f"/status?code={code}&id=e{code}"))
            answers.append(conn.answer())
        conn.send(request("GET", "/echo?id=after-empty"))
        answers.append(conn.answer())
    return answers


def mid_body_close(port: int) -> list[Answer]:
    with RawConnection(port) as conn:
        conn.send(request("GET", "/midclose?id=m1"))
        broken = conn.answer()
    with RawConnection(port) as conn:
        conn.send(request("GET", "/echo?id=m2"))
        return [broken, conn.answer()]


def slow_headers(port: int) -> list[Answer]:
    with RawConnection(port) as conn:
        conn.send(request("GET", "/slow?id=slow&delay_ms=400"))
        return [conn.answer()]


def large_both_ways(port: int) -> list[Answer]:
    with RawConnection(port) as conn:
        head = b"POST /echo?id=large&size=5000000 HTTP/1.1\r\nHost: upstream\r\nTransfer-Encoding: chunked\r\n\r\n"
        conn.send(head + chunked(BIG))
        first = conn.answer()
        conn.send(request("GET", "/echo?id=after-large"))
        return [first, conn.answer()]


def early_hints(port: int) -> list[Answer]:
    """A 103 from upstream is an interim response, never the answer."""
    with RawConnection(port) as conn:
        conn.send(request("POST", "/echo?id=hints&early_hints=1", body=b"x" * 10))
        first = conn.answer()
        conn.send(request("GET", "/echo?id=after-hints"))
        return [first, conn.answer()]


def pipelined(port: int) -> list[Answer]:
    with RawConnection(port) as conn:
        conn.send(b"".join(request("GET", f"/echo?id=pipe{index}") for index in range(4)))
        return [conn.answer() for _ in range(4)]


GO_CASES: dict[str, tuple[Case, Callable[[list[Answer]], None]]] = {}


def case(name: str, expected_ids: list[str | None], statuses: list[int] | None = None, complete: list[bool] | None = None):
    def register(run: Case) -> Case:
        def check(answers: list[Answer]) -> None:
            assert ids(answers) == expected_ids
            if statuses is not None:
                assert [answer.status for answer in answers] == statuses
            assert [answer.complete for answer in answers] == (complete or [True] * len(answers))

        GO_CASES[name] = (run, check)
        return run

    return register


case("expect_continue", ["big", "after0", "after1"], [200, 200, 200])(expect_continue)
case("keep_alive_reuse", [f"reuse{index}" for index in range(5)])(keep_alive_reuse)
case("streaming", ["s1", "s2"])(streaming)
case("upstream_closes", ["c1", "c2"])(upstream_closes)
case("client_closes", ["bye"])(client_closes)
case("head_and_empty", [None, None, None, None, "after-empty"], [200, 200, 204, 304, 200])(head_and_empty)
case("mid_body_close", ["m1", "m2"], [200, 200], [False, True])(mid_body_close)
case("slow_headers", ["slow"])(slow_headers)
case("large_both_ways", ["large", "after-large"])(large_both_ways)
case("early_hints", ["hints", "after-hints"], [200, 200])(early_hints)
case("pipelined", [f"pipe{index}" for index in range(4)])(pipelined)


@pytest.mark.parametrize("name", list(GO_CASES))
def test_both_transports_give_every_client_the_same_answers_from_go(go_proxies, name):
    run, check = GO_CASES[name]
    answers = {transport: run(proxy.port) for transport, proxy in go_proxies.items()}
    check(answers["proxy"])
    assert answers["proxy"] == answers["httpx"]


def test_expect_is_answered_by_the_proxy_and_a_large_body_arrives_whole(go_proxies):
    answer = expect_continue(go_proxies["proxy"].port)[0]
    assert json.loads(answer.body) == {"id": "big", "method": "POST", "bytes": len(BIG), "sha256": hashlib.sha256(BIG).hexdigest()}
    assert answer.interim == [100]  # one 100 Continue, the proxy's own: Ollama is never asked for one


def test_large_answer_is_passed_whole(go_proxies):
    answer = large_both_ways(go_proxies["proxy"].port)[0]
    assert len(answer.body) == len("large\n") + 5_000_000
    assert answer.body[6:32] == b"abcdefghijklmnopqrstuvwxyz"


# The fake Ollama -------------------------------------------------------------------------

# What differs between two runs of the same request: timings, timestamps, generated ids.
_RUN_SPECIFIC = re.compile(rb'"([a-z_]*duration|[a-z_]*_at|created|id|item_id|message_id|system_fingerprint)":("[^"]*"|\d+)')
_GENERATED_IDS = re.compile(rb"\b(msg|resp|chatcmpl|cmpl|rs|fc)_?[-\w]*")


def comparable(answer: Answer) -> Answer:
    body = _GENERATED_IDS.sub(rb"\1_ID", _RUN_SPECIFIC.sub(rb'"\1":X', answer.body))
    headers = [(name, value) for name, value in answer.headers if name.lower() != b"content-length"]
    return Answer(answer.status, headers, body, answer.complete, answer.interim)


@pytest.fixture(scope="module")
def fake_proxies() -> Iterator[dict[str, Server]]:
    from tests.support.harness import fake_ollama

    with fake_ollama(token_delay=0.002, load_delay=0) as fake, otel_proxy(fake.url) as own, otel_proxy(fake.url, "--upstream-transport", "httpx") as httpcore:
        yield {"proxy": own, "httpx": httpcore}


def _json_request(path: str, body: dict, request_id: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    headers = [("Content-Type", "application/json"), ("x-fake-request-id", request_id), *(extra or [])]
    return request("POST", path, headers, json.dumps(body).encode())


MODEL = "llama3.2:1b"
FAKE_CASES: dict[str, list[bytes]] = {
    "generate_stream": [_json_request("/api/generate", {"model": MODEL, "prompt": "one two three", "options": {"num_predict": 5}}, "g1")],
    "generate_whole_then_chat": [
        _json_request("/api/generate", {"model": MODEL, "prompt": "hi", "stream": False}, "g2"),
        _json_request("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi there"}], "options": {"num_predict": 3}}, "c1"),
    ],
    "openai_chat_stream": [
        _json_request("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 4}, "o1")
    ],
    "responses_and_messages": [
        _json_request("/v1/responses", {"model": MODEL, "input": "hello", "stream": True, "max_output_tokens": 4}, "r1"),
        _json_request("/v1/messages", {"model": MODEL, "max_tokens": 4, "stream": True, "messages": [{"role": "user", "content": "hi"}]}, "a1"),
    ],
    "listing_head_and_not_found": [request("GET", "/api/tags"), request("HEAD", "/"), request("GET", "/api/nothing-here"), request("GET", "/api/version")],
    "errors_in_each_shape": [
        _json_request("/api/generate", {"model": "no-such-model", "prompt": "x"}, "e1"),
        _json_request("/v1/chat/completions", {"model": "no-such-model", "messages": []}, "e2"),
        request("POST", "/api/chat", [("Content-Type", "application/json")], b"{not json"),
    ],
    "upload_with_expect": [
        request("POST", "/api/blobs/sha256:" + hashlib.sha256(BIG).hexdigest(), [("Expect", "100-continue")], BIG),
        request("GET", "/api/version"),
    ],
}


def _lines(answer: Answer) -> list[dict]:
    return [json.loads(line) for line in answer.body.splitlines() if line.strip()]


def _events(answer: Answer) -> list[dict]:
    """The JSON of each server-sent event's data, [DONE] left out."""
    return [json.loads(line[6:]) for line in answer.body.splitlines() if line.startswith(b"data: {")]


def _expect(status: int, content_type: bytes | None, body: Callable[[Answer], object] | None = None) -> Callable[[Answer], None]:
    """What one answer must be: its status, its content type, and what its body says where given."""
    def check(answer: Answer) -> None:
        assert answer.status == status, (answer.status, answer.body[:300])
        assert dict(answer.headers).get(b"content-type") == content_type, answer.headers
        if body is not None:
            assert body(answer), answer.body[-600:]
    return check


NDJSON, JSON, SSE, TEXT = b"application/x-ndjson", b"application/json; charset=utf-8", b"text/event-stream; charset=utf-8", b"text/plain; charset=utf-8"
# Each case's answers, from what was asked (num_predict, max_tokens) and what Ollama's source writes (server/routes.go,
# middleware/openai.go and anthropic.go, Gin's 404 page), so a fault both transports share fails here too.
FAKE_EXPECTED: dict[str, list[Callable[[Answer], None]]] = {
    "generate_stream": [_expect(200, NDJSON, lambda a: [line["done"] for line in _lines(a)] == [False] * 5 + [True]
                                and _lines(a)[-1]["eval_count"] == 5 and _lines(a)[-1]["done_reason"] == "length")],
    "generate_whole_then_chat": [
        _expect(200, JSON, lambda a: json.loads(a.body)["done"] is True and json.loads(a.body)["response"] and json.loads(a.body)["eval_count"] > 0),
        _expect(200, NDJSON, lambda a: len(_lines(a)) == 4 and _lines(a)[-1]["eval_count"] == 3 and _lines(a)[0]["message"]["role"] == "assistant"),
    ],
    "openai_chat_stream": [_expect(200, SSE, lambda a: a.body.endswith(b"data: [DONE]\n\n") and _events(a)[-1]["usage"]["completion_tokens"] == 4)],
    "responses_and_messages": [
        _expect(200, SSE, lambda a: _events(a)[-1]["type"] == "response.completed" and _events(a)[-1]["response"]["usage"]["output_tokens"] == 4),
        _expect(200, SSE, lambda a: [event["type"] for event in _events(a)][-2:] == ["message_delta", "message_stop"]
                and _events(a)[-2]["usage"]["output_tokens"] == 4),
    ],
    "listing_head_and_not_found": [
        _expect(200, JSON, lambda a: MODEL in [model["name"] for model in json.loads(a.body)["models"]]),
        _expect(200, TEXT, lambda a: a.body == b""),  # HEAD /: "Ollama is running", its body not sent
        _expect(404, TEXT, lambda a: a.body == b"404 page not found"),  # Gin's NoRoute
        _expect(200, JSON, lambda a: json.loads(a.body) == {"version": "0.32.15"}),
    ],
    "errors_in_each_shape": [
        _expect(404, JSON, lambda a: json.loads(a.body) == {"error": "model 'no-such-model' not found"}),
        _expect(400, JSON, lambda a: json.loads(a.body) == {"error": {"message": "[] is too short - 'messages'", "type": "invalid_request_error",
                                                                         "param": None, "code": None}}),
        _expect(400, JSON, lambda a: json.loads(a.body) == {"error": "invalid character 'n' looking for beginning of object key string"}),
    ],
    "upload_with_expect": [
        _expect(201, None, lambda a: a.body == b"" and a.interim == [100]),  # CreateBlobHandler: 201, no body
        _expect(200, JSON, lambda a: json.loads(a.body) == {"version": "0.32.15"}),
    ],
}


def run_fake_case(port: int, requests: list[bytes]) -> list[Answer]:
    with RawConnection(port) as conn:
        answers = []
        for sent in requests:
            conn.send(sent)
            answers.append(conn.answer(head_request=sent.startswith(b"HEAD ")))
    return answers


@pytest.mark.parametrize("name", list(FAKE_CASES))
def test_both_transports_give_every_client_the_same_answers_from_the_fake_ollama(fake_proxies, name):
    sent = FAKE_CASES[name]
    answers = {transport: run_fake_case(proxy.port, sent) for transport, proxy in fake_proxies.items()}
    assert [comparable(answer) for answer in answers["proxy"]] == [comparable(answer) for answer in answers["httpx"]]
    assert len(answers["proxy"]) == len(sent) and all(answer.complete for answer in answers["proxy"])
    for request_bytes, answer, expected in zip(sent, answers["proxy"], FAKE_EXPECTED[name], strict=True):  # each its own request's
        request_id = re.search(rb"x-fake-request-id: (\S+)", request_bytes)
        if request_id:
            assert (b"x-fake-request-id", request_id.group(1)) in answer.headers
        expected(answer)
