"""ui/recent.py: a request's prompt cut, joined with the cut Ollama's log tells."""

from __future__ import annotations

from ui.recent import cut_of

ENTRY = {"start_time": "2026-12-07T20:00:00+00:00", "duration_s": 3.0, "model": "qwen3-coder:30b", "input_tokens": 4099, "prompt_cut": True}
AT = 1796673600.0  # 2026-12-07T20:00:00Z


def test_a_cut_prompt_is_joined_with_ollamas_log_by_model_length_and_time():
    cut = {"at": AT + 1.2, "model": "qwen3-coder:30b", "limit": 8191, "prompt": 9000, "new": 4099}
    assert cut_of(ENTRY, [cut]) == "9,000 → 4,099 tokens"
    assert cut_of({**ENTRY, "prompt_cut": False}, [cut]) == "9,000 → 4,099 tokens"  # the log's word over the length's (another num_keep)
    assert cut_of(ENTRY, [{**cut, "model": None}]) == "9,000 → 4,099 tokens"  # several runners ran: the line names none
    for other in ({**cut, "model": "phi3:mini"}, {**cut, "new": 4098}, {**cut, "at": AT + 3.0 + 2.5}, {**cut, "at": AT - 2.5}):
        assert cut_of(ENTRY, [other]) == "to fit num_ctx", other  # not its cut: the length alone says so
    assert cut_of({**ENTRY, "prompt_cut": None}, []) == "" and cut_of({**ENTRY, "prompt_cut": False}, []) == ""
