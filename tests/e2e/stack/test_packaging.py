"""What an install puts on a machine: four top-level names, the locked versions, nothing generic."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import httpx
import psutil
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.harness import PYTHON, ROOT

TOP_LEVEL = {"otel_proxy", "hw_collector", "ui", "ollama_otel_stack"}
LOCKS = {"runtime": ROOT / "requirements" / "runtime.txt", "test": ROOT / "requirements" / "test.txt"}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def pins(lock: Path, here_only: bool = False) -> dict[str, str]:
    """Name -> version of every pin; ``here_only``: those whose environment marker holds on this machine."""
    found = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match and not (here_only and match.group(3) and not Marker(match.group(3)).evaluate()):
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def test_the_wheel_puts_only_the_components_and_the_shared_package_in_site_packages(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", ".run", "artifacts", "build", "*.egg-info", "__pycache__"))
    result = subprocess.run([PYTHON, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "wheels"), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower().replace("location 'file:///opt", ""), result.stderr
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    listed = zipfile.ZipFile(wheel).namelist()
    names = {name.split("/")[0] for name in listed if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert names == TOP_LEVEL
    # and the stack's defaults, for <prefix>/share/ollama-otel-stack (not site-packages)
    assert sorted(name.split("/", 2)[2] for name in listed if name.split("/")[0].endswith(".data")) == [
        "share/ollama-otel-stack/alertmanager.yml", "share/ollama-otel-stack/alerts.yml", "share/ollama-otel-stack/prometheus.yml",
        "share/ollama-otel-stack/recording.yml", "share/ollama-otel-stack/streamlit/config.toml"]


def test_every_dependency_is_locked_with_hashes_in_both_locks():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["nvidia"]]
    test = runtime + [Requirement(r) for r in project["optional-dependencies"]["test"]]
    for name, wanted in (("runtime", runtime), ("test", test)):
        locked = pins(LOCKS[name])
        for requirement in wanted:
            version = locked.get(canonicalize_name(requirement.name))
            assert version is not None, f"{requirement.name} is not in {LOCKS[name].name}: run make lock"
            assert requirement.specifier.contains(version, prereleases=True), f"{LOCKS[name].name} pins {requirement.name}=={version}, outside {requirement}"
        text = LOCKS[name].read_text()
        blocks = [block for block in re.split(r"\n(?=[A-Za-z0-9])", text) if PIN.match(block.splitlines()[0])]
        assert blocks and all("--hash=sha256:" in block for block in blocks if PIN.match(block.splitlines()[0])), f"{LOCKS[name].name} has a pin without a hash"
    assert set(pins(LOCKS["runtime"]).items()) <= set(pins(LOCKS["test"]).items()), "the test lock must hold the runtime lock's versions"


def test_the_suite_runs_on_exactly_the_locked_versions():
    """make test installs requirements/test.txt: every locked package is installed at its locked version."""
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in pins(LOCKS["test"], here_only=True).items() if installed.get(name) != version}
    assert not wrong, f"installed versions differ from requirements/test.txt (locked, installed): {wrong}; run make test"


def test_make_up_and_the_image_install_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/runtime.txt" in makefile and "--require-hashes -r requirements/test.txt" in makefile
    up = makefile.split("\nup:")[1].split("\n\n")[0]
    assert "venv" in up and "test" not in up, "make up installs the runtime dependencies only"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime.txt" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"


def test_the_stack_runs_from_an_installed_wheel_outside_any_checkout(tmp_path, fake):
    """pipx's way: the wheel in a fresh venv (the locked dependencies, then the wheel), run from a directory
    that is no checkout; `ollama-stack up` starts the five parts, `status` lists them, `down` stops them."""
    from tests.support.harness import free_port, require_tool

    require_tool("prometheus")
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", ".run", "artifacts", "build", "*.egg-info", "__pycache__"))
    built = subprocess.run([PYTHON, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "wheels"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    shutil.rmtree(source)  # nothing of the checkout is left to lean on
    venv = tmp_path / "fresh"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step in ([*pip, "--require-hashes", "-r", str(LOCKS["runtime"])], [*pip, "--no-deps", str(wheel)]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    where = tmp_path / "elsewhere"
    where.mkdir()
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "import otel_proxy, ui; print(otel_proxy.__file__, ui.__file__)"], cwd=where, capture_output=True, text=True)
    assert str(venv) in found.stdout and str(ROOT) not in found.stdout, found.stdout + found.stderr

    stack = str(venv / "bin" / "ollama-stack")
    ports = {flag: free_port() for flag in ("--proxy-port", "--collector-port", "--prometheus-port", "--alertmanager-port", "--ui-port")}
    flags = ["--state-dir", str(tmp_path / "state"), "--upstream", fake.url, *(str(part) for item in ports.items() for part in item)]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTHONPATH", "STACK_RUN_DIR"))}
    up = subprocess.Popen([stack, "up", *flags], cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = {"otel-proxy": f"http://127.0.0.1:{ports['--proxy-port']}/-/healthy", "hw-collector": f"http://127.0.0.1:{ports['--collector-port']}/-/healthy",
                  "prometheus": f"http://127.0.0.1:{ports['--prometheus-port']}/-/ready", "ui": f"http://127.0.0.1:{ports['--ui-port']}/_stcore/health",
                  "alertmanager": f"http://127.0.0.1:{ports['--alertmanager-port']}/-/ready"}  # with the wheel's alertmanager.yml
        deadline = time.monotonic() + 120
        answered: dict[str, int] = {}
        while len(answered) < len(health):
            assert up.poll() is None and time.monotonic() < deadline, (answered, up.stdout.read() if up.poll() is not None else "still starting")
            for name, url in health.items():
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        answered[name] = 200
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        assert httpx.post(f"http://127.0.0.1:{ports['--proxy-port']}/api/generate", json={"model": "llama3.2:1b", "prompt": "hi", "stream": False}, timeout=30).status_code == 200
        shown = subprocess.run([stack, "status", "--state-dir", str(tmp_path / "state")], cwd=where, env=env, capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        rows = [line.split() for line in shown.stdout.splitlines()[1:]]
        assert {row[0]: row[1] for row in rows} == {"otel-proxy": "running", "hw-collector": "running", "prometheus": "running", "alertmanager": "running", "ui": "running"}, shown.stdout
        assert {row[-1] for row in rows} == {f"http://127.0.0.1:{port}" for port in ports.values()}, shown.stdout
        pids = [int(row[3]) for row in rows]
        dashboard = psutil.Process({row[0]: int(row[3]) for row in rows}["ui"]).cmdline()  # the shipped .streamlit/config.toml, as flags
        assert " ".join(dashboard).endswith("--client.toolbarMode minimal --server.headless true --browser.gatherUsageStats false"), dashboard
        stopped = subprocess.run([stack, "down", "--state-dir", str(tmp_path / "state")], cwd=where, env=env, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        up.wait(timeout=30)
        assert all(not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE for pid in pids)
        after = subprocess.run([stack, "status", "--state-dir", str(tmp_path / "state")], cwd=where, env=env, capture_output=True, text=True, timeout=30)
        assert after.returncode == 3 and after.stdout.startswith("not running"), after.stdout
        assert (tmp_path / "state" / "logs" / "otel-proxy.log").is_file() and not list(where.iterdir())  # state in the state directory, nothing in the cwd
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(timeout=30)
