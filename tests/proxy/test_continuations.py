"""Telling a turn that continues its conversation, and why one read its prompt again (otel_proxy/continuations.py)."""

from __future__ import annotations

import json
import random

import pytest

from otel_proxy.continuations import (
    HISTORY_CHANGED, OUTSIDE_MESSAGES, RELOAD, SLOT_TAKEN, TRUNCATED, UNKNOWN, UNLOADED, Conversations, Fingerprints, Outcome, fingerprint,
)

rng = random.Random(41)
WORDS = ["alpha", "beta", "gamma", "delta", "tool", "result", "file", "line"]


def text(words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def body(messages: list[dict], system: str | None = None, api: str = "openai") -> bytes:
    """A request as its SDK writes it: OpenAI's system message first; Anthropic's system and tools after the messages."""
    if api == "anthropic":
        return json.dumps({"model": "m", "messages": messages, "system": system, "tools": [{"name": "read"}], "stream": True}).encode()
    return json.dumps({"model": "m", "messages": [{"role": "system", "content": system or "be brief"}, *messages], "stream": True}).encode()


def conversation(turns: int, words: int = 300) -> list[dict]:
    history: list[dict] = []
    for _ in range(turns):
        history += [{"role": "user", "content": text(words)}, {"role": "assistant", "content": text(words // 3)}]
    return history


def test_the_fingerprint_holds_each_message_whatever_shifts_it_and_no_text():
    history = conversation(3, 900)  # long messages: several blocks of hashing each
    print_ = fingerprint([body(history)[:700], body(history)[700:]])  # parts are joined: the same as whole
    assert print_ == fingerprint([body(history)]) and print_.message_count == 1 + len(history) and print_.system == 1
    # a longer system prompt shifts every byte after it: the messages' digests stay
    shifted = fingerprint([body(history, "be brief, and then some more")])
    assert shifted.parts[2:] == print_.parts[2:] and shifted.parts[1] != print_.parts[1]
    # the last message, at its end, is the same digest as the same message anywhere else
    longer = fingerprint([body(history + [{"role": "user", "content": "next"}])])
    assert longer.parts[len(print_.parts)] in {digest for digest, _ in print_.last}
    assert not any(word.encode() in b"".join(print_.parts) for word in WORDS) and fingerprint([b'{"prompt":"x"}']).message_count == 0
    # a Responses function_call item is a message of its own
    responses = json.dumps({"model": "m", "input": [{"role": "user", "content": "hi"}, {"type": "function_call", "name": "f", "arguments": "{}"},
                                                    {"type": "function_call_output", "call_id": "c", "output": "ok"}]}).encode()
    assert fingerprint([responses]).message_count == 3


def outcome(input_tokens: int, cached: int | None, loads: int = 0, loaded: str | None = None, last: str | None = None,
            session: str | None = None, context_length: int | None = 131072) -> Outcome:
    return Outcome(session, input_tokens, cached, loads, loaded, last, context_length)


def turns(conversations: Conversations, steps: list[tuple[bytes, Outcome]]) -> list[tuple[int, str | None, int | None, int | None]]:
    found = []
    for raw, seen in steps:
        c = conversations.follow("m", fingerprint([raw]), seen)
        found.append((c.turn, c.cause, c.read_again_tokens, c.changed_at_message))
    return found


def test_a_growing_conversation_is_followed_turn_by_turn_and_a_lost_cache_is_named_with_its_cause():
    history = conversation(8)
    growing = [body(history[: 2 * n + 1]) for n in range(4)]
    # served from the cache: nothing lost
    assert turns(Conversations(), [(growing[0], outcome(1000, 0)), (growing[1], outcome(2000, 1990)), (growing[2], outcome(3000, 2990))]) == \
        [(1, None, None, None), (2, None, None, None), (3, None, None, None)]
    # a reload in between (another request's), then its own cold load
    assert turns(Conversations(), [(growing[0], outcome(1000, 0)), (growing[1], outcome(2000, 0, loads=1, last="reload")),
                                   (growing[2], outcome(3000, 10, loads=2, loaded="cold", last="cold"))]) == \
        [(1, None, None, None), (2, RELOAD, 1000, None), (3, UNLOADED, 1990, None)]
    # the second message edited: the history changed there
    edited = [dict(message) for message in history[:5]]
    edited[1]["content"] = "an edit " + edited[1]["content"]  # the assistant's first answer: message 3, after the system message
    assert turns(Conversations(), [(growing[1], outcome(2000, 0)), (body(edited), outcome(3000, 40))])[1] == (2, HISTORY_CHANGED, 1960, 3)
    # the last turn's last message rewritten (a tool result the agent shortened)
    rewritten = [dict(message) for message in history[:5]]
    rewritten[2]["content"] = "shortened"
    assert turns(Conversations(), [(growing[1], outcome(2000, 0)), (body(rewritten), outcome(2500, 30))])[1] == (2, HISTORY_CHANGED, 1970, 4)
    # Anthropic's system prompt after the messages: the next turn, with the same system prompt, then with another one
    system = text(800)
    last_turn = body(history[:3], system, "anthropic")
    assert turns(Conversations(), [(last_turn, outcome(2000, 0)), (body(history[:5], system, "anthropic"), outcome(3000, 1990))])[1] == \
        (2, None, None, None)
    assert turns(Conversations(), [(last_turn, outcome(2000, 0)), (body(history[:5], system[:3000] + " be terse. " + system[3000:], "anthropic"), outcome(3000, 5))])[1] == \
        (2, OUTSIDE_MESSAGES, 1995, None)
    # it outgrew the context: Ollama dropped its oldest messages
    assert turns(Conversations(), [(growing[2], outcome(3900, 3800, context_length=4096)), (growing[3], outcome(3950, 100, context_length=4096))])[1] == \
        (2, TRUNCATED, 3800, None)
    assert turns(Conversations(), [(growing[0], outcome(1000, 0)), (growing[1], outcome(2000, 3))])[1] == (2, UNKNOWN, 997, None)


def test_other_conversations_that_took_every_slot_since_the_last_turn_are_named():
    a, b = conversation(2), conversation(2)
    steps = [(body(a[:1]), outcome(1000, 0)), (body(b[:1]), outcome(1000, 100)), (body(a[:3]), outcome(2000, 100, session=None))]
    assert turns(Conversations(), steps)[2] == (2, SLOT_TAKEN, 900, None)
    two_slots = [(raw, Outcome(seen.session, seen.input_tokens, seen.cached_tokens, 0, None, None, None, slots=2)) for raw, seen in steps]
    assert turns(Conversations(), two_slots)[2] == (2, UNKNOWN, 900, None)  # one other conversation, two slots: not that


def test_no_turn_is_blamed_where_nothing_was_lost_or_nothing_is_known():
    history = conversation(4)
    first, second = body(history[:1]), body(history[:3])
    # another conversation with the same system prompt: as many messages or fewer, so it continues nothing
    other = body([{"role": "user", "content": text(300)}])
    assert turns(Conversations(), [(second, outcome(2000, 0)), (other, outcome(900, 20))]) == [(1, None, None, None), (1, None, None, None)]
    assert turns(Conversations(), [(first, outcome(1000, 0)), (other, outcome(900, 20))]) == [(1, None, None, None), (1, None, None, None)]
    # an Ollama that does not report its cache: followed, never blamed
    assert turns(Conversations(), [(first, outcome(1000, None)), (second, outcome(2000, None, loads=3, last="reload"))]) == \
        [(1, None, None, None), (2, None, None, None)]
    # OpenAI's system message changed: the same agent's conversation or another one, it cannot be told; nothing is blamed
    assert turns(Conversations(), [(first, outcome(1000, 0)), (body(history[:3], "be verbose"), outcome(2000, 2))])[1] == (1, None, None, None)
    # under the floor: a few tokens read again are no lost cache
    assert turns(Conversations(), [(first, outcome(100, 0)), (second, outcome(120, 50))])[1] == (2, None, None, None)
    # two agent sessions never continue each other, whatever they share
    assert turns(Conversations(), [(first, outcome(1000, 0, session="a")), (second, outcome(2000, 0, session="b"))])[1][0] == 1


def test_each_model_remembers_its_last_conversations_only():
    conversations = Conversations(memory=3)
    histories = [conversation(2) for _ in range(4)]
    for history in histories:
        conversations.follow("m", fingerprint([body(history[:1])]), outcome(500, 0))
    continued = [conversations.follow("m", fingerprint([body(history[:3])]), outcome(600, 590)).turn for history in reversed(histories)]
    assert continued == [2, 2, 2, 1]  # the newest three continue; the first was forgotten
    assert conversations.follow("n", fingerprint([body(histories[1][:3])]), outcome(600, 0)).turn == 1  # per model


@pytest.mark.parametrize("size", [0, 1, 1024, 3 * 4096 + 5])
def test_the_worker_thread_fingerprints_what_it_is_given(size):
    workers = Fingerprints()
    try:
        raw = bytes(rng.randrange(256) for _ in range(size))
        assert workers.submit([raw[: size // 2], raw[size // 2:]]).result(timeout=10) == fingerprint([raw])
    finally:
        workers.close()


def test_a_turn_is_named_from_exactly_a_tenth_read_again_and_only_by_the_conversations_served_since_on_its_model():
    a, b = conversation(2), conversation(2)
    first, second = body(a[:1]), body(a[:3])
    assert turns(Conversations(), [(first, outcome(1000, 0)), (second, outcome(2000, 900))])[1] == (2, UNKNOWN, 100, None)  # a tenth
    assert turns(Conversations(), [(first, outcome(1000, 0)), (second, outcome(2000, 901))])[1] == (2, None, None, None)
    # another conversation before this one's last turn, or on another model since: no slot was taken from it
    conversations = Conversations()
    conversations.follow("m", fingerprint([body(b[:1])]), outcome(800, 0))
    assert turns(conversations, [(first, outcome(1000, 0)), (second, outcome(2000, 100))])[1] == (2, UNKNOWN, 900, None)
    conversations = Conversations()
    conversations.follow("m", fingerprint([first]), outcome(1000, 0))
    conversations.follow("n", fingerprint([body(b[:1])]), outcome(800, 0))
    assert conversations.follow("m", fingerprint([second]), outcome(2000, 100)).cause == UNKNOWN


def test_a_conversation_of_content_blocks_is_followed_past_its_many_closing_brackets():
    """Anthropic's content blocks close with "}]" inside every message: the last message's end is found among them."""
    history: list[dict] = []
    for index in range(6):
        history.append({"role": "user" if index % 2 == 0 else "assistant", "content": [{"type": "text", "text": text(80)}, {"type": "text", "text": "x"}]})
    system = text(400)
    before, after = body(history, system, "anthropic"), body(history + [{"role": "assistant", "content": [{"type": "text", "text": "ok"}]}], system, "anthropic")
    # its cache lost: not for a changed history (every message is the same, the last found at its own end)
    assert turns(Conversations(), [(before, outcome(3000, 0)), (after, outcome(3100, 50))]) == [(1, None, None, None), (2, UNKNOWN, 2950, None)]
