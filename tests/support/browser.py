"""The dashboard served by Streamlit and opened in headless Chromium (Debian's) through Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.harness import PYTHON, ROOT, free_port, require_tool, run_server

PAGE = str(ROOT / "ui" / "streamlit_app.py")
# as root, with no display and this machine's closed network: no sandbox, no GPU, none of Chromium's own calls out
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def dashboard_tab(env: dict[str, str], width: int = 1400, height: int = 2600) -> Iterator[Any]:
    """A Playwright page on the dashboard, served with ``env`` (ui/settings.py's variables)."""
    from playwright.sync_api import sync_playwright

    chromium = require_tool("chromium")
    port = free_port()
    command = [PYTHON, "-m", "streamlit", "run", PAGE, "--server.port", str(port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1"]
    with run_server(command, port, "/_stcore/health", env=env) as ui, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            tab.goto(ui.url, wait_until="domcontentloaded")
            yield tab
        finally:
            browser.close()
