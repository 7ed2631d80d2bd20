"""prometheus.yml and alertmanager.yml rewritten for a native run's local addresses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from ollama_otel_stack.stack.defaults import ALERT_RULES, ALERTMANAGER_CONFIG, PROMETHEUS_CONFIG, RECORDING_RULES


def local_config(targets: dict[str, list[str]], scrape_interval: str = "5s", rules: Sequence[Path] = (ALERT_RULES, RECORDING_RULES),
                 alertmanagers: Sequence[str] = (), remote_write: Sequence[str] = ()) -> str:
    """The project's prometheus.yml with its jobs' targets replaced (job name → host:port list; jobs not named
    are left out), its alerts sent to ``alertmanagers`` (host:port), or to none, and every sample (the recording
    rules' too) written on to each of ``remote_write`` (a long-term store's write URL, docs/fleet.md)."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    config["rule_files"] = [str(path) for path in rules]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    config["scrape_configs"] = [{**jobs.get(name, {"job_name": name}), "static_configs": [{"targets": addresses}]} for name, addresses in targets.items()]
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    else:
        config.pop("alerting", None)
    if remote_write:
        config["remote_write"] = [{"url": url} for url in remote_write]
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(webhook: str | None, group_wait: str | None = None) -> str:
    """The project's alertmanager.yml with its webhook receiver sending to ``webhook``; with None, the receiver
    has no integration (alerts are kept in Alertmanager and shown on the page, sent nowhere)."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    receiver = config["route"]["receiver"]
    for entry in config["receivers"]:
        if entry["name"] == receiver:
            if webhook is None:
                entry.pop("webhook_configs", None)
            else:
                entry["webhook_configs"][0]["url"] = webhook
    if group_wait is not None:
        config["route"]["group_wait"] = group_wait
    return yaml.safe_dump(config, sort_keys=False)
