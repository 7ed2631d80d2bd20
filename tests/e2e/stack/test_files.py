"""The stack's files: compose (schema, pins, health checks), the collector config, Prometheus'
config and alert rules (promtool), and `make up` as a real run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import httpx
import jsonschema
import yaml

from ollama_otel_stack.stack import defaults
from tests.support.harness import PYTHON, ROOT, free_port, require_tool

# The Compose Specification schema from shared/ beside the checkout (as CI lays it out); a
# clone on its own uses the copy taken from there into tests/support/data.
SCHEMA = next(path for path in (ROOT.parent / "shared" / "schemas" / "compose-spec.json", ROOT / "tests" / "support" / "data" / "compose-spec.json") if path.exists())
COMPOSE_FILES = ("compose.yaml", "compose.nvidia.yaml", "compose.mac.yaml")
REQUIRED_SERVICES = {"ollama", "otel-proxy", "hw-collector", "otel-collector", "prometheus", "alertmanager", "jaeger", "ui", "grafana"}
# Collector components that no longer exist (logging: v0.111, jaeger: v0.85) or are deprecated aliases (v0.144).
REMOVED_COMPONENTS = {"logging", "jaeger", "jaeger_thrift", "otlphttp"}
DEPRECATED_EXPORTERS = {"otlp"}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_compose_files_follow_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    for name in COMPOSE_FILES:
        jsonschema.validate(load(name), schema)


def test_compose_services_are_pinned_healthy_and_local():
    services = load("compose.yaml")["services"]
    assert set(services) == REQUIRED_SERVICES
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), f"{name}: {image} is not pinned"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    for name in ("ollama", "otel-proxy", "hw-collector", "prometheus", "alertmanager", "ui"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    assert services["ui"]["command"][:3] == ["streamlit", "run", "ui"]
    assert "3001" in services["ui"]["command"]
    # Metrics reach Prometheus only by scrape: the services push no metrics to the collector.
    for name in ("otel-proxy", "hw-collector"):
        assert services[name]["environment"]["OTEL_METRICS_EXPORTER"] == "none"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11[\w.-]+$", dockerfile, re.M) and re.search(r"^FROM \$\{BASE_IMAGE\}$", dockerfile, re.M)


def test_the_image_copies_every_module_and_package_the_project_installs():
    """`pip install .` in the image needs every package and module pyproject.toml names."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied.update(part.rstrip("/") for part in line.split()[1:-1])
    wanted = {f"{module}.py" for module in setuptools.get("py-modules", [])}
    wanted |= {package.split(".")[0] for package in setuptools["packages"]}
    assert wanted <= copied, f"the Dockerfile does not copy {sorted(wanted - copied)}"


def test_compose_publishes_the_stacks_default_ports_and_keeps_its_default_retention():
    """compose.yaml writes the defaults of ollama_otel_stack/stack/defaults.py (make up's) again: the two must agree."""
    services = load("compose.yaml")["services"]
    published = {name: [int(port.rsplit(":", 1)[1]) for port in service.get("ports", [])] for name, service in services.items()}
    assert published["otel-proxy"] == [defaults.PROXY_PORT] and published["hw-collector"] == [defaults.COLLECTOR_PORT]
    assert published["prometheus"] == [defaults.PROMETHEUS_PORT] and published["alertmanager"] == [defaults.ALERTMANAGER_PORT]
    assert published["ui"] == [defaults.UI_PORT] and published["ollama"] == [int(defaults.OLLAMA_URL.rsplit(":", 1)[1])]
    command = " ".join(services["prometheus"]["command"])
    assert f"--storage.tsdb.retention.time=${{PROMETHEUS_RETENTION:-{defaults.RETENTION}}}" in command
    assert f"--storage.tsdb.retention.size=${{PROMETHEUS_RETENTION_SIZE:-{defaults.RETENTION_SIZE}}}" in command


