"""The service definitions in deploy/: valid for systemd and launchd, and the same set-up as `make up`."""

from __future__ import annotations

import configparser
import os
import plistlib
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support.harness import ROOT, require_tool

INSTALLED_AT = "/opt/ollama-otel-stack"
# What `make up` gives each service (ollama_otel_stack/stack/__main__.py): its program, its port, Ollama's URL.
SERVICES = {"otel-proxy": ("OTEL_PROXY_HOST", "OTEL_PROXY_PORT", "8001"), "hw-collector": ("HW_COLLECTOR_HOST", "HW_COLLECTOR_PORT", "8002")}


def console_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((ROOT / "deploy" / "systemd" / f"{name}.service").read_text())
    return parser


def unit_environment(name: str) -> dict[str, str]:
    lines = [line for line in (ROOT / "deploy" / "systemd" / f"{name}.service").read_text().splitlines() if line.startswith("Environment=")]
    return dict(line.removeprefix("Environment=").split("=", 1) for line in lines)


@pytest.mark.parametrize("name", SERVICES)
def test_systemd_unit_runs_the_project_script_with_make_ups_settings(name):
    host_variable, port_variable, port = SERVICES[name]
    service = unit(name)["Service"]
    assert name in console_scripts()
    assert service["ExecStart"] == f"{INSTALLED_AT}/.venv/bin/{name}"
    assert service["Restart"] == "always" and service["User"] != "root"
    environment = unit_environment(name)
    assert environment == {"OLLAMA_UPSTREAM": "http://127.0.0.1:11434", host_variable: "127.0.0.1", port_variable: port}
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"
    if name == "otel-proxy":  # clients' connections: far past systemd's default 1,024 files
        assert int(service["LimitNOFILE"]) >= 65536


@pytest.mark.parametrize("name", SERVICES)
def test_systemd_analyze_verifies_the_unit(name, tmp_path):
    analyze = require_tool("systemd-analyze")  # Debian's systemd package (tests/support/tools.sh); it verifies units without booting
    # Verified as installed: ExecStart pointed at this checkout's virtualenv, through a link without spaces.
    link = tmp_path / "install"
    link.symlink_to(ROOT)
    text = (ROOT / "deploy" / "systemd" / f"{name}.service").read_text().replace(INSTALLED_AT, str(link))
    text = "\n".join(line for line in text.splitlines() if not line.startswith(("User=", "Group=")))  # no such user here
    path = tmp_path / f"{name}.service"
    path.write_text(text)
    result = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    problems = [line for line in result.stderr.splitlines() if path.name in line or "error" in line.lower()]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_launchd_agent_runs_the_project_script_with_make_ups_settings(name):
    host_variable, port_variable, port = SERVICES[name]
    path = ROOT / "deploy" / "launchd" / f"com.ollama-otel-stack.{name}.plist"
    # plutil exists only on macOS: plistlib parses the file as plutil -lint would (a malformed list raises)
    agent = plistlib.loads(path.read_bytes())
    assert agent["Label"] == path.stem
    assert agent["ProgramArguments"] == [f"{INSTALLED_AT}/.venv/bin/{name}"]
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] is True
    environment = agent["EnvironmentVariables"]
    assert environment["OLLAMA_UPSTREAM"] == "http://127.0.0.1:11434"
    assert environment[host_variable] == "127.0.0.1" and environment[port_variable] == port
    if name == "otel-proxy":  # launchd's default is 256 files
        assert agent["SoftResourceLimits"]["NumberOfFiles"] >= 65536 and agent["HardResourceLimits"]["NumberOfFiles"] >= 65536


def test_the_readme_points_at_the_service_definitions():
    readme = (ROOT / "README.md").read_text()
    assert "deploy/README.md" in readme and "systemd" in readme and "launchd" in readme
    assert Path(ROOT / "deploy" / "README.md").exists()
