"""otel_proxy/labels.py: label values a caller chooses, bounded (model names, X-Client-Name) and methods."""

from __future__ import annotations

from otel_proxy.clients import MAX_NAME_LENGTH
from otel_proxy.labels import UNKNOWN_MODEL, BoundedNames, method_label


def test_a_client_name_is_trimmed_cut_at_64_and_the_first_limit_names_are_kept():
    names = BoundedNames(3, max_length=MAX_NAME_LENGTH)
    assert [names.label(name) for name in ("  ide  ", "ide", "x" * 70, "x" * 64, "third", "fourth", "", "  ", "ide")] == \
        ["ide", "ide", "x" * 64, "x" * 64, "third", "other", "other", "other", "ide"]
    assert BoundedNames(0, max_length=MAX_NAME_LENGTH).label("any") == "other"


def test_model_names_keep_their_spelling_and_only_admitted_ones_take_a_place():
    names = BoundedNames(2, empty=UNKNOWN_MODEL)
    long_name = "hf.co/" + "a" * 90 + ":Q4_K_M"  # no cut: a model's one name is its label
    assert names.label(None) == names.label("") == "unknown"
    assert names.label("made-up:latest", admit=False) == "other"  # a name Ollama answered 404 for never takes a place
    assert [names.label(n) for n in (long_name, " spaced ", "third", long_name)] == [long_name, " spaced ", "other", long_name]
    assert names.label("made-up:latest", admit=False) == "other"


def test_a_made_up_method_is_one_label():
    assert [method_label(m) for m in ("GET", "POST", "PATCH", "BREW", "get")] == ["GET", "POST", "PATCH", "_OTHER", "_OTHER"]
