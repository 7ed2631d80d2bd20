"""Which conversation a request continues, and whether it read its prompt again: the prompt cache explained.

An agent resends its whole conversation every turn, and llama-server (Ollama's runner) reuses what it holds of it: a
turn that extends the last one reads only its new tokens. When the cache is lost (the runner reloaded or unloaded, the
history edited, the prompt cut to the context), the turn reads every token again, and a one-second turn takes a minute.
Ollama tells how many tokens came from the cache (``Report.cached_input_tokens``, 0.33.3 and later); this module tells
which turn should have found them there, and why it did not.

A request body is cut where each message begins (the brace before its ``"role"`` key, or before a Responses
``function_call`` item's type; a quote inside a JSON string is escaped, so no prompt text matches): the part before
the first message, then one part a message. Each part is kept as the 8-byte BLAKE2b digest of its bytes (the separators to the next part left out); the
last part, which runs on past its message to the end of the body (``]`` and whatever an SDK writes after the messages:
Anthropic's SDK writes the system prompt and tools there), is kept split at each ``}]`` it holds, as a message and
what follows it. No text is kept. Digests of whole messages move with them, so a conversation is recognised however
the bytes before it shift.

Per model the proxy keeps the last request of each of the conversations it saw last (``memory`` of them). A request
continues the one whose messages it repeats the furthest, if it has more messages (a turn adds some), the same agent
session (where both name one), and repeats at least one of its messages that is not a system message (so that
another conversation of the same agent, which shares only its system prompt, continues nothing). Where the two part
tells what changed: a message (the history changed there) or what follows the messages (a system prompt or tools).
Fingerprinting runs in a worker thread (hashlib lets go of the GIL for each part), started once the body is in, so the
event loop does none of it.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

DIGEST = 8
ROLE = b'"role"'
FUNCTION_CALL = re.compile(rb'"type"\s*:\s*"function_call')  # a Responses function_call or function_call_output item
SYSTEM = re.compile(rb'"role"\s*:\s*"(?:system|developer)"')
SEPARATORS = b" \t\r\n,{"  # what lies between a message and the next one's key
LAST_SPLITS = 4  # the first few "}]" of the last part: one of them ends the messages
MISSED_SHARE = 0.1  # a continuation that read a tenth of what the last turn left in the cache again lost it (a turn normally reads none)
MISSED_AT_LEAST = 64  # tokens: fewer read again is no lost cache worth naming

# The causes of a lost cache (ollama.cache.cause, docs/metrics.md)
RELOAD = "reload"  # the runner was restarted with other options (or loaded again, the proxy could not tell why): an empty cache
UNLOADED = "unloaded"  # the runner was unloaded (keep_alive expired, evicted, ollama stop) and loaded again
HISTORY_CHANGED = "history_changed"  # a message of the last turn was changed (an edit, a rewritten tool result)
OUTSIDE_MESSAGES = "system_or_tools_changed"  # the messages are the same; the system prompt or tools written after them are not
TRUNCATED = "truncated"  # the conversation outgrew num_ctx: Ollama dropped its oldest messages or cut the prompt
# other conversations took the runner's slots since its last turn: llama-server saves a slot's prompt to its RAM cache
# only when the next task keeps less than half of it, so conversations that share a long system prompt lose theirs
SLOT_TAKEN = "slot_taken"
UNKNOWN = "unknown"  # none of the above could be told: the RAM prompt cache's limit, a context shift, …
CAUSES = (RELOAD, UNLOADED, HISTORY_CHANGED, OUTSIDE_MESSAGES, TRUNCATED, SLOT_TAKEN, UNKNOWN)
SERVED_KEPT = 4096  # per model, the conversations of its last requests, in order


def _digest(data: memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST).digest()


@dataclass(frozen=True)
class Fingerprint:
    parts: tuple[bytes, ...]  # the digest of what precedes the first message, then of each message but the last
    last: tuple[tuple[bytes, bytes], ...]  # the last message, at each "}]" of the last part: (its digest, what follows's)
    system: int  # how many of the messages are system (or developer) messages before any other
    size: int

    @property
    def message_count(self) -> int:
        return len(self.parts)  # what precedes the first message, then every message but the last: as many as there are


def _markers(body: bytes) -> list[int]:
    """Where each message's key is: bytes.find for the role keys (memchr speed), a pattern for the rarer items."""
    markers = []
    at = body.find(ROLE)
    while at >= 0:
        markers.append(at)
        at = body.find(ROLE, at + len(ROLE))
    if b"function_call" in body:
        markers += [match.start() for match in FUNCTION_CALL.finditer(body)]
        markers.sort()
    return markers


