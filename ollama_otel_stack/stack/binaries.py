"""The servers a native run needs from the system (Prometheus, Alertmanager): found on PATH, installed where
this machine allows (Debian's or Homebrew's package), else a clear stop naming the command."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Binary:
    names: tuple[str, ...]  # as each platform's package names the executable
    debian: str
    brew: str
    download: str


PROMETHEUS = Binary(("prometheus",), "prometheus", "prometheus", "https://prometheus.io/download/")
ALERTMANAGER = Binary(("prometheus-alertmanager", "alertmanager"), "prometheus-alertmanager", "alertmanager", "https://prometheus.io/download/#alertmanager")


def _which(binary: Binary) -> str | None:
    return next((found for found in map(shutil.which, binary.names) if found), None)


def find_or_install(binary: Binary) -> str:
    found = _which(binary)
    if found:
        return found
    name = binary.names[-1]
    if shutil.which("apt-get") and os.geteuid() == 0:
        print(f"{name} is not installed: installing Debian's package (apt-get install {binary.debian})")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", binary.debian], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    elif shutil.which("brew"):
        print(f"{name} is not installed: brew install {binary.brew}")
        subprocess.run(["brew", "install", binary.brew], check=True)
    found = _which(binary)
    if not found:
        raise SystemExit(
            f"{name} is not installed and cannot be installed from here. Install it, then run make up again:\n"
            f"  Debian/Ubuntu: sudo apt-get install {binary.debian}\n  macOS: brew install {binary.brew}\n"
            f"  elsewhere: {binary.download} (put `{name}` on PATH)"
        )
    return found