def test_mac_variant_keeps_ollama_and_the_collector_on_the_host():
    mac = load("compose.mac.yaml")["services"]
    assert mac["ollama"]["profiles"] and mac["hw-collector"]["profiles"]
    assert mac["otel-proxy"]["environment"]["OLLAMA_UPSTREAM"] == "http://host.docker.internal:11434"
    targets = [t for job in load("prometheus.mac.yml")["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert "host.docker.internal:8002" in targets


def test_prometheus_scrapes_both_services_every_five_seconds():
    config = load("prometheus.yml")
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]] for job in config["scrape_configs"]}
    assert jobs == {"otel-proxy": ["otel-proxy:8001"], "hw-collector": ["hw-collector:8002"]}
    assert config["rule_files"] == ["alerts.yml", "recording.yml"]
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]}
    check = subprocess.run([require_tool("promtool"), "check", "config", "prometheus.yml"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_alertmanager_config_passes_amtool_and_its_webhook_is_the_route(tmp_path):
    """alertmanager.yml as shipped, and as `make up` rewrites it with a webhook and with none, pass amtool."""
    from ollama_otel_stack.stack.prometheus import alertmanager_config

    amtool = require_tool("amtool")
    config = load("alertmanager.yml")
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"] == "webhook" and receiver["webhook_configs"][0]["send_resolved"] is True
    assert yaml.safe_load(alertmanager_config("http://example.test/hook"))["receivers"][0]["webhook_configs"][0]["url"] == "http://example.test/hook"
    assert yaml.safe_load(alertmanager_config(None))["receivers"] == [{"name": "webhook"}]
    for name, text in (("shipped.yml", (ROOT / "alertmanager.yml").read_text()), ("hook.yml", alertmanager_config("http://example.test/hook")),
                       ("none.yml", alertmanager_config(None))):
        path = tmp_path / name
        path.write_text(text)
        check = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
        assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr


def test_alert_rules_pass_promtool_and_their_unit_tests():
    promtool = require_tool("promtool")
    check = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0 and "17 rules found" in check.stdout, check.stdout + check.stderr
    names = {rule["alert"] for group in load("alerts.yml")["groups"] for rule in group["rules"]}
    assert {"OtelProxyDown", "OllamaUnreachable", "OllamaUpstreamErrors", "TimeToFirstTokenHigh", "GpuHot", "HostMemoryNearlyFull"} <= names
    unit = subprocess.run([promtool, "test", "rules", "tests/support/alerts_test.yml"], cwd=ROOT, capture_output=True, text=True)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_each_kind_of_advice_is_an_alert_rule_with_the_pages_threshold():
    """The page's advice (ui/status.py) and the alert rules say the same thing at the same point."""
    from ui import status

    rules = {rule["alert"]: rule for group in load("alerts.yml")["groups"] for rule in group["rules"]}
    thresholds = {
        "OllamaSlotBound": (status.SLOT_WAIT_S, ">", "raise OLLAMA_NUM_PARALLEL or add a host"),
        "OllamaLoadQueueBound": (status.HELD_UP_10M_S, ">=", "or give it its own host"),
        "OllamaFrequentReloads": (status.RELOADS_10M, ">=", "pin one value"),
        "OllamaContextFull": (status.CONTEXT_CUT_SHARE, ">=", "raise num_ctx"),
        "OllamaPartialOffload": (status.CPU_SHARE, ">=", "a smaller quantisation or num_ctx would fit VRAM"),
        "OllamaBypassingProxy": (status.BYPASSED_1H, ">=", "or let Ollama listen on 127.0.0.1 only (OLLAMA_HOST)"),
        "OllamaPromptsTruncated": (status.TRUNCATIONS_1H, ">=", "raise num_ctx or OLLAMA_CONTEXT_LENGTH"),
        "OllamaLogFormatChanged": (status.LOG_UNKNOWN_SHARE, ">=", "Ollama's log format changed; upgrade the collector"),
    }
    for name, (value, comparison, remedy) in thresholds.items():
        first_comparison = re.search(r"\)\s*(>=|>)\s*([0-9.]+)", rules[name]["expr"])
        assert first_comparison is not None, name
        assert (first_comparison.group(1), float(first_comparison.group(2))) == (comparison, value), name
        assert rules[name]["annotations"]["summary"].endswith(remedy), name


def test_collector_pipelines_reference_only_defined_current_components():
    config = load("otel-collector.yaml")
    for protocol, port in (("grpc", 4317), ("http", 4318)):
        assert config["receivers"]["otlp"]["protocols"][protocol]["endpoint"] == f"0.0.0.0:{port}"
    service = config["service"]
    assert set(service["pipelines"]) == {"traces", "metrics"}
    for section in ("receivers", "processors", "exporters", "extensions"):
        for component in config.get(section, {}):
            kind = component.split("/")[0]
            assert kind not in REMOVED_COMPONENTS, f"{section}.{component} is a removed component"
            assert section != "exporters" or kind not in DEPRECATED_EXPORTERS, f"{component}: use otlp_grpc"
    for extension in service.get("extensions", []):
        assert extension in config["extensions"]
    for name, pipeline in service["pipelines"].items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in config[section], f"pipeline {name} uses undefined {section[:-1]} {component}"
    assert service["pipelines"]["traces"]["exporters"] == ["otlp_grpc/jaeger"]
    assert config["exporters"]["otlp_grpc/jaeger"]["endpoint"] == "jaeger:4317"
    # The common swaps are shown, commented.
    text = (ROOT / "otel-collector.yaml").read_text()
    assert "# prometheusremotewrite:" in text and "# otlp_http/vendor:" in text


def test_make_up_starts_everything_says_when_ollama_is_missing_and_stops_on_ctrl_c(tmp_path):
    require_tool("prometheus")
    ports = {name: free_port() for name in ("OTEL_PROXY_PORT", "HW_COLLECTOR_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "UI_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "OLLAMA_UPSTREAM": f"http://127.0.0.1:{free_port()}", "PYTHONUNBUFFERED": "1", "STACK_RUN_DIR": str(tmp_path)}
    up = subprocess.Popen([PYTHON, "-m", "ollama_otel_stack.stack", "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not any("The stack is up" in line for line in lines):
            assert up.poll() is None and time.monotonic() < deadline, "".join(lines)
            lines.append(up.stdout.readline())
        for _ in range(6):
            lines.append(up.stdout.readline())
        output = "".join(lines)
        assert "Ollama is not reachable" in output
        assert "alerts reach no one yet: --alert-webhook URL" in output  # no webhook given: said, not hidden
        assert httpx.get(f"http://127.0.0.1:{ports['ALERTMANAGER_PORT']}/-/ready").status_code == 200
        for port in ports.values():
            assert f"http://127.0.0.1:{port}" in output
        assert httpx.get(f"http://127.0.0.1:{ports['OTEL_PROXY_PORT']}/-/healthy").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['UI_PORT']}/_stcore/health").text == "ok"
        deadline = time.monotonic() + 20  # Prometheus applies discovered targets every 5 s
        while True:
            targets = httpx.get(f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}/api/v1/targets").json()["data"]["activeTargets"]
            if {t["health"] for t in targets} == {"up"} and len(targets) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert {(t["labels"]["job"], t["health"]) for t in targets} == {("otel-proxy", "up"), ("hw-collector", "up")}
        assert set(json.loads((tmp_path / "state.json").read_text())["parts"]) == {"otel-proxy", "hw-collector", "prometheus", "alertmanager", "ui"}
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=120)  # a part stuck in a disk write a busy CI machine holds up (Prometheus syncing its WAL) can take its time to die
    time.sleep(0.5)
    assert not (tmp_path / "state.json").exists()
    for port in ports.values():
        with __import__("socket").socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after Ctrl-C"


def test_make_down_stops_a_background_run(tmp_path):
    ports = {name: free_port() for name in ("OTEL_PROXY_PORT", "HW_COLLECTOR_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "UI_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "OLLAMA_UPSTREAM": f"http://127.0.0.1:{free_port()}",
           "PYTHONUNBUFFERED": "1", "STACK_RUN_DIR": str(tmp_path)}
    up = subprocess.Popen([PYTHON, "-m", "ollama_otel_stack.stack", "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while "The stack is up" not in up.stdout.readline():
            assert up.poll() is None and time.monotonic() < deadline
        children = [part["pid"] for part in json.loads((tmp_path / "state.json").read_text())["parts"].values()]
        assert len(children) == 5 and all(isinstance(pid, int) for pid in children)
        down = subprocess.run([PYTHON, "-m", "ollama_otel_stack.stack", "down"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert down.returncode == 0 and "stopped" in down.stdout
        up.wait(timeout=120)  # a part stuck in a disk write a busy CI machine holds up (Prometheus syncing its WAL) can take its time to die
    finally:
        if up.poll() is None:
            up.kill()
    for pid in children:
        assert not __import__("psutil").pid_exists(pid) or __import__("psutil").Process(pid).status() == "zombie"


def test_the_ollama_image_is_the_release_the_fake_speaks():
    """compose.yaml's Ollama is the release whose wire formats tests/fake/ollama.py was written from, not last year's."""
    from tests.fake.ollama import OLLAMA_VERSION

    assert load("compose.yaml")["services"]["ollama"]["image"] == f"ollama/ollama:{OLLAMA_VERSION}"