def _starts(body: bytes, markers: list[int]) -> list[int]:
    """Where each message begins: the brace that opens the object its key is in (keys an SDK writes before it, a
    Responses item's "id", belong to it), found back from the key, never before the previous one."""
    starts, floor = [], 0
    for marker in markers:
        brace = body.rfind(b"{", floor, marker)
        starts.append(brace if brace >= 0 else marker)
        floor = marker
    return starts


def fingerprint(parts: list[bytes]) -> Fingerprint:
    """A request body's fingerprint (in the worker thread)."""
    body = parts[0] if len(parts) == 1 else b"".join(parts)
    view = memoryview(body)
    markers = _markers(body)
    starts = _starts(body, markers)
    if not starts:
        return Fingerprint((), (), 0, len(body))
    bounds = [0, *starts]
    digests = []
    for begin, end in zip(bounds, bounds[1:]):
        digests.append(_digest(view[begin:begin + _trimmed(body, begin, end)]))
    last, begin = [], starts[-1]
    split = body.find(b"}]", begin)
    while split >= 0 and len(last) < LAST_SPLITS:
        last.append((_digest(view[begin:split + 1]), _digest(view[split + 1:])))
        split = body.find(b"}]", split + 2)
    system = 0
    for marker in markers:
        if not SYSTEM.match(body, marker):
            break
        system += 1
    return Fingerprint(tuple(digests), tuple(last), system, len(body))


def _trimmed(body: bytes, begin: int, end: int) -> int:
    """The length of body[begin:end] less its trailing separators, without copying a long part."""
    while end > begin and body[end - 1] in SEPARATORS:
        end -= 1
    return end - begin


def _matched(before: Fingerprint, after: Fingerprint) -> tuple[int, bytes | None]:
    """How many of the parts of ``before`` (its last message included) ``after`` repeats, and, where it repeats them
    all, the digest of what followed the last one in ``before``."""
    shared = 0
    for mine, theirs in zip(before.parts, after.parts):
        if mine != theirs:
            return shared, None
        shared += 1
    if len(after.parts) > len(before.parts):
        message = after.parts[len(before.parts)]
        for digest, following in before.last:
            if digest == message:
                return shared + 1, following
    return shared, None
class Fingerprints:
    """The worker thread that fingerprints request bodies off the event loop."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fingerprints")

    def submit(self, parts: list[bytes]) -> Future[Fingerprint]:
        return self._executor.submit(fingerprint, parts)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Turn:
    """What is kept of a conversation's last request: its fingerprint and counts, never its text."""

    fingerprint: Fingerprint
    session: str | None
    input_tokens: int
    loads: int  # the model's load count when it ended (a load in between: a new runner, an empty cache)
    turn: int
    served: int  # the model's request count when it ended: the conversations served after it took its slot


@dataclass(frozen=True)
class Continuation:
    """A request's place in its conversation, and the cache it lost (``cause`` None: it lost none)."""

    turn: int  # 1: the first the proxy saw of this conversation
    cause: str | None = None
    read_again_tokens: int | None = None  # tokens the last turn had left in the cache that this one evaluated again
    changed_at_message: int | None = None  # HISTORY_CHANGED: the first message that differs (1-based, counting every message)


@dataclass(frozen=True)
class Outcome:
    """What the request itself reported, for ``Conversations.follow``."""

    session: str | None
    input_tokens: int | None
    cached_tokens: int | None  # None: this Ollama does not report its cache
    loads: int  # the model's loads so far (otel_proxy/scheduling.py ModelView.loads)
    loaded: str | None  # this request's own load: "cold" or "reload"
    last_load: str | None  # the reason of the model's last load
    context_length: int | None
    slots: int = 1  # the runner's slots (OLLAMA_NUM_PARALLEL)


