"""``ollama-stack up|status|down`` (in a checkout: ``make up`` / ``make down``): the proxy, the hardware
collector, Prometheus, Alertmanager and the dashboard, kept running (ollama_otel_stack/stack/supervisor.py).

Runs from a checkout or from an installed wheel (``pipx install``, ``uv tool install``), from any
directory. Ports and Ollama's address are flags, each defaulting to the variable the services read
(OTEL_PROXY_PORT, HW_COLLECTOR_PORT, PROMETHEUS_PORT, UI_PORT, OLLAMA_UPSTREAM). Logs, the state of a
run and Prometheus' data go to the state directory: --state-dir, else $XDG_STATE_HOME/ollama-otel-stack
(~/.local/state/ollama-otel-stack), or ~/Library/Application Support/ollama-otel-stack on macOS;
``make up`` uses the checkout's .run/. Ctrl-C stops everything; ``down`` stops a run in the background.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

import ui
from ollama_otel_stack.stack.defaults import (
    ALERTMANAGER_PORT, COLLECTOR_PORT, OLLAMA_URL, PROMETHEUS_PORT, PROXY_PORT, RETENTION, RETENTION_SIZE, UI_PORT, local_url, streamlit_flags,
)
from ollama_otel_stack.stack.binaries import ALERTMANAGER, PROMETHEUS, find_or_install
from ollama_otel_stack.stack.prometheus import alertmanager_config, local_config
from ollama_otel_stack.stack.supervisor import PartSpec, Supervisor

APP = "ollama-otel-stack"


def default_state_dir() -> Path:
    if os.environ.get("STACK_RUN_DIR"):
        return Path(os.environ["STACK_RUN_DIR"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / APP


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _urls(ports: dict[str, int]) -> dict[str, str]:
    return {
        "otel-proxy": local_url(ports["proxy"]),
        "hw-collector": local_url(ports["collector"]),
        "prometheus": local_url(ports["prometheus"]),
        "alertmanager": local_url(ports["alertmanager"]),
        "ui": local_url(ports["ui"]),
    }


def up(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    ollama = args.upstream
    ports = {"proxy": args.proxy_port, "collector": args.collector_port, "prometheus": args.prometheus_port, "alertmanager": args.alertmanager_port,
             "ui": args.ui_port}
    busy = [f"{name} ({port})" for name, port in ports.items() if not _free(port)]
    if busy:
        print(f"ports already in use: {', '.join(busy)}. Stop what holds them (ollama-stack down, or a system Prometheus: "
              "sudo systemctl stop prometheus) or choose others (--proxy-port, --collector-port, --prometheus-port, --alertmanager-port, --ui-port).")
        return 1
    prometheus, alertmanager = find_or_install(PROMETHEUS), find_or_install(ALERTMANAGER)
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = state / "prometheus.yml"
    config.write_text(local_config({"otel-proxy": [f"127.0.0.1:{ports['proxy']}"], "hw-collector": [f"127.0.0.1:{ports['collector']}"]},
                                   alertmanagers=[f"127.0.0.1:{ports['alertmanager']}"], remote_write=args.remote_write))
    alerting = args.alertmanager_config
    if alerting is None:
        alerting = state / "alertmanager.yml"
        alerting.write_text(alertmanager_config(args.alert_webhook))

    try:
        version = httpx.get(ollama + "/api/version", timeout=2).json().get("version")
        print(f"Ollama {version} answers at {ollama}")
    except (httpx.HTTPError, ValueError):
        print(f"Ollama is not reachable at {ollama}: everything starts anyway; the dashboard says so until it answers "
              "(start it with `ollama serve`, or pass --upstream)")

    python, urls = sys.executable, _urls(ports)
    env = {**os.environ, "OLLAMA_UPSTREAM": ollama}
    ui_env = {**env, "PROMETHEUS_URL": urls["prometheus"], "PROXY_URL": urls["otel-proxy"], "OLLAMA_URL": ollama}
    dashboard = Path(ui.__file__).resolve().parent / "streamlit_app.py"
    parts = [
        PartSpec("otel-proxy", [python, "-m", "otel_proxy", "--port", str(ports["proxy"]), "--upstream", ollama], env, urls["otel-proxy"] + "/-/healthy"),
        PartSpec("hw-collector", [python, "-m", "hw_collector", "--port", str(ports["collector"]), "--ollama", ollama], env, urls["hw-collector"] + "/-/healthy"),
        PartSpec("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={state / 'prometheus-data'}",
                                f"--storage.tsdb.retention.time={args.retention}", f"--storage.tsdb.retention.size={args.retention_size}",
                                f"--web.listen-address=127.0.0.1:{ports['prometheus']}"], env, urls["prometheus"] + "/-/ready"),
        PartSpec("alertmanager", [alertmanager, f"--config.file={alerting}", f"--storage.path={state / 'alertmanager-data'}",
                                  f"--web.listen-address=127.0.0.1:{ports['alertmanager']}", "--cluster.listen-address="], env, urls["alertmanager"] + "/-/ready"),
        PartSpec("ui", [python, "-m", "streamlit", "run", str(dashboard), "--server.port", str(ports["ui"]), "--server.address", "127.0.0.1", *streamlit_flags()],
                 ui_env, urls["ui"] + "/_stcore/health"),
    ]
    supervisor = Supervisor(parts, cwd=state, logs=logs, on_change=lambda: _write_state(state, supervisor, urls))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C stops the stack even where SIGINT came ignored (a script's background job: Python then sets no handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        failed = supervisor.start_all()
        print("\nThe stack is up:" if not failed else f"\nThe stack is up, but {', '.join(failed)} did not start (retrying; logs in {logs}):")
        print(f"  proxy (point clients here)  {urls['otel-proxy']}   metrics: /metrics, requests: /-/requests")
        print(f"  hardware collector          {urls['hw-collector']}/metrics")
        print(f"  Prometheus                  {urls['prometheus']}")
        print(f"  Alertmanager                {urls['alertmanager']}   " + (
            f"alerts go to {args.alert_webhook}" if args.alert_webhook else f"receivers from {alerting}" if args.alertmanager_config
            else "alerts reach no one yet: --alert-webhook URL, or --alertmanager-config FILE (Slack, email, ntfy: alertmanager.yml)"))
        print(f"  dashboard                   {urls['ui']}")
        print(f"logs in {logs}; a part that exits is restarted; Ctrl-C (or ollama-stack down) stops everything.", flush=True)
        supervisor.run()
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        supervisor.stop_all()
        (state / "state.json").unlink(missing_ok=True)


def _write_state(state: Path, supervisor: Supervisor, urls: dict[str, str]) -> None:
    """The runner's pid (``down`` signals it) and each part's pid and URL, for ``status`` and ``down``."""
    running = {part.spec.name: part.process.pid for part in supervisor.parts if part.process is not None and part.process.poll() is None}
    parts = {name: {"url": url, "pid": running.get(name)} for name, url in urls.items()}
    temporary = state / "state.json.new"
    temporary.write_text(json.dumps({"pid": os.getpid(), "parts": parts}, indent=1))
    temporary.replace(state / "state.json")


def _read_state(state: Path) -> dict | None:
    try:
        return json.loads((state / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(args: argparse.Namespace) -> int:
    """Which parts run, with their URLs and PIDs; exit status 0 when every part runs, 3 when none is up."""
    found = _read_state(args.state_dir)
    if found is None or not _alive(found.get("pid")):
        print(f"not running (no live run in {args.state_dir})")
        return 3
    print(f"ollama-stack runs (pid {found['pid']}, state in {args.state_dir}):")
    down_parts = 0
    for name, part in found["parts"].items():
        running = _alive(part.get("pid"))
        down_parts += not running
        print(f"  {name:<13} {'running' if running else 'not running':<12} pid {part.get('pid') or '-':<8} {part['url']}")
    return 0 if not down_parts else 1


def down(args: argparse.Namespace) -> int:
    found = _read_state(args.state_dir)
    if found is None:
        print(f"nothing to stop (no run in {args.state_dir})")
        return 0
    if _alive(found.get("pid")):
        os.kill(found["pid"], signal.SIGTERM)  # the `up` process stops its children itself
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (args.state_dir / "state.json").exists() and _alive(found.get("pid")):
        time.sleep(0.2)
    for part in found["parts"].values():  # anything left behind
        if _alive(part.get("pid")):
            os.kill(part["pid"], signal.SIGTERM)
    (args.state_dir / "state.json").unlink(missing_ok=True)
    print("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ollama-stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "status", "down"])
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(), help="logs, the run's state and Prometheus' data (default: %(default)s)")
    for flag, variable, default, what in (
        ("--proxy-port", "OTEL_PROXY_PORT", PROXY_PORT, "the proxy's port (clients point here)"),
        ("--collector-port", "HW_COLLECTOR_PORT", COLLECTOR_PORT, "the hardware collector's port"),
        ("--prometheus-port", "PROMETHEUS_PORT", PROMETHEUS_PORT, "Prometheus' port"),
        ("--alertmanager-port", "ALERTMANAGER_PORT", ALERTMANAGER_PORT, "Alertmanager's port"),
        ("--ui-port", "UI_PORT", UI_PORT, "the dashboard's port"),
    ):
        parser.add_argument(flag, type=int, default=int(os.environ.get(variable) or default), help=f"{what} (${variable}, default %(default)s)")
    parser.add_argument("--upstream", default=os.environ.get("OLLAMA_UPSTREAM", OLLAMA_URL), help="Ollama's address ($OLLAMA_UPSTREAM, default %(default)s)")
    parser.add_argument("--alert-webhook", default=os.environ.get("ALERT_WEBHOOK_URL") or None,
                        help="where Alertmanager posts the alerts that fire, as JSON ($ALERT_WEBHOOK_URL; default: nowhere, shown on the page only)")
    parser.add_argument("--alertmanager-config", type=Path, default=os.environ.get("ALERTMANAGER_CONFIG") or None,
                        help="an alertmanager.yml of your own (Slack, email, ntfy: see the project's alertmanager.yml) instead of --alert-webhook")
    parser.add_argument("--retention", default=os.environ.get("PROMETHEUS_RETENTION") or RETENTION,
                        help="how long Prometheus keeps samples, in its duration syntax ($PROMETHEUS_RETENTION, default %(default)s)")
    parser.add_argument("--remote-write", action="append", default=[u for u in os.environ.get("PROMETHEUS_REMOTE_WRITE", "").split() if u],
                        help="a long-term store's remote-write URL (VictoriaMetrics, Mimir, Thanos Receive: docs/fleet.md), repeatable "
                             "($PROMETHEUS_REMOTE_WRITE, space-separated)")
    parser.add_argument("--retention-size", default=os.environ.get("PROMETHEUS_RETENTION_SIZE") or RETENTION_SIZE,
                        help="the most disk Prometheus' blocks may take, oldest dropped first ($PROMETHEUS_RETENTION_SIZE, default %(default)s)")
    args = parser.parse_args(argv)
    args.state_dir = args.state_dir.expanduser().absolute()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the health checks' requests are no news
    return {"up": up, "status": status, "down": down}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
