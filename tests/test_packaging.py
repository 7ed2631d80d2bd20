"""What an install puts on a machine: four top-level names, the locked versions, nothing generic."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.harness import PYTHON, ROOT

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
    names = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert names == TOP_LEVEL


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