class Conversations:
    """Per model, the last request of each of its ``memory`` most recent conversations."""

    def __init__(self, memory: int = 32) -> None:
        self.memory = memory
        self._models: dict[str, OrderedDict[int, _Turn]] = {}
        self._served: dict[str, deque[tuple[int, int]]] = {}  # per model: (its request count, the conversation), in order
        self._next_key = 0


    def follow(self, model: str, print_: Fingerprint, outcome: Outcome) -> Continuation:
        """Where the request stands in its conversation; the conversation then remembers it as its last turn."""
        turns = self._models.setdefault(model, OrderedDict())
        key, previous, shared, following = self._closest(turns, print_, outcome.session)
        served = self._served.setdefault(model, deque(maxlen=SERVED_KEPT))
        continuation = Continuation(1)
        if previous is not None:
            continuation = Continuation(previous.turn + 1)
            if outcome.cached_tokens is not None and outcome.input_tokens is not None:
                others = {other for count, other in served if count > previous.served and other != key}
                continuation = _lost(continuation, previous, print_, shared, following, outcome, len(others))
        if outcome.input_tokens is None:
            return continuation
        if key is None:
            key, self._next_key = self._next_key, self._next_key + 1
        count = served[-1][0] + 1 if served else 1
        served.append((count, key))
        turns[key] = _Turn(print_, outcome.session, outcome.input_tokens, outcome.loads, continuation.turn, count)
        turns.move_to_end(key)
        while len(turns) > self.memory:
            turns.popitem(last=False)
        return continuation

    @staticmethod
    def _closest(turns: OrderedDict[int, _Turn], print_: Fingerprint, session: str | None) -> tuple[int | None, _Turn | None, int, bytes | None]:
        """The conversation this request continues (see the module's docstring), the parts of its last turn repeated,
        and what followed that turn's messages where all were repeated."""
        best: tuple[int | None, _Turn | None, int, bytes | None] = (None, None, 0, None)
        for key, turn in turns.items():
            before = turn.fingerprint
            if session is not None and turn.session is not None and turn.session != session:
                continue
            if before.message_count >= print_.message_count:
                continue
            shared, following = _matched(before, print_)
            if shared - 1 > before.system and shared >= best[2]:  # a message past the system ones repeated
                best = (key, turn, shared, following)
        return best


def _lost(continuation: Continuation, previous: _Turn, print_: Fingerprint, shared: int, following: bytes | None, outcome: Outcome,
          others: int) -> Continuation:
    """The cache this turn lost, and why, where it read again a tenth or more of what the last turn left; ``others``: the
    conversations served on the model since its last turn."""
    assert outcome.cached_tokens is not None and outcome.input_tokens is not None
    held = min(previous.input_tokens, outcome.input_tokens)
    read_again = held - outcome.cached_tokens
    if read_again < max(MISSED_AT_LEAST, MISSED_SHARE * held):
        return continuation
    before = previous.fingerprint
    changed_at = None
    if outcome.loaded is not None or outcome.loads > previous.loads:
        reason = outcome.loaded or outcome.last_load
        cause = UNLOADED if reason == "cold" else RELOAD  # a load the proxy did not foresee counts as a reload
    elif shared < before.message_count + 1:  # parts: what precedes the messages, then each message
        cause, changed_at = HISTORY_CHANGED, shared
    elif following is not None and following not in {rest for _, rest in print_.last}:
        cause = OUTSIDE_MESSAGES
    elif outcome.context_length and previous.input_tokens * print_.size / max(1, before.size) > outcome.context_length:
        cause = TRUNCATED  # at the last turn's tokens a byte, this prompt would not fit: Ollama cut it
    elif others >= outcome.slots:
        cause = SLOT_TAKEN
    else:
        cause = UNKNOWN
    return Continuation(continuation.turn, cause, read_again, changed_at)
