"""10,000 requests at concurrency 32 through the proxy (2,000 with httpcore as its transport), every shape at once:
every answer is its own.

The mix: every API (native generate and chat, OpenAI chat and completions, Responses,
Anthropic Messages), streaming and not, ``Expect: 100-continue`` uploads, pipelined
requests, clients that go away mid-stream and an upstream that drops the connection
mid-stream (the fake's ``fault-reset``). Each request names itself (``x-fake-request-id``,
which the fake answers with) and asks for its own number of tokens; an answer that carries
another request's id or token count is crossed, a request with no answer is lost. Loopback
only, bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass

import h11
import pytest

from tests.support.harness import fake_ollama, otel_proxy

REQUESTS = 10_000
CONCURRENCY = 32
MODEL = "llama3.2:1b"
TOKENS = re.compile(rb"tok(\d+) ")
DEADLINE_S = 240  # under pytest-timeout's 300 s (pyproject.toml), so a stuck soak fails with its own message


@dataclass
class Shape:
    name: str
    path: str
    stream: bool


SHAPES = [
    Shape("generate", "/api/generate", True),
    Shape("generate", "/api/generate", False),
    Shape("chat", "/api/chat", True),
    Shape("chat", "/api/chat", False),
    Shape("openai_chat", "/v1/chat/completions", True),
    Shape("openai_chat", "/v1/chat/completions", False),
    Shape("completions", "/v1/completions", True),
    Shape("responses", "/v1/responses", True),
    Shape("responses", "/v1/responses", False),
    Shape("messages", "/v1/messages", True),
    Shape("messages", "/v1/messages", False),
]


def body_for(shape: Shape, tokens: int, index: int) -> dict:
    text = f"request {index}"
    if shape.name in ("generate", "chat"):
        body: dict = {"model": MODEL, "stream": shape.stream, "options": {"num_predict": tokens}}
        if shape.name == "generate":
            body["prompt"] = text
        else:
            body["messages"] = [{"role": "user", "content": text}]
        return body
    if shape.name == "openai_chat":
        return {"model": MODEL, "stream": shape.stream, "max_tokens": tokens, "messages": [{"role": "user", "content": text}], "stream_options": {"include_usage": True}} if shape.stream else {"model": MODEL, "max_tokens": tokens, "messages": [{"role": "user", "content": text}]}
    if shape.name == "completions":
        return {"model": MODEL, "stream": True, "max_tokens": tokens, "prompt": text}
    if shape.name == "responses":
        return {"model": MODEL, "stream": shape.stream, "max_output_tokens": tokens, "input": text}
    return {"model": MODEL, "stream": shape.stream, "max_tokens": tokens, "messages": [{"role": "user", "content": text}]}


def request_bytes(path: str, body: dict, request_id: str, expect: bool = False) -> tuple[bytes, bytes]:
    """The head and the body of one request."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nx-fake-request-id: {request_id}\r\n"
        f"Content-Length: {len(payload)}\r\n" + ("Expect: 100-continue\r\n" if expect else "") + "\r\n"
    ).encode()
    return head, payload


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = h11.Connection(h11.CLIENT)

    async def event(self) -> object:
        while True:
            event = self.parser.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.parser.receive_data(await self.reader.read(65536))

    async def answer(self, on_first_data=None) -> tuple[int, dict[bytes, bytes], bytes, bool]:
        """(status, headers, body, complete) of the next response; ``on_first_data`` may stop early (None)."""
        if self.parser.our_state is h11.IDLE:
            self.parser.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("transfer-encoding", "chunked")]))
        if self.parser.our_state is h11.SEND_BODY:
            self.parser.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        try:
            while True:
                event = await self.event()
                if isinstance(event, h11.Response):
                    status, headers = event.status_code, dict(event.headers.raw_items())
                elif isinstance(event, h11.Data):
                    body += event.data
                    if on_first_data is not None and on_first_data():
                        return status, headers, body, False
                elif isinstance(event, h11.EndOfMessage):
                    self.parser.start_next_cycle()
                    return status, headers, body, True
                elif isinstance(event, h11.ConnectionClosed):
                    return status, headers, body, False
        except h11.RemoteProtocolError:
            return status, headers, body, False

    def close(self) -> None:
        self.writer.close()


