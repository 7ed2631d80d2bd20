"""The proxy's /metrics at every bound at once stays within the series budget docs/metrics.md states."""

from __future__ import annotations

import re
import subprocess

import httpx

from otel_proxy import instruments
from otel_proxy.continuations import CAUSES
from tests.support.harness import ROOT, configure_fake, otel_proxy, require_tool, scrape

MAX_MODELS = 100
# docs/metrics.md, "Series budget": at --max-models 100, every API used with every model, every error type met.
BUDGET_AT_DEFAULTS = 32_000
HTTP_FAMILY_CAP = 1_000  # per route, method and outcome: nothing in it grows with models
GENERATION_ROUTES = {
    "/api/generate": lambda m, s: {"model": m, "prompt": "x", "stream": s, "options": {"num_predict": 2}},
    "/api/chat": lambda m, s: {"model": m, "messages": [], "stream": s, "options": {"num_predict": 2}},
    "/v1/chat/completions": lambda m, s: {"model": m, "messages": [{"role": "user", "content": "x"}], "stream": s, "max_tokens": 2},
    "/v1/completions": lambda m, s: {"model": m, "prompt": "x", "stream": s, "max_tokens": 2},
    "/v1/responses": lambda m, s: {"model": m, "input": "x", "stream": s, "max_output_tokens": 2},
    "/v1/messages": lambda m, s: {"model": m, "messages": [{"role": "user", "content": "x"}], "stream": s, "max_tokens": 2},
    "/api/embed": lambda m, s: {"model": m, "input": "x"},
    "/api/embeddings": lambda m, s: {"model": m, "prompt": "x"},
    "/v1/embeddings": lambda m, s: {"model": m, "input": "x"},
}


def family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def drive_every_error_type(client: httpx.Client, url: str) -> None:
    for model in ("fault-reset", "fault-malformed", "fault-nobody", "fault-stall"):  # upstream_closed, invalid_response, idle_timeout
        try:
            client.post(url + "/api/generate", json={"model": model, "prompt": "x"}, timeout=10).read()
        except httpx.HTTPError:
            pass
    with client.stream("POST", url + "/api/generate", json={"model": "m0:7b", "prompt": "x", "options": {"num_predict": 500}}) as answer:
        next(answer.iter_raw())  # then gone: client_disconnected
    client.post(url + "/api/generate", json={"model": "no-such-model", "prompt": "x"})  # 404
    client.post(url + "/api/generate", content=b"{not json")  # 400, model unknown
    client.get(url + "/api/tags", headers={"x-huge": "a" * 70_000})  # 431, never forwarded
    for method in ("BREW", "PROPFIND", "GET", "DELETE"):  # made-up methods are one _OTHER
        client.request(method, url + "/api/tags")
    for path in ("/api/tags", "/api/ps", "/api/version", "/v1/models", "/v1/models/m0:7b", "/no/such/path", "/api/blobs/sha256:00"):
        client.get(url + path)


def test_metrics_at_every_bound_stay_within_the_stated_budget(fake):
    promtool = require_tool("promtool")
    names = [f"m{i}:7b" for i in range(MAX_MODELS + 5)]  # five past the bound: "other"
    # an Ollama that reports its prompt cache (0.33.3 and later): the cache's families too
    configure_fake(fake, token_delay=0.0002, answer_delay=0, chunk_texts={name: "tok " for name in names}, version="0.33.3")
    try:
        with otel_proxy(fake.url, "--idle-timeout", "1", "--max-models", str(MAX_MODELS)) as proxy, httpx.Client(timeout=30) as client:
            for name in names:
                for route, body in GENERATION_ROUTES.items():
                    for stream in (True, False):
                        client.post(proxy.url + route, json=body(name, stream))
            client.post(proxy.url + "/api/chat", json={"messages": []})  # no model: "unknown"
            drive_every_error_type(client, proxy.url)
            page = scrape(proxy.url)
            text = httpx.get(proxy.url + "/metrics").content
    finally:
        configure_fake(fake, token_delay=0.01, version="0.32.15")
    counts: dict[str, int] = {}
    for sample in page.samples:
        counts[family(sample.name)] = counts.get(family(sample.name), 0) + 1
    models = {s.labels["gen_ai_request_model"] for s in page.samples if "gen_ai_request_model" in s.labels}
    assert len(models) == instruments.model_labels(MAX_MODELS) and {"other", "unknown"} <= models
    per_model = instruments.series_per_model()
    error_sets = {(s.labels["gen_ai_request_model"], s.labels["gen_ai_operation_name"], s.labels["error_type"])
                  for s in page.samples if family(s.name) == "gen_ai_server_request_duration_seconds" and s.labels.get("error_type")}
    assert {error for _, _, error in error_sets} >= {"upstream_closed", "invalid_response", "idle_timeout", "client_disconnected"}
    for name, each in per_model.items():
        allowed = instruments.model_labels(MAX_MODELS) * each
        if name == "gen_ai_server_request_duration_seconds":
            allowed += len(error_sets) * instruments.series_per_model_error()
        assert counts.get(name, 0) <= allowed, (name, counts.get(name), allowed)
    http = [s for s in page.samples if family(s.name) == "http_server_request_duration_seconds"]
    assert len(http) <= HTTP_FAMILY_CAP and not any("gen_ai_request_model" in s.labels for s in http)
    assert {s.labels["http_request_method"] for s in http} == {"GET", "POST", "DELETE", "_OTHER"}
    # One model's series, counted in the scrape, against docs/metrics.md's table (not against the catalogue's
    # own formula): exact for every family; the drive loads each model cold once and never reloads it, no request
    # fills the context (its counter is there at 0) and no conversation goes on (no turn can lose its cache): those are
    # the series it lacks.
    documented = documented_per_model()
    measured = {name: 0 for name in documented}
    for sample in page.samples:
        if sample.labels.get("gen_ai_request_model") == "m7:7b" and not sample.labels.get("error_type") and family(sample.name) in measured:
            measured[family(sample.name)] += 1
    not_driven = {"ollama_model_loads": 1, "ollama_prompt_cache_misses": len(CAUSES),
                  "ollama_prompt_cache_read_again_tokens": len(CAUSES)}
    assert measured == {name: each - not_driven.get(name, 0) for name, each in documented.items()}, measured
    total = len(page.samples)
    doc = (ROOT / "docs" / "metrics.md").read_text()
    stated_total = int(re.search(r"the test's drive came to\s+([\d,]+) series", doc).group(1).replace(",", ""))
    stated_http = int(re.search(r"\((\d+) series in the test's drive", doc).group(1))
    assert (total, len(http)) == (stated_total, stated_http), f"docs/metrics.md: the drive now gives {total:,} series, {len(http)} in the HTTP family"
    assert total <= BUDGET_AT_DEFAULTS, total
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout.decode()[:2000]


def documented_per_model() -> dict[str, int]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    table = text[text.index("| family | series a model |"):]
    return {match[0]: int(match[1]) for match in re.findall(r"^\| `(\w+)` \| (\d+) \|$", table[: table.index("\n\n")], re.M)}


def test_the_documented_budget_is_the_catalogues():
    text = (ROOT / "docs" / "metrics.md").read_text()
    per_model = instruments.series_per_model()
    assert f"{sum(per_model.values())} series a model" in text
    assert f"{instruments.model_labels(MAX_MODELS) * sum(per_model.values()):,} series" in text
    assert f"{BUDGET_AT_DEFAULTS:,}" in text
    for name, each in per_model.items():
        assert f"| `{name}` | {each} |" in text, name
