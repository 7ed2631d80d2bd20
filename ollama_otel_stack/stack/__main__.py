"""``python -m ollama_otel_stack.stack up|down`` (``make up`` / ``make down``): the proxy, the hardware
collector, Prometheus and the dashboard, kept running (ollama_otel_stack/stack/supervisor.py).

Ports come from the same variables the services read (OTEL_PROXY_PORT, HW_COLLECTOR_PORT)
plus PROMETHEUS_PORT and UI_PORT; Ollama is OLLAMA_UPSTREAM. Logs and Prometheus' data go
to .run/ in the project. Ctrl-C stops everything; `make down` stops a run in the background.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

from ollama_otel_stack.stack.prometheus import ROOT, find_or_install, local_config
from ollama_otel_stack.stack.supervisor import PartSpec, Supervisor

RUN = Path(os.environ.get("STACK_RUN_DIR") or ROOT / ".run")  # logs, pids, Prometheus' data
PIDS = RUN / "pids"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def up() -> int:
    ollama = os.environ.get("OLLAMA_UPSTREAM", "http://127.0.0.1:11434")
    ports = {
        "proxy": _port("OTEL_PROXY_PORT", 8001),
        "collector": _port("HW_COLLECTOR_PORT", 8002),
        "prometheus": _port("PROMETHEUS_PORT", 9090),
        "ui": _port("UI_PORT", 3001),
    }
    busy = [f"{name} ({port})" for name, port in ports.items() if not _free(port)]
    if busy:
        print(f"ports already in use: {', '.join(busy)}. Stop what holds them (make down, or a system Prometheus: "
              "sudo systemctl stop prometheus) or choose others (OTEL_PROXY_PORT, HW_COLLECTOR_PORT, PROMETHEUS_PORT, UI_PORT).")
        return 1
    prometheus = find_or_install()
    logs = RUN / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = RUN / "prometheus.yml"
    config.write_text(local_config({"otel-proxy": [f"127.0.0.1:{ports['proxy']}"], "hw-collector": [f"127.0.0.1:{ports['collector']}"]}))

    try:
        version = httpx.get(ollama + "/api/version", timeout=2).json().get("version")
        print(f"Ollama {version} answers at {ollama}")
    except (httpx.HTTPError, ValueError):
        print(f"Ollama is not reachable at {ollama}: everything starts anyway; the dashboard says so until it answers "
              "(start it with `ollama serve`, or set OLLAMA_UPSTREAM)")

    python = sys.executable
    env = {**os.environ, "OLLAMA_UPSTREAM": ollama}
    ui_env = {**env, "PROMETHEUS_URL": f"http://127.0.0.1:{ports['prometheus']}", "PROXY_URL": f"http://127.0.0.1:{ports['proxy']}", "OLLAMA_URL": ollama}
    parts = [
        PartSpec("otel-proxy", [python, "-m", "otel_proxy", "--port", str(ports["proxy"])], env, f"http://127.0.0.1:{ports['proxy']}/-/healthy"),
        PartSpec("hw-collector", [python, "-m", "hw_collector", "--port", str(ports["collector"])], env, f"http://127.0.0.1:{ports['collector']}/-/healthy"),
        PartSpec("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={RUN / 'prometheus-data'}",
                                f"--web.listen-address=127.0.0.1:{ports['prometheus']}"], env, f"http://127.0.0.1:{ports['prometheus']}/-/ready"),
        # The project's .streamlit/config.toml (cwd) sets the rest: headless, no usage stats, a minimal toolbar.
        PartSpec("ui", [python, "-m", "streamlit", "run", str(ROOT / "ui"), "--server.port", str(ports["ui"]), "--server.address", "127.0.0.1"],
                 ui_env, f"http://127.0.0.1:{ports['ui']}/_stcore/health"),
    ]
    supervisor = Supervisor(parts, cwd=ROOT, logs=logs, on_change=lambda: _write_pids(supervisor))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        failed = supervisor.start_all()
        print("\nThe stack is up:" if not failed else f"\nThe stack is up, but {', '.join(failed)} did not start (retrying; logs in {logs}):")
        print(f"  proxy (point clients here)  http://127.0.0.1:{ports['proxy']}   metrics: /metrics, requests: /-/requests")
        print(f"  hardware collector          http://127.0.0.1:{ports['collector']}/metrics")
        print(f"  Prometheus                  http://127.0.0.1:{ports['prometheus']}")
        print(f"  dashboard                   http://127.0.0.1:{ports['ui']}")
        print(f"logs in {logs}; a part that exits is restarted; Ctrl-C (or make down) stops everything.", flush=True)
        supervisor.run()
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        supervisor.stop_all()
        PIDS.unlink(missing_ok=True)


def _write_pids(supervisor: Supervisor) -> None:
    """This process first (``down`` signals it), then the children running now."""
    PIDS.write_text("\n".join(str(pid) for pid in [os.getpid(), *supervisor.pids()]) + "\n")


def down() -> int:
    if not PIDS.exists():
        print("nothing to stop (no .run/pids)")
        return 0
    pids = [int(line) for line in PIDS.read_text().split()]
    for pid in pids[:1]:  # the `up` process stops its children itself
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and PIDS.exists():
        time.sleep(0.2)
    for pid in pids[1:]:  # anything left behind
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    PIDS.unlink(missing_ok=True)
    print("stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ollama_otel_stack.stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the health checks' requests are no news
    return up() if parser.parse_args().command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
