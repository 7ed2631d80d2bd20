"""tests/support/tools.sh, the preflight `make test` runs first: every missing tool named in one line, with the
command that installs it (here on a PATH that lacks them, where apt-get cannot be run)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "tools.sh"
ALL = ["prometheus", "promtool", "prometheus-alertmanager", "amtool", "victoria-metrics", "vmctl", "chromium", "podman", "runc", "netavark", "aardvark-dns", "iptables", "debootstrap", "go", "node", "npm", "systemd-analyze"]


def preflight(tmp_path: Path, present: list[str], libraries: str | None = None) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id"):  # what the script itself runs; no apt-get
        os.symlink(shutil.which(tool), bin_dir / tool)
    for tool in present:
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": str(bin_dir), "PODMAN_HELPERS": str(tmp_path / "no-helpers"), **({"TOOLS_LIBRARIES": libraries} if libraries is not None else {})}
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def test_every_missing_tool_is_named_in_one_line_with_its_install_command(tmp_path):
    done = preflight(tmp_path, [])
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("missing: " + " ".join(ALL) + ". Install them with: "), line
    assert "sudo apt-get install prometheus prometheus-alertmanager victoria-metrics chromium podman runc netavark aardvark-dns iptables debootstrap golang-go nodejs npm systemd " in line, line


def test_only_what_is_missing_is_named(tmp_path):
    done = preflight(tmp_path, [tool for tool in ALL if tool not in ("iptables", "go")])
    assert done.returncode == 1
    assert done.stderr.startswith("missing: iptables go. Install them with: sudo apt-get install iptables golang-go "), done.stderr


def test_nothing_to_say_when_everything_is_there(tmp_path):
    done = preflight(tmp_path, ALL)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_missing_shared_library_is_named_with_its_package(tmp_path):
    """llama.cpp's prebuilt server needs OpenMP's libgomp; a library the loader cache lacks is named like a tool."""
    done = preflight(tmp_path, ALL, libraries="libgomp.so.1:libgomp1 libnowhere.so.7:libnowhere7")
    assert done.returncode == 1
    assert done.stderr.startswith("missing: libnowhere.so.7. Install them with: sudo apt-get install libnowhere7 "), done.stderr
