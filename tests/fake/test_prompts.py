"""The fake's prompts (tests/fake/prompts.py): one conversation, one prompt on every API, and Ollama's two cuts."""

from __future__ import annotations

import json

from tests.fake.ollama import answer_ids
from tests.fake.formats import Piece
from tests.fake.prompts import DEFAULT_NUM_KEEP, Prompt, fit, render, tool_call_ids, word_ids

SYSTEM = "you are a careful coding agent"
CALL = {"id": "call_1", "name": "read_file", "arguments": {"path": "a.py"}}


def conversation(route: str) -> dict:
    """The same three turns (a question, a tool call and its result, the next question) as each API's SDK sends them."""
    if route == "/v1/messages":
        return {"system": SYSTEM, "messages": [
            {"role": "user", "content": "fix the bug"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": CALL["id"], "name": CALL["name"], "input": CALL["arguments"]}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": CALL["id"], "content": "def f(): pass"}]},
            {"role": "user", "content": [{"type": "text", "text": "now test it"}]}]}
    if route == "/v1/responses":
        return {"instructions": SYSTEM, "input": [
            {"role": "user", "content": "fix the bug"},
            {"type": "function_call", "call_id": CALL["id"], "name": CALL["name"], "arguments": json.dumps(CALL["arguments"])},
            {"type": "function_call_output", "call_id": CALL["id"], "output": "def f(): pass"},
            {"role": "user", "content": [{"type": "input_text", "text": "now test it"}]}]}
    arguments = json.dumps(CALL["arguments"]) if route == "/v1/chat/completions" else CALL["arguments"]
    return {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "fix the bug"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": CALL["id"], "type": "function", "function": {"name": CALL["name"], "arguments": arguments}}]},
        {"role": "tool", "content": "def f(): pass", "tool_call_id": CALL["id"]},
        {"role": "user", "content": "now test it"}]}


def test_one_conversation_is_one_prompt_on_every_api_and_a_generated_call_is_the_call_sent_back():
    prompts = {route: render(route, conversation(route)) for route in ("/api/chat", "/v1/chat/completions", "/v1/responses", "/v1/messages")}
    tokens = {route: prompt.tokens() for route, prompt in prompts.items()}
    assert len(set(map(tuple, tokens.values()))) == 1, tokens
    expected = word_ids(SYSTEM) + word_ids("fix the bug") + tool_call_ids("read_file", {"path": "a.py"}) + word_ids("def f(): pass") + word_ids("now test it")
    assert tokens["/api/chat"] == expected
    # the tokens the model generated for the call are those the next turn sends back
    assert answer_ids([Piece(tool_call=CALL)]) == tool_call_ids("read_file", json.dumps({"path": "a.py"}))
    assert answer_ids([Piece(content="tok0 "), Piece(content="tok1 ")]) == word_ids("tok0 tok1")
    assert render("/api/generate", {"prompt": "why", "system": "be brief"}).tokens() == word_ids("be brief why")


def test_a_chat_longer_than_the_context_loses_its_oldest_messages_and_a_prompt_still_too_long_keeps_its_head_and_tail():
    prompt = Prompt(system=[1, 2], messages=[[10] * 5, [20] * 5, [30] * 5])
    tokens, cut = fit(prompt, num_ctx=13)  # chatPrompt: the first message dropped, the system kept
    assert tokens.tolist() == [1, 2] + [20] * 5 + [30] * 5 and cut is None
    alone = Prompt(system=[], messages=[list(range(100))])  # the last message alone is longer: completionPromptForRequest
    tokens, cut = fit(alone, num_ctx=40)
    keep = DEFAULT_NUM_KEEP
    limit = 40 - max((40 - keep) // 2, 1)
    assert tokens.tolist() == list(range(keep)) + list(range(100 - (limit - keep), 100)) and len(tokens) == limit
    assert (cut.limit, cut.prompt, cut.keep, cut.new) == (limit, 100, keep, limit)
    assert fit(Prompt([], [[]]), 4096)[0].tolist() == [0]  # an empty prompt is still one token to evaluate