async def soak(port: int, requests: int) -> Counter:
    outcome: Counter = Counter()
    next_index = iter(range(requests))

    def judge(request_id: str, tokens: int, answer: tuple[int, dict[bytes, bytes], bytes, bool], whole: bool = True) -> None:
        status, headers, body, complete = answer
        if status == 0:
            outcome["lost"] += 1
        elif headers.get(b"x-fake-request-id") != request_id.encode():
            outcome["crossed"] += 1
        elif whole and not (status == 200 and complete and max(int(n) for n in TOKENS.findall(body) or [-1]) == tokens - 1):
            outcome["wrong"] += 1
        else:
            outcome["own"] += 1

    async def connect() -> Connection:
        return Connection(*await asyncio.open_connection("127.0.0.1", port))

    async def worker() -> None:
        conn = await connect()
        for index in next_index:
            shape = SHAPES[index % len(SHAPES)]
            tokens = 1 + index % 8  # the fake ends an answer by itself at 8
            request_id = f"soak-{index}"
            kind = index % 20
            try:
                if kind == 7:  # pipelined: three at once on the connection
                    ids = [(f"{request_id}-p{n}", 1 + (index + n) % 8) for n in range(3)]
                    conn.writer.write(b"".join(b"".join(request_bytes("/api/generate", body_for(SHAPES[1], t, index), rid)) for rid, t in ids))
                    for rid, t in ids:
                        judge(rid, t, await conn.answer())
                    outcome["sent"] += 2  # two more than the one counted below
                elif kind == 11:  # Expect: the body only once the proxy says 100 Continue
                    head, payload = request_bytes(shape.path, body_for(shape, tokens, index), request_id, expect=True)
                    conn.writer.write(head)
                    conn.parser.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("transfer-encoding", "chunked")]))
                    event = await conn.event()
                    assert isinstance(event, h11.InformationalResponse) and event.status_code == 100, event
                    conn.writer.write(payload)
                    judge(request_id, tokens, await conn.answer())
                elif kind == 13:  # the client goes away after the first bytes of a stream
                    conn.writer.write(b"".join(request_bytes("/api/generate", body_for(SHAPES[0], 9, index), request_id)))
                    judge(request_id, 9, await conn.answer(on_first_data=lambda: True), whole=False)
                    conn.close()
                    conn = await connect()
                    outcome["disconnected"] += 1
                elif kind == 17:  # Ollama drops the connection mid-stream
                    body = {"model": "fault-reset", "prompt": "x"}
                    conn.writer.write(b"".join(request_bytes("/api/generate", body, request_id)))
                    status, headers, _, complete = await conn.answer()
                    judge(request_id, 0, (status, headers, b"", complete), whole=False)
                    outcome["upstream_closed"] += not complete
                    conn.close()
                    conn = await connect()
                else:
                    conn.writer.write(b"".join(request_bytes(shape.path, body_for(shape, tokens, index), request_id)))
                    judge(request_id, tokens, await conn.answer())
            except (ConnectionError, h11.LocalProtocolError) as exc:
                outcome[f"error {type(exc).__name__}"] += 1
                conn.close()
                conn = await connect()
            outcome["sent"] += 1
        conn.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), DEADLINE_S)
    return outcome


# httpcore (``--upstream-transport httpx``) serves this mix about a quarter as fast: 2,000 of it fit the deadline
@pytest.mark.parametrize(("transport", "requests"), [("proxy", REQUESTS), ("httpx", 2_000)])
def test_thousands_of_mixed_requests_at_concurrency_32_each_get_their_own_answer(transport, requests):
    with fake_ollama(token_delay=0, load_delay=0) as fake, otel_proxy(fake.url, "--upstream-transport", transport) as proxy:
        outcome = asyncio.run(soak(proxy.port, requests))
    total = outcome["sent"]
    assert total >= requests
    assert outcome["crossed"] == 0 and outcome["lost"] == 0 and outcome["wrong"] == 0, outcome
    assert outcome["own"] == total, outcome
    assert outcome["disconnected"] == requests // 20 and outcome["upstream_closed"] == requests // 20, outcome
