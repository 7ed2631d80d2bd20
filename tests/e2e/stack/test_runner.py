"""`make up`'s runner keeps the stack up: a part that exits comes back, and the proxy never stops for another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml
import psutil

from ollama_otel_stack.stack.supervisor import PartSpec, RestartPolicy, Supervisor
from tests.support.harness import PYTHON, ROOT, configure_fake, free_port, require_tool

# what a part's command line runs (the executable, or Python's module) -> the part
PART_OF = {"otel_proxy": "otel-proxy", "hw_collector": "hw-collector", "prometheus": "prometheus", "prometheus-alertmanager": "alertmanager",
           "alertmanager": "alertmanager", "streamlit": "ui"}


def parts_of(up: subprocess.Popen[str]) -> dict[str, int]:
    """The runner's children by part name, from their command lines."""
    found = {}
    for child in psutil.Process(up.pid).children():
        try:
            command = child.cmdline()
            if child.status() == psutil.STATUS_ZOMBIE or not command:  # exiting, or forked and not yet exec'd (CI saw an empty one)
                continue
        except psutil.NoSuchProcess:
            continue
        runs = command[2] if len(command) > 2 and command[1] == "-m" else Path(command[0]).name
        if runs in PART_OF:
            found[PART_OF[runs]] = child.pid
    return found


