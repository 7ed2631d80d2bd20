"""The stack's default files, from the checkout this runs from or from an installed wheel.

A wheel installs them under the environment's data directory (pyproject.toml ``data-files``:
``<prefix>/share/ollama-otel-stack``): prometheus.yml, alerts.yml, recording.yml and the dashboard's Streamlit
settings (the checkout's .streamlit/config.toml, as ``streamlit/config.toml``), alertmanager.yml.
"""

from __future__ import annotations

import sysconfig
import tomllib
from pathlib import Path


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
