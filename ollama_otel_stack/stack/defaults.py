"""The stack's defaults: where each part listens, how long Prometheus keeps its samples, and its files.

compose.yaml writes the same ports and retention (a test holds it to these). The files come from the
checkout this runs from or from an installed wheel: a wheel installs them under the environment's data directory (pyproject.toml ``data-files``:
``<prefix>/share/ollama-otel-stack``): prometheus.yml, alerts.yml, recording.yml and the dashboard's Streamlit
settings (the checkout's .streamlit/config.toml, as ``streamlit/config.toml``), alertmanager.yml.
"""

from __future__ import annotations

import sysconfig
import tomllib
from pathlib import Path


# The ports each part listens on (each service's own --port defaults to its entry), and Ollama's address.
PROXY_PORT = 8001  # where clients point instead of Ollama's 11434
COLLECTOR_PORT = 8002
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
UI_PORT = 3001
OLLAMA_URL = "http://127.0.0.1:11434"
# Prometheus' own defaults are 15 days and no size bound: usage is looked back on for 90 days, and a disk must not fill.
RETENTION, RETENTION_SIZE = "90d", "10GB"


def local_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _root() -> Path:
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "prometheus.yml").is_file():
        return checkout
    return Path(sysconfig.get_path("data")) / "share" / "ollama-otel-stack"


ROOT = _root()
PROMETHEUS_CONFIG = ROOT / "prometheus.yml"
ALERT_RULES = ROOT / "alerts.yml"
RECORDING_RULES = ROOT / "recording.yml"
ALERTMANAGER_CONFIG = ROOT / "alertmanager.yml"
STREAMLIT_CONFIG = ROOT / (".streamlit" if (ROOT / ".streamlit").is_dir() else "streamlit") / "config.toml"


def streamlit_flags(config: Path = STREAMLIT_CONFIG) -> list[str]:
    """The dashboard's settings as ``streamlit run`` flags (``--section.option value``): Streamlit reads
    config.toml only from the directory it runs in or the user's home, and the stack runs it elsewhere."""
    flags = []
    for section, options in tomllib.loads(config.read_text()).items():
        for option, value in options.items():
            flags += [f"--{section}.{option}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags
