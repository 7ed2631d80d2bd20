"""Prometheus for a native run: the binary, and prometheus.yml rewritten for local targets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import yaml


def _defaults() -> Path:
    """Where prometheus.yml and alerts.yml are: the checkout this runs from, else what the wheel installed
    under the environment's data directory (pyproject.toml ``data-files``: ``<venv>/share/ollama-otel-stack``)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "prometheus.yml").is_file():
        return checkout
    return Path(sysconfig.get_path("data")) / "share" / "ollama-otel-stack"


DEFAULTS = _defaults()


def local_config(targets: dict[str, list[str]], scrape_interval: str = "5s", rules: Path = DEFAULTS / "alerts.yml") -> str:
    """The project's prometheus.yml with its jobs' targets replaced (job name → host:port list);
    jobs not named are left out."""
    config = yaml.safe_load((DEFAULTS / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    config["rule_files"] = [str(rules)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    config["scrape_configs"] = [{**jobs.get(name, {"job_name": name}), "static_configs": [{"targets": addresses}]} for name, addresses in targets.items()]
    return yaml.safe_dump(config, sort_keys=False)


def find_or_install() -> str:
    """The prometheus binary on PATH; installed where this machine allows, else a clear stop."""
    found = shutil.which("prometheus")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("prometheus is not installed: installing Debian's package (apt-get install prometheus)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "prometheus"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    elif shutil.which("brew"):
        print("prometheus is not installed: brew install prometheus")
        subprocess.run(["brew", "install", "prometheus"], check=True)
    found = shutil.which("prometheus")
    if not found:
        raise SystemExit(
            "prometheus is not installed and cannot be installed from here. Install it, then run make up again:\n"
            "  Debian/Ubuntu: sudo apt-get install prometheus\n  macOS: brew install prometheus\n"
            "  elsewhere: https://prometheus.io/download/ (put `prometheus` on PATH)"
        )
    return found
