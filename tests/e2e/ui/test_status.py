"""``python -m ui.status``: the status line printed once, from a real Prometheus and the status model through the fake Ollama."""

from __future__ import annotations

import os
import subprocess

from tests.support.harness import PYTHON, ROOT, configure_fake, prometheus


def test_python_dash_m_ui_status_prints_one_line(fake):
    with prometheus({"otel-proxy": []}) as prom:
        configure_fake(fake, answers={"phi3:mini": "Quiet night, all fine."})
        result = subprocess.run([PYTHON, "-m", "ui.status"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PROMETHEUS_URL": prom.url, "OLLAMA_URL": fake.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Quiet night, all fine.\n"
