"""ollama_otel_stack/ollama_ps.py: the one rule both services read /api/ps by, named by /api/tags."""

from __future__ import annotations

from ollama_otel_stack.ollama_ps import TAGS_EVERY, ResidentModels

TAGS = {"models": [{"name": "llama3.2:3b", "digest": "abc"}, {"name": "llama3.2:latest", "digest": "abc"}, {"name": "phi3:mini", "digest": "def"}]}


def ps(*names: str) -> dict:
    return {"models": [{"name": name, "size": 1} for name in names]}


def test_tags_are_read_first_then_every_few_reads_and_at_once_for_a_model_they_do_not_list():
    resident = ResidentModels()
    due = []
    listed = [ps("llama3.2")] * (TAGS_EVERY + 1) + [ps("new-model:7b"), ps("llama3.2")]
    for body in listed:
        due.append(resident.tags_due())
        if due[-1]:
            resident.take_tags(TAGS)
        resident.take_ps(body)
    assert due == [True, *[False] * (TAGS_EVERY - 1), True, False, True]
    # the read after "new-model:7b" is due because /api/tags did not list it; had it listed it, the next would not be
    resident.take_tags({"models": [*TAGS["models"], {"name": "new-model:7b", "digest": "x"}]})
    resident.take_ps(ps("new-model:7b"))
    assert not resident.tags_due()


def test_each_entry_is_named_by_its_one_name_and_a_failed_tags_read_leaves_the_names():
    resident = ResidentModels()
    resident.take_tags(TAGS)
    assert [entry["name"] for entry in resident.take_ps(ps("llama3.2", "PHI3:mini", "other/model"))] == ["llama3.2:3b", "phi3:mini", "other/model:latest"]
    resident.take_tags(None)  # /api/tags did not answer
    assert resident.take_ps(ps("llama3.2:latest"))[0]["name"] == "llama3.2:3b"
    assert resident.take_ps({"error": "x"}) is None and resident.take_ps([1]) is None
    assert resident.take_ps({"models": [5, {"size": 1}]}) == [{"name": "unknown", "size": 1}]
