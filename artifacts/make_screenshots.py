"""The Usage and Residency views as a person sees them: artifacts/usage.png and artifacts/residency.png.

A month of usage and residency for a small fleet (bench/usage_scale.py's generators: tests/support/backfill.py's counters
with recording.yml evaluated by promtool, three models resident per host and a load every two hours), a real
Prometheus serving it, the dashboard under `streamlit run`, and headless Chromium (Debian's, through Playwright).

    .venv/bin/python artifacts/make_screenshots.py [--hosts 3] [--models 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.usage_scale import write_residency  # noqa: E402
from ollama_otel_stack.stack.defaults import RECORDING_RULES  # noqa: E402
from tests.support.backfill import DAY_S, backfill, backfill_rules, write_history  # noqa: E402
from tests.support.harness import PYTHON, free_port, require_tool, run_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--models", type=int, default=8)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    promtool, prometheus = require_tool("promtool"), require_tool("prometheus")
    hosts = [f"10.0.0.{index + 1}" for index in range(args.hosts)]
    models = ["llama3.2:3b", "qwen3:8b", "mistral:7b", "gemma3:4b", "phi4:14b", "deepseek-r1:8b", "qwen2.5-coder:7b", "llama3.1:8b"][: args.models]
    start = (int(time.time()) // DAY_S - 30) * DAY_S
    with tempfile.TemporaryDirectory() as directory:
        work, data = Path(directory), Path(directory) / "data"
        write_history(work / "usage.om", start, 30, hosts, models, ["open-webui", "claude-code", "continue"], metered=hosts[:2])
        write_residency(work / "residency.om", start, int(time.time()), hosts, models, 60)
        for name in ("usage.om", "residency.om"):
            backfill(promtool, work / name, data)
        config = work / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n")
        port = free_port()
        command = [prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=10y"]
        with run_server(command, port, "/-/ready", timeout=300) as server:
            backfill_rules(promtool, server.url, RECORDING_RULES, start, start + 30 * DAY_S + 3600, work / "rules")
        for block in (work / "rules").iterdir():
            block.rename(data / block.name)
        with run_server(command, port, "/-/ready", timeout=300) as prom:
            ui_port = free_port()
            env = {"PROMETHEUS_URL": prom.url, "USAGE_PRICE_PER_KWH": "0.30", "USAGE_CURRENCY": "EUR"}
            dashboard = [PYTHON, "-m", "streamlit", "run", str(ROOT / "ui" / "streamlit_app.py"), "--server.port", str(ui_port),
                         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
            with run_server(dashboard, ui_port, "/_stcore/health", env=env, timeout=60) as page, sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
                tab = browser.new_page(viewport={"width": 1400, "height": 2000})  # Streamlit scrolls inside the page: the viewport is the picture
                tab.goto(page.url, wait_until="networkidle")
                for view, range_label, name in (("Usage", "last 30 days", "usage.png"), ("Residency", "last 24 hours", "residency.png")):
                    tab.get_by_text(view, exact=True).first.click()
                    tab.get_by_text(range_label, exact=True).first.click()
                    tab.wait_for_selector("[data-testid='stDataFrame']", timeout=60_000)
                    tab.wait_for_timeout(2500)  # the charts draw after the data arrives
                    tab.screenshot(path=str(OUT / name), full_page=True)
                    print(f"wrote {OUT / name}")
                browser.close()


if __name__ == "__main__":
    main()
