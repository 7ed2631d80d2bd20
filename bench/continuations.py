"""What following conversations costs (otel_proxy/continuations.py), on the event loop and off it.

An agent's turn of ``--kib`` KiB (a conversation of ~1 KiB messages, as Claude Code resends it), its body arriving in
64 KiB ASGI messages (uvicorn's read size):

- **hot path**: the forwarder's ``_RestOfBody`` relaying the body to Ollama, with the observer keeping its parts for
  the fingerprint (a list append a part) against without (``--conversations 0``): the difference, per request;
- **bookkeeping** (on the event loop, after the request is on its way): handing the parts to the worker thread;
- **worker thread**: the fingerprint itself (hashlib lets go of the GIL for each message; the event loop runs meanwhile);
- **at the end** (bookkeeping): finding the conversation among 32 remembered and telling what was lost.

    python bench/continuations.py [--kib 1536] [--repeat 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel_proxy.continuations import Conversations, Fingerprints, Outcome, fingerprint  # noqa: E402
from otel_proxy.forward import _RestOfBody  # noqa: E402

PART = 64 << 10


def conversation(kib: int, turn: int = 0) -> bytes:
    """An agent's turn, about ``kib`` KiB: a system prompt, then messages of ~1 KiB, alternating user and assistant."""
    messages = [{"role": "system", "content": "You are a coding agent. " * 200}]
    index = 0
    while len(json.dumps(messages)) < kib * 1024:
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": f"message {index} of turn {turn}: " + "some code here " * 60})
        index += 1
    return json.dumps({"model": "qwen3-coder:30b", "messages": messages, "stream": True}).encode()


class Observer:
    def __init__(self, keep: bool) -> None:
        self.body_parts: list[bytes] | None = [] if keep else None

    def body_read(self) -> None:
        self.body_parts = None


async def relay(body: bytes, keep: bool, repeat: int) -> float:
    """Seconds a request to relay the body past its first part, through _RestOfBody."""
    parts = [body[start:start + PART] for start in range(PART, len(body), PART)]

    async def rest():
        for part in parts:
            yield part

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            async for _ in _RestOfBody(body[:PART], rest(), asyncio.Event(), Observer(keep)):  # type: ignore[arg-type]
                pass
        best = min(best, (time.perf_counter() - started) / repeat)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kib", type=int, default=1536)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    body = conversation(args.kib)
    parts = [body[start:start + PART] for start in range(0, len(body), PART)]
    kept = asyncio.run(relay(body, True, args.repeat))
    bare = asyncio.run(relay(body, False, args.repeat))
    workers = Fingerprints()
    best_submit = best_print = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        future = workers.submit(parts)
        best_submit = min(best_submit, time.perf_counter() - started)
        future.result()
        started = time.perf_counter()
        fingerprint(parts)
        best_print = min(best_print, time.perf_counter() - started)
    workers.close()
    conversations = Conversations()
    prints = [fingerprint([conversation(args.kib // 4 + turn, turn)]) for turn in range(32)]
    for index, print_ in enumerate(prints):
        conversations.follow("m", print_, Outcome(None, 1000 + index, 0, 0, None, None, 32768))
    latest = fingerprint([body])
    started = time.perf_counter()
    for _ in range(100):
        conversations.follow("m", latest, Outcome(None, 200_000, 1000, 0, None, None, 262144))
    follow = (time.perf_counter() - started) / 100
    print(f"a {len(body) / 1024:.0f} KiB turn ({len(parts)} parts of 64 KiB, {latest.message_count} messages)")
    print("| where | cost a request |")
    print("|---|---|")
    print(f"| hot path: relaying the body, its parts kept, against not | {(kept - bare) * 1e6:+.2f} µs ({kept * 1e6:.2f} against {bare * 1e6:.2f}) |")
    print(f"| bookkeeping: handing the parts to the worker | {best_submit * 1e6:.1f} µs |")
    print(f"| worker thread: the fingerprint | {best_print * 1e3:.2f} ms |")
    print(f"| bookkeeping: the conversation found among 32, the loss told | {follow * 1e6:.1f} µs |")


if __name__ == "__main__":
    main()
