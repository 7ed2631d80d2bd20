"""Prometheus for a native run: the binary, and prometheus.yml rewritten for local targets."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from ollama_otel_stack.stack.defaults import ALERT_RULES, PROMETHEUS_CONFIG


def local_config(targets: dict[str, list[str]], scrape_interval: str = "5s", rules: Path = ALERT_RULES) -> str:
    """The project's prometheus.yml with its jobs' targets replaced (job name → host:port list);
    jobs not named are left out."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
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
