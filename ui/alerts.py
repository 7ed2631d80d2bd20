"""What fires now: the alert rules of alerts.yml in their firing state, as Prometheus evaluates them, for the top
of the page. Firing since is the moment each became active plus its rule's ``for:`` (Prometheus's /api/v1/rules
gives both; /api/v1/alerts only the first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollama_otel_stack.go_time import unix_seconds

SEVERITY_ORDER = {"critical": 0, "warning": 1}


@dataclass(frozen=True)
class Firing:
    name: str
    severity: str
    instance: str | None
    summary: str | None
    since: float  # unix seconds

    def line(self, now: float) -> str:
        where = f" on {self.instance}" if self.instance else ""
        what = f": {self.summary}" if self.summary else ""
        return f"{self.name} ({self.severity}){where}, firing for {duration(now - self.since)}{what}"


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def firing(rule_groups: list[dict[str, Any]], instance: str = "") -> list[Firing]:
    """The firing alerts in /api/v1/rules' groups (``instance``: only that host's), most severe and oldest first."""
    found = []
    for group in rule_groups:
        for rule in group.get("rules", []):
            if rule.get("type") != "alerting":
                continue
            for alert in rule.get("alerts", []):
                labels = alert.get("labels", {})
                active = unix_seconds(alert.get("activeAt"))
                if alert.get("state") != "firing" or active is None or (instance and labels.get("instance") != instance):
                    continue
                found.append(Firing(labels.get("alertname", rule.get("name", "?")), labels.get("severity", "none"), labels.get("instance"),
                                    alert.get("annotations", {}).get("summary"), active + float(rule.get("duration") or 0)))
    return sorted(found, key=lambda f: (SEVERITY_ORDER.get(f.severity, 2), f.since, f.name))