def sample_of_the_proxy(prometheus_url: str) -> float:
    """The time of a stored ``up`` sample of the proxy's job (waiting for the first scrape)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            found = httpx.get(prometheus_url + "/api/v1/query", params={"query": 'up{job="otel-proxy"} == 1'}, timeout=2).json()["data"]["result"]
        except httpx.HTTPError:
            found = []
        if found:
            return found[0]["value"][0]
        assert time.monotonic() < deadline, "Prometheus never scraped the proxy"
        time.sleep(0.5)


def test_killing_any_part_never_interrupts_the_proxy_and_the_part_comes_back(fake, tmp_path):
    require_tool("prometheus")
    configure_fake(fake, token_delay=0.01, answer_delay=0)
    ports = {name: free_port() for name in ("OTEL_PROXY_PORT", "HW_COLLECTOR_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "UI_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "OLLAMA_UPSTREAM": fake.url, "PYTHONUNBUFFERED": "1", "STACK_RUN_DIR": str(tmp_path),
           "PROMETHEUS_RETENTION": "30d",  # the size bound left at its default
           "PROMETHEUS_REMOTE_WRITE": f"http://127.0.0.1:{free_port()}/api/v1/write"}  # a long-term store (nobody there: Prometheus retries)
    prometheus_url = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"
    health = {
        "otel-proxy": f"http://127.0.0.1:{ports['OTEL_PROXY_PORT']}/-/healthy",
        "hw-collector": f"http://127.0.0.1:{ports['HW_COLLECTOR_PORT']}/-/healthy",
        "prometheus": f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}/-/ready",
        "alertmanager": f"http://127.0.0.1:{ports['ALERTMANAGER_PORT']}/-/ready",
        "ui": f"http://127.0.0.1:{ports['UI_PORT']}/_stcore/health",
    }
    up = subprocess.Popen([PYTHON, "-m", "ollama_otel_stack.stack", "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(up.stdout.readline, "")), daemon=True)
    reader.start()
    stop = threading.Event()
    answers: list[int | str] = []

    def use_the_proxy() -> None:  # a client of Ollama through the proxy, all the while
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    answers.append(client.post(f"http://127.0.0.1:{ports['OTEL_PROXY_PORT']}/api/generate",
                                               json={"model": "llama3.2:1b", "prompt": "hi", "stream": False}).status_code)
                except httpx.HTTPError as exc:
                    answers.append(repr(exc))
                time.sleep(0.05)

    client = threading.Thread(target=use_the_proxy)
    try:
        deadline = time.monotonic() + 120
        while not any("The stack is up" in line for line in output):
            assert up.poll() is None and time.monotonic() < deadline, "".join(output)
            time.sleep(0.2)
        client.start()
        seen_at = sample_of_the_proxy(prometheus_url)  # a sample stored before Prometheus and the proxy are killed
        for name in ("ui", "hw-collector", "alertmanager", "prometheus"):
            before = parts_of(up)
            assert set(before) == set(PART_OF.values()), (before, "".join(output))
            os.kill(before[name], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:  # the part is back: a new process that answers its health check
                now = parts_of(up)
                if now.get(name, before[name]) != before[name]:
                    try:
                        if httpx.get(health[name], timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                assert time.monotonic() < deadline, f"{name} did not come back:\n{''.join(output)}"
                time.sleep(0.2)
            assert parts_of(up)["otel-proxy"] == before["otel-proxy"], "the proxy was restarted"
        stop.set()
        client.join(timeout=10)
        assert len(answers) >= 10 and set(answers) == {200}, [a for a in answers if a != 200][:5]
        # The proxy itself comes back too.
        proxy = parts_of(up)["otel-proxy"]
        os.kill(proxy, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(health["otel-proxy"], timeout=1).status_code == 200 and parts_of(up)["otel-proxy"] != proxy:
                    break
            except (httpx.HTTPError, KeyError):
                pass
            assert time.monotonic() < deadline, "".join(output)
            time.sleep(0.2)
        assert up.poll() is None
        # The history survived both: Prometheus replays its data directory (the state directory's, kept across runs).
        kept = httpx.get(prometheus_url + "/api/v1/query", params={"query": 'up{job="otel-proxy"}', "time": seen_at}).json()["data"]["result"]
        assert [sample["value"] for sample in kept] == [[seen_at, "1"]], kept
        flags = httpx.get(prometheus_url + "/api/v1/status/flags").json()["data"]
        assert (flags["storage.tsdb.retention.time"], flags["storage.tsdb.retention.size"]) == ("30d", "10GiB"), flags  # Prometheus reads its size units as powers of 2
        loaded = yaml.safe_load(httpx.get(prometheus_url + "/api/v1/status/config").json()["data"]["yaml"])
        assert [target["url"] for target in loaded["remote_write"]] == [env["PROMETHEUS_REMOTE_WRITE"]], loaded.get("remote_write")
        text = "".join(output)
        for name in ("ui", "hw-collector", "alertmanager", "prometheus", "otel-proxy"):
            assert f"{name} exited (code -9); restarting it in 1 s (restart 1 of 5)" in text, text
    finally:
        stop.set()
        up.send_signal(signal.SIGINT)
        up.wait(timeout=120)  # a part stuck in a disk write a busy CI machine holds up (Prometheus syncing its WAL) can take its time to die


def test_a_part_that_keeps_crashing_is_given_up_on_while_the_rest_stay_up(tmp_path, caplog):
    port = free_port()
    steady = PartSpec("steady", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], dict(os.environ), f"http://127.0.0.1:{port}/")
    crashing = PartSpec("crashing", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), f"http://127.0.0.1:{free_port()}/")
    policy = RestartPolicy(first_backoff_s=0.05, max_backoff_s=0.2, max_restarts=3, window_s=60, healthy_within_s=5)
    supervisor = Supervisor([steady, crashing], cwd=tmp_path, logs=tmp_path, policy=policy)
    caplog.set_level("INFO", logger="stack")
    try:
        assert supervisor.start_all() == ["crashing"]
        steady_pid = supervisor.parts[0].process.pid
        deadline = time.monotonic() + 20
        while not supervisor.parts[1].given_up:
            assert time.monotonic() < deadline, caplog.text
            supervisor.watch_once()
            time.sleep(0.02)
        assert len(supervisor.parts[1].restarts) == 3
        assert "crashing exited (code 3) after 3 restarts in 60 s: giving up on it, the rest stay up" in caplog.text
        assert [r.message for r in caplog.records].count("crashing exited (code 3); restarting it in 0 s (restart 1 of 3); see " + str(Path(tmp_path) / "crashing.log")) == 1
        for _ in range(5):
            supervisor.watch_once()
        assert supervisor.parts[0].process.pid == steady_pid and supervisor.parts[0].process.poll() is None
        assert httpx.get(steady.health_url).status_code == 200
    finally:
        supervisor.stop_all()


def test_the_default_policy_backs_off_1_2_4_8_16_s_and_gives_up_on_the_sixth_exit_in_five_minutes(tmp_path, caplog, monkeypatch):
    """The README's figures, with the default RestartPolicy and a clock the test moves (a real one would take 31 s)."""
    import types

    from ollama_otel_stack.stack import supervisor as module

    crashing = PartSpec("crashing", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), f"http://127.0.0.1:{free_port()}/")
    supervisor = Supervisor([crashing], cwd=tmp_path, logs=tmp_path)
    caplog.set_level("INFO", logger="stack")
    assert supervisor.start_all() == ["crashing"]  # exit 1, at real time
    now = [time.monotonic()]
    monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=lambda: now[0], sleep=time.sleep))
    part = supervisor.parts[0]
    try:
        while not part.given_up:
            assert len(part.restarts) <= 5, caplog.text
            if part.restart_at is not None:
                now[0] = part.restart_at  # the backoff passes
            supervisor.watch_once()  # restarts it, or notes its exit
            if part.process is not None and part.process.poll() is None:
                part.process.wait(timeout=30)
                now[0] += 0.1  # it ran for 0.1 s
    finally:
        supervisor.stop_all()
    delays = [float(message.split("restarting it in ")[1].split(" s")[0]) for message in (r.getMessage() for r in caplog.records) if "restarting it in" in message]
    assert delays == [1, 2, 4, 8, 16]
    assert "crashing exited (code 3) after 5 restarts in 300 s: giving up on it" in caplog.text


def test_parts_that_ignore_sigterm_are_killed_after_one_grace_for_all_of_them(tmp_path):
    """Ctrl-C stops the stack within the grace, however many parts hold on: the grace is shared, not one a part."""
    stubborn = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"
    specs = [PartSpec(f"stubborn{index}", [sys.executable, "-c", stubborn], dict(os.environ), f"http://127.0.0.1:{free_port()}/") for index in range(3)]
    supervisor = Supervisor(specs, cwd=tmp_path, logs=tmp_path, policy=RestartPolicy(healthy_within_s=0.01))
    for part in supervisor.parts:
        supervisor._spawn(part)
    for part in supervisor.parts:  # each has set SIGTERM aside before it is asked to stop
        log = Path(tmp_path) / f"{part.name}.log"
        deadline = time.monotonic() + 30
        while "ready" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    started = time.monotonic()
    supervisor.stop_all(grace_s=1.0)
    took = time.monotonic() - started
    assert [part.process.returncode for part in supervisor.parts] == [-9, -9, -9]
    assert 1.0 <= took < 2.5, took  # one grace for the three, not three (3 s and more)
