"""Real servers on free ports for the tests: start, wait until they answer, stop, scrape."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_tool(name: str) -> str:
    """The path of a tool the tests need. Missing in CI is a failure, never a skip."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: run `make test`, which installs it (Debian: apt-get install {name})")
    return path


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def run_server(
    args: Sequence[str],
    port: int,
    ready_path: str = "/",
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
    ready_check: Callable[[str], object] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """Start ``args`` (a command that listens on ``port``), yield once ``ready_path`` answers (to ``ready_check``, or a plain GET);
    ``preexec_fn`` runs in the child before it starts (a resource limit)."""
    log_file = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(list(args), cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    server = Server(f"http://{host}:{port}", port, process, Path(log_file.name))
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{args[0]} exited with {process.returncode}:\n{server.log()}")
            try:
                (ready_check or (lambda url: httpx.get(url, timeout=1.0)))(server.url + ready_path)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{' '.join(args)} did not answer on {server.url} within {timeout} s:\n{server.log()}")
                time.sleep(0.05)
        yield server
    finally:
        server.stop()
        log_file.close()


@contextmanager
def stored_prometheus(data: Path) -> Iterator[Server]:
    """Prometheus over a data directory of its own, keeping 100 days, scraping and evaluating nothing."""
    port = free_port()
    config = data.parent / "empty.yml"
    config.write_text("global: {scrape_interval: 1m}\n")
    args = [require_tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=100d",
            f"--web.listen-address=127.0.0.1:{port}"]
    # ready once its blocks are loaded (/-/ready answers 503 until then)
    with run_server(args, port, "/-/ready", timeout=300, ready_check=lambda url: httpx.get(url, timeout=1).raise_for_status()) as server:
        yield server


@contextmanager
def fake_ollama(token_delay: float = 0.01, load_delay: float = 0.3, version: str | None = None, log: Path | None = None) -> Iterator[Server]:
    """The fake Ollama; ``version``: the release it speaks (tests/fake/ollama.py OLLAMA_VERSION where not given);
    ``log``: where it writes its server log."""
    port = free_port()
    args = [PYTHON, "-m", "tests.fake.ollama", "--port", str(port), "--token-delay", str(token_delay), "--load-delay", str(load_delay)]
    args += ["--ollama-version", version] if version else []
    args += ["--log", str(log)] if log else []
    with run_server(args, port, "/api/version") as server:
        yield server


@contextmanager
def otel_proxy(upstream: str, *extra: str, env: dict[str, str] | None = None, host: str = "127.0.0.1") -> Iterator[Server]:
    port = free_port()
    args = [PYTHON, "-m", "otel_proxy", "--host", host, "--port", str(port), "--upstream", upstream, *extra]
    with run_server(args, port, "/-/healthy", env=env, host=host) as server:
        yield server


class Scrape:
    """One scrape of a /metrics page: samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = [sample for family in self.families.values() for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of every sample called ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def series(self, name: str, **labels: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def scrape(url: str) -> Scrape:
    answer = httpx.get(url + "/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return Scrape(answer.text)


def fake_stats(fake: Server) -> dict:
    return httpx.get(fake.url + "/fake/stats").json()


def read_again(fake: Server) -> None:
    """Once a poller (the proxy's, the collector's) has read /api/ps from the fake afresh and taken the answer in: the
    second read begun after now, as a poller reads, takes in, then reads again."""
    asked = lambda: fake_stats(fake)["requests"].get("/api/ps", 0)  # noqa: E731
    before = asked()
    until(lambda: asked() >= before + 2)


def configure_fake(fake: Server, **settings: object) -> None:
    httpx.post(fake.url + "/fake/configure", json=settings).raise_for_status()


@contextmanager
def hw_collector(ollama: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    args = [PYTHON, "-m", "hw_collector", "--port", str(port), "--ollama", ollama, *extra]
    with run_server(args, port, "/-/healthy", env=env) as server:
        yield server


@contextmanager
def prometheus(targets: dict[str, list[str]], scrape_interval: str = "1s", rules: Sequence[Path] | None = None, alertmanagers: Sequence[str] = (),
               remote_write: Sequence[str] = ()) -> Iterator[Server]:
    """A real Prometheus scraping ``targets`` (job name → host:port list), data in a temporary directory; its
    rules are alerts.yml and recording.yml unless ``rules`` names others, its alerts go to ``alertmanagers`` (host:port),
    its samples on to ``remote_write`` (write URLs)."""
    from ollama_otel_stack.stack.defaults import ALERT_RULES, RECORDING_RULES
    from ollama_otel_stack.stack.prometheus import local_config

    binary = require_tool("prometheus")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "prometheus.yml"
        config.write_text(local_config(targets, scrape_interval, rules or (ALERT_RULES, RECORDING_RULES), alertmanagers, remote_write))
        args = [binary, f"--config.file={config}", f"--storage.tsdb.path={directory}/data", f"--web.listen-address=127.0.0.1:{port}"]
        with run_server(args, port, "/-/ready") as server:
            # Prometheus applies discovered targets every 5 s: wait until each has been scraped once.
            deadline = time.monotonic() + 20
            while True:
                active = httpx.get(server.url + "/api/v1/targets").json()["data"]["activeTargets"]
                if len(active) == sum(map(len, targets.values())) and all(t["health"] != "unknown" for t in active):
                    break
                assert time.monotonic() < deadline, f"Prometheus did not scrape its targets: {active}"
                time.sleep(0.2)
            yield server


@contextmanager
def alertmanager(webhook: str, group_wait: str = "1s") -> Iterator[Server]:
    """A real Alertmanager (Debian's prometheus-alertmanager, or alertmanager) with the project's alertmanager.yml,
    its webhook receiver posting to ``webhook``; clustering off, data in a temporary directory."""
    from ollama_otel_stack.stack.prometheus import alertmanager_config

    binary = shutil.which("alertmanager") or require_tool("prometheus-alertmanager")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "alertmanager.yml"
        config.write_text(alertmanager_config(webhook, group_wait))
        args = [binary, f"--config.file={config}", f"--storage.path={directory}/data", f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
        with run_server(args, port, "/-/ready") as server:
            yield server


@contextmanager
def victoria_metrics() -> Iterator[Server]:
    """A single-node VictoriaMetrics, data in a temporary directory, keeping 100 days; with no latency offset, so a
    query sees the newest samples at once (its default hides the last 30 s, docs/fleet.md), and no cache of results, so
    a query made while history is imported cannot outlive it."""
    binary = require_tool("victoria-metrics")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        args = [binary, f"-storageDataPath={directory}", f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100d", "-search.latencyOffset=0s", "-search.disableCache"]
        with run_server(args, port, "/health") as server:
            yield server


def copy_into(store: Server, prometheus_url: str, names: Sequence[str], at: float, days: int) -> int:
    """Every sample of the series ``names`` over the ``days`` before ``at``, read from Prometheus' query API and
    written to the store's import API (JSON lines): an exact copy. (vmctl from a snapshot, docs/fleet.md, lost one or
    two samples a series in one of this suite's runs.) Returns the samples copied."""
    lines, copied = [], 0
    for name in names:
        result = httpx.get(prometheus_url + "/api/v1/query", params={"query": f"{name}[{days}d]", "time": at}, timeout=120).json()["data"]["result"]
        for series in result:
            lines.append(json.dumps({"metric": series["metric"], "values": [float(v) for _, v in series["values"]],
                                     "timestamps": [round(float(t) * 1000) for t, _ in series["values"]]}))
            copied += len(series["values"])
    httpx.post(store.url + "/api/v1/import", content="\n".join(lines).encode(), timeout=120).raise_for_status()
    httpx.get(store.url + "/internal/force_flush", timeout=30).raise_for_status()
    return copied


@contextmanager
def monitored_ollama(sysfs: Path, token_delay: float = 0.004, load_delay: float = 0.2, log: Path | None = None) -> Iterator[tuple[Server, Server, Server, Server]]:
    """Fake Ollama, the proxy and the hardware collector in front of it, and Prometheus scraping both every second;
    with ``log``, the fake writes its server log there and the collector follows it."""
    following = ("--ollama-log", str(log)) if log else ()
    with (
        fake_ollama(token_delay=token_delay, load_delay=load_delay, log=log) as fake,
        otel_proxy(fake.url) as proxy,
        hw_collector(fake.url, "--interval", "1", "--sysfs-root", str(sysfs), *following) as collector,
        prometheus({"otel-proxy": [f"127.0.0.1:{proxy.port}"], "hw-collector": [f"127.0.0.1:{collector.port}"]}) as prom,
    ):
        yield fake, proxy, collector, prom


GO_UPSTREAM = ROOT / "tests" / "support" / "go_upstream"


@contextmanager
def go_upstream() -> Iterator[Server]:
    """tests/support/go_upstream (Go's own net/http, stdlib only) built with the machine's Go, on a free port."""
    go = require_tool("go")
    with tempfile.TemporaryDirectory() as directory:
        binary = Path(directory) / "go-upstream"
        # A cache of its own: the build writes nowhere in the checkout or the home directory.
        env = {**os.environ, "GOCACHE": os.environ.get("GOCACHE", str(Path(directory) / "cache")), "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=GO_UPSTREAM, env=env, check=True, capture_output=True)
        port = free_port()
        with run_server([str(binary), "-addr", f"127.0.0.1:{port}"], port, "/echo?id=ready") as server:
            yield server


def go_run(program: str, lines: list[str]) -> list[str]:
    """A one-file Go program (stdlib only) run with the machine's Go, fed ``lines``; the lines it writes."""
    go = require_tool("go")
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "main.go").write_text(program)
        env = {**os.environ, "GOCACHE": os.environ.get("GOCACHE", str(Path(directory) / "cache")), "GOTOOLCHAIN": "local", "GO111MODULE": "off"}
        done = subprocess.run([go, "run", "main.go"], cwd=directory, env=env, input="\n".join(lines) + "\n",
                              capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.splitlines()


def substituted(expr: str, dashboard_range: str = "5m") -> str:
    """A Grafana panel's query as Grafana sends it with every picker on All."""
    for name, value in (("$instance", ".*"), ("$model", ".*"), ("$client", ".*"), ("$__rate_interval", "1m"), ("$__range", dashboard_range)):
        expr = expr.replace(name, value)
    return expr


def scraped(prometheus_url: str, times: int = 1) -> None:
    """Waits until Prometheus has scraped every target after now, ``times`` times over: what the targets counted
    before is stored (a scrape's timestamp is when it began). On a busy machine a scrape can come late."""
    def last_scrape() -> float:
        result = httpx.get(prometheus_url + "/api/v1/query", params={"query": "min(timestamp(up))"}, timeout=10).json()["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    for _ in range(times):
        since = time.time()
        until(lambda: last_scrape() > since)


def until(what: Callable[[], T], deadline_s: float = 30.0, every_s: float = 0.05) -> T:
    """What ``what`` returns once it is true, asked every ``every_s``; fails past ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while not (got := what()):
        assert time.monotonic() < deadline, f"not within {deadline_s} s"
        time.sleep(every_s)
    return got
