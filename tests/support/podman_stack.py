"""compose.yaml brought up for real by Podman, for tests/e2e/stack/test_compose.py.

No container registry is reachable here, so the images compose.yaml names are made locally:
a Debian base from ``debootstrap --variant=minbase`` (with this machine's CA bundle and pip's
certificate setting, so builds reach the package registries the way the host does), the
project's own image from its Dockerfile on that base, and Prometheus and Alertmanager from Debian's packages.
Each is cached by a hash of its recipe and rebuilt when the recipe changes. Podman 4.3
without systemd never runs health checks by itself, so this harness starts the services in
compose's order and runs ``podman healthcheck run`` until each is healthy before its
dependants. Every container, network and volume is removed at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.harness import ROOT

PROJECT = "ollama-monitoring-test"
FILES = ["-f", str(ROOT / "compose.yaml"), "-f", str(ROOT / "tests" / "support" / "compose.test.yaml")]
# compose.yaml's services in the order their health and dependencies ask for (grafana's image cannot be made here).
ORDER = ("ollama", "otel-collector", "jaeger", "otel-proxy", "hw-collector", "alertmanager", "prometheus", "ui")
HEALTHCHECKED = {"ollama", "otel-proxy", "hw-collector", "alertmanager", "prometheus", "ui"}
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
"""
DEBOOTSTRAP = ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm"]


class PodmanUnavailable(AssertionError):
    """What is missing for the compose test; `make test` installs it (a failure, never a skip)."""


def require_engine() -> dict[str, str]:
    """The environment podman and podman-compose run under; fails naming the missing piece."""
    missing = [tool for tool in ("podman", "runc", "debootstrap", "netavark") if not (shutil.which(tool) or Path(f"/usr/lib/podman/{tool}").exists())]
    compose = Path(sys.executable).with_name("podman-compose")
    if not compose.exists():
        missing.append("podman-compose (the virtualenv's; make test installs it)")
    if missing:
        raise PodmanUnavailable(f"the compose test needs {', '.join(missing)}: run `make test`, which installs them "
                                "(Debian: apt-get install podman runc debootstrap netavark aardvark-dns; pip: podman-compose)")
    if os.geteuid() != 0:
        raise PodmanUnavailable("the compose test runs rootful Podman: run it as root (make test in CI does)")
    work = Path(tempfile.gettempdir()) / "ollama-monitoring-podman"
    work.mkdir(exist_ok=True)
    conf = work / "containers.conf"
    hard = int(subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip() or 1024)
    conf.write_text(CONTAINERS_CONF.format(nofile=min(hard, 65536)))
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def _run(args: list[str], env: dict[str, str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args[:6])} … failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _exists(image: str, env: dict[str, str]) -> bool:
    return subprocess.run(["podman", "image", "exists", image], env=env).returncode == 0


def base_image(env: dict[str, str]) -> str:
    """localhost/ollama-stack-base:<recipe hash>, made once from debootstrap and this machine's trust settings."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    recipe = hashlib.sha256(" ".join(DEBOOTSTRAP).encode() + (bundle.read_bytes() if bundle.exists() else b"")).hexdigest()[:12]
    image = f"localhost/ollama-stack-base:{recipe}"
    if _exists(image, env):
        return image
    with tempfile.TemporaryDirectory() as directory:
        rootfs = Path(directory) / "rootfs"
        _run([*DEBOOTSTRAP, str(rootfs)], env, timeout=900)
        if bundle.exists():  # the CAs this machine trusts (a registry behind a TLS-inspecting proxy, say)
            shutil.copy(bundle, rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt")
            (rootfs / "etc" / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        _run(["podman", "import", "-", image], env, stdin=tar.stdout)
        tar.wait()
    return image


def build_images(env: dict[str, str]) -> None:
    """The app image compose.yaml names, from the Dockerfile; Prometheus and Alertmanager from Debian's packages. Layer caches keep rebuilds short."""
    base = base_image(env)
    _run(["podman", "build", "--quiet", "--build-arg", f"BASE_IMAGE={base}", "-t", "ollama-monitoring-app:0.1.0",
          "-t", "localhost/ollama-monitoring-app:0.1.0", str(ROOT)], env, timeout=900)
    for name in ("prometheus", "alertmanager"):
        _run(["podman", "build", "--quiet", "--build-arg", f"BASE_IMAGE={base}", "-t", f"localhost/ollama-monitoring-{name}:test",
              "-f", str(ROOT / "tests" / "support" / "containers" / f"{name}.Containerfile"), str(ROOT / "tests" / "support" / "containers")], env, timeout=900)


def compose(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return _run([str(Path(sys.executable).with_name("podman-compose")), "-p", PROJECT, *FILES, *args], env, timeout=timeout, cwd=ROOT)


def container_of(service: str, env: dict[str, str]) -> str:
    names = _run(["podman", "ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}",
                  "--filter", f"label=io.podman.compose.service={service}", "--format", "{{.Names}}"], env).stdout.split()
    assert names, f"no container for {service}"
    return names[0]


def wait_healthy(service: str, env: dict[str, str], seconds: float = 120) -> None:
    """Podman without systemd runs no health check by itself: run compose's own check until it passes."""
    name = container_of(service, env)
    deadline = time.monotonic() + seconds
    while True:
        checked = subprocess.run(["podman", "healthcheck", "run", name], env=env, capture_output=True, text=True)
        if checked.returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = subprocess.run(["podman", "logs", "--tail", "40", name], env=env, capture_output=True, text=True)
            raise AssertionError(f"{service} did not become healthy: {checked.stdout}{checked.stderr}\n{logs.stdout}{logs.stderr}")
        time.sleep(1)


def leftovers(env: dict[str, str]) -> dict[str, list[str]]:
    label = f"label=io.podman.compose.project={PROJECT}"
    found = {
        "containers": _run(["podman", "ps", "-a", "--filter", label, "--format", "{{.Names}}"], env).stdout.split(),
        "networks": [n for n in _run(["podman", "network", "ls", "--format", "{{.Name}}"], env).stdout.split() if n.startswith(PROJECT)],
        "volumes": [v for v in _run(["podman", "volume", "ls", "--format", "{{.Name}}"], env).stdout.split() if v.startswith(PROJECT)],
    }
    return {kind: names for kind, names in found.items() if names}


@contextmanager
def podman_stack() -> Iterator[dict[str, str]]:
    """Build, bring compose.yaml up service by service (health checks waited for), yield the environment, take it all down."""
    env = require_engine()
    build_images(env)
    compose(env, "down", "-v", "-t", "0", timeout=120)  # anything an interrupted run left
    try:
        for service in ORDER:
            compose(env, "up", "-d", "--no-deps", service)
            if service in HEALTHCHECKED:
                wait_healthy(service, env)
        yield env
    finally:
        compose(env, "down", "-v", "-t", "0", timeout=120)
