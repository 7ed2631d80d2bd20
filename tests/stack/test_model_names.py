"""One name per model, as Ollama names it (ollama_otel_stack/model_names.py, shared/ollama-facts.md "Names")."""

from __future__ import annotations

import pytest

from hw_collector.sources.ollama_ps import readings_of
from ollama_otel_stack.ollama_ps import ResidentModels
from ollama_otel_stack.model_names import ModelCatalog, display_shortest


@pytest.mark.parametrize(("typed", "shortest"), [
    ("llama3.2", "llama3.2:latest"),  # the examples in types/model/name.go's behaviour, from the facts
    ("registry.ollama.ai/library/llama3.2:3b", "llama3.2:3b"),
    ("user/model", "user/model:latest"),
    ("hf.co/user/repo:Q4_K_M", "hf.co/user/repo:Q4_K_M"),
    ("REGISTRY.OLLAMA.AI/LIBRARY/qwen3", "qwen3:latest"),  # default host and namespace compared without case
    ("library/llama3.2:1b", "llama3.2:1b"),
    ("https://example.com/team/model:v1", "example.com/team/model:v1"),  # the scheme is not part of the name
    ("localhost:5000/a/b", "localhost:5000/a/b:latest"),  # a port is no tag: the last ':' is before the last '/'
    ("gpt-oss:120b-cloud", "gpt-oss:120b-cloud"),
])
def test_display_shortest(typed, shortest):
    assert display_shortest(typed) == shortest


TAGS = {"models": [
    {"name": "llama3.2:latest", "model": "llama3.2:latest", "digest": "a80c4f17acd5"},
    {"name": "llama3.2:3b", "model": "llama3.2:3b", "digest": "a80c4f17acd5"},  # the same manifest
    {"name": "my-llama:latest", "model": "my-llama:latest", "digest": "a80c4f17acd5"},  # ollama cp llama3.2 my-llama
    {"name": "Qwen2.5:7B", "model": "Qwen2.5:7B", "digest": "845dbda0ea48"},
    {"name": "phi3:mini", "model": "phi3:mini", "digest": "4f2222927938"},
]}


def test_names_of_one_manifest_are_one_model_and_case_does_not_matter():
    catalog = ModelCatalog()
    assert catalog.canonical("llama3.2") == "llama3.2:latest"  # before /api/tags: DisplayShortest only
    catalog.refresh(TAGS)
    assert {catalog.canonical(name) for name in ("llama3.2", "LLAMA3.2:latest", "llama3.2:3b", "my-llama", "registry.ollama.ai/library/llama3.2")} == {"llama3.2:3b"}
    assert catalog.canonical("qwen2.5:7b") == "Qwen2.5:7B"  # the stored spelling
    assert catalog.canonical("phi3:mini") == "phi3:mini"
    assert catalog.canonical("mistral") == "mistral:latest"  # not pulled: DisplayShortest
    assert catalog.is_listed("LLAMA3.2") and not catalog.is_listed("mistral")


def test_a_malformed_tags_answer_changes_nothing():
    catalog = ModelCatalog()
    catalog.refresh(TAGS)
    for bad in (None, [], "models", {"models": "x"}, {"tags": []}):
        catalog.refresh(bad)
        assert catalog.canonical("my-llama") == "llama3.2:3b", bad
    catalog.refresh({"models": [1, {"name": 3}]})  # a list with no usable entry: Ollama holds no model, not an error
    assert catalog.canonical("my-llama") == "my-llama:latest"


def test_the_collector_labels_resident_models_by_the_same_name():
    resident = ResidentModels()
    resident.take_tags(TAGS)
    readings = readings_of(resident.take_ps({"models": [{"name": "my-llama:latest", "size": 10, "size_vram": 5}]}) or [])
    assert {reading.attributes.get("model") for reading in readings if reading.attributes} == {"llama3.2:3b"}
