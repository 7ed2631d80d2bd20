"""The hardware collector as a real process, scraped over HTTP."""

from __future__ import annotations

import os
import time

import httpx
import psutil

from tests.support.harness import ROOT, free_port, hw_collector, scrape
from tests.support.sysfs import amd_tree

STAND_INS = ROOT / "tests" / "support" / "stand_ins"


def scrape_after_samples(url: str, seconds: float = 1.2):
    time.sleep(seconds)
    return scrape(url)


def test_collector_reports_host_values_in_range_and_no_gpu_series_without_a_gpu(fake, tmp_path):
    httpx.post(fake.url + "/api/chat", json={"model": "llama3.2:1b", "messages": [], "stream": False}, timeout=30)
    httpx.post(fake.url + "/api/generate", json={"model": "qwen2.5:7b", "prompt": "x", "stream": False}, timeout=30)
    # An empty sysfs tree: this machine's view of a host with no GPU, whatever the CI host has.
    with hw_collector(fake.url, "--interval", "0.5", "--sysfs-root", str(tmp_path)) as collector:
        metrics = scrape_after_samples(collector.url)
        listed = httpx.get(fake.url + "/api/ps").json()["models"]

    overall = metrics.value("system_cpu_utilization", cpu_logical_number="")
    assert 0 <= overall <= 1
    per_cpu = metrics.series("system_cpu_utilization")
    assert len(per_cpu) == 1 + psutil.cpu_count()
    limit = metrics.value("system_memory_limit_bytes")
    assert limit == psutil.virtual_memory().total
    assert 0 < metrics.value("system_memory_usage_bytes", system_memory_state="used") <= limit
    assert 0 < metrics.value("system_memory_utilization") < 1
    assert not [s for s in metrics.samples if s.name.startswith("hw_gpu_")]
    assert metrics.value("hw_collector_source_up", source="psutil") == 1
    assert metrics.value("hw_collector_source_up", source="nvml") == 0
    assert metrics.value("ollama_up", ollama_version="0.32.15") == 1
    assert metrics.value("ollama_loaded_models") == len(listed) >= 2
    for model in listed:
        assert metrics.value("ollama_loaded_model_size_bytes", model=model["name"]) == model["size"]
        assert metrics.value("ollama_loaded_model_vram_bytes", model=model["name"]) == model["size_vram"]


def test_collector_with_an_amd_card_and_nvml_reports_gpu_series(fake, tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(STAND_INS), str(ROOT)])}
    with hw_collector(fake.url, "--interval", "0.3", "--sysfs-root", str(amd_tree(tmp_path)), env=env) as collector:
        metrics = scrape_after_samples(collector.url)
    assert metrics.value("hw_gpu_utilization", hw_vendor="AMD") == 0.37
    assert metrics.value("hw_gpu_utilization", hw_name="NVIDIA H100 80GB HBM3") == 0.87
    assert metrics.value("hw_power_watts", hw_name="Tesla T4") == 27.5
    assert metrics.value("hw_energy_joules_total", hw_name="NVIDIA H100 80GB HBM3") == 987654.321
    for gpu in metrics.series("hw_gpu_memory_usage_bytes"):
        assert metrics.value("hw_gpu_memory_usage_bytes", hw_id=gpu["hw_id"]) <= metrics.value("hw_gpu_memory_limit_bytes", hw_id=gpu["hw_id"])
    assert metrics.value("hw_collector_source_up", source="nvml") == 1
    assert metrics.value("hw_collector_source_up", source="amd_sysfs") == 1


def test_ollama_down_says_so_and_drops_the_model_series(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    with hw_collector(closed, "--interval", "0.5", "--sysfs-root", str(tmp_path)) as collector:
        metrics = scrape_after_samples(collector.url, 0.6)
        log = collector.log()
    assert metrics.value("ollama_up") == 0
    assert metrics.series("ollama_loaded_models") == []
    assert metrics.value("hw_collector_source_up", source="ollama") == 0
    assert metrics.value("system_memory_limit_bytes") > 0  # the rest carries on
    assert log.count("source ollama failed") == 1


def test_the_ollama_process_tree_is_measured(fake, tmp_path):
    # A process called `ollama` with a child, as `ollama serve` runs its `ollama runner`s.
    script = tmp_path / "ollama"
    script.write_text("#!/bin/sh\nsleep 30 &\nwhile :; do :; done\n")
    script.chmod(0o755)
    serve = psutil.Popen([str(script)])
    try:
        with hw_collector(fake.url, "--interval", "0.5", "--sysfs-root", str(tmp_path)) as collector:
            metrics = scrape_after_samples(collector.url, 1.6)
        tree = psutil.Process(serve.pid)
        expected_rss = sum(p.memory_info().rss for p in [tree, *tree.children(recursive=True)])
    finally:
        for process in [*psutil.Process(serve.pid).children(recursive=True), serve]:
            process.kill()
    rss = metrics.value("process_memory_usage_bytes", process_executable_name="ollama")
    assert 0.5 * expected_rss < rss < 2 * expected_rss
    cpu = metrics.value("process_cpu_utilization", process_executable_name="ollama")
    assert 0.2 / psutil.cpu_count() < cpu <= 1.0  # the busy loop keeps one CPU busy


def test_a_host_with_eight_gpus_and_twenty_resident_models_has_a_series_for_each(fake, tmp_path):
    """The collector at scale (issue 18): every board and every model Ollama holds, each once; what a scrape costs is in docs/benchmarks.md."""
    models = [f"resident-{index}:7b" for index in range(20)]
    httpx.post(fake.url + "/fake/configure", json={"answers": {name: "ok" for name in models}}).raise_for_status()
    for name in models:
        httpx.post(fake.url + "/api/generate", json={"model": name, "prompt": "x", "stream": False}, timeout=30).raise_for_status()
    env = {"PYTHONPATH": os.pathsep.join([str(STAND_INS), str(ROOT)]), "STAND_IN_NVML_GPUS": "8"}
    try:
        with hw_collector(fake.url, "--interval", "0.3", "--sysfs-root", str(tmp_path), env=env) as collector:
            metrics = scrape_after_samples(collector.url)
    finally:
        httpx.post(fake.url + "/fake/configure", json={"remove_models": models})
    for name in ("hw_gpu_utilization", "hw_gpu_memory_usage_bytes", "hw_gpu_memory_limit_bytes", "hw_power_watts", "hw_energy_joules_total", "hw_temperature_celsius"):
        gpus = [s for s in metrics.series(name) if s.get("hw_vendor") == "NVIDIA"]
        assert len(gpus) == 8 == len({s["hw_id"] for s in gpus}), (name, gpus)
    assert sorted(metrics.value("hw_power_watts", hw_id=f"GPU-5a1f7c2e-0000-4d3c-9b8e-{i:012x}") for i in range(8)) == [400 + i / 1000 for i in range(8)]
    resident = {s["model"] for s in metrics.series("ollama_loaded_model_vram_bytes")}
    assert set(models) <= resident and metrics.value("ollama_loaded_models") == len(resident)
