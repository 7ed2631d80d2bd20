"""Keeps the stack's parts running: a part that exits is restarted, the others never notice.

Each part is a child process in its own session with its log in ``.run/logs``. When one
exits, it is restarted after a backoff that doubles (1 s, 2 s, 4 s ... at most
``RestartPolicy.max_backoff_s``: with the defaults 1, 2, 4, 8 and 16 s); one that exits after
``max_restarts`` restarts within ``window_s`` is given up on, with one loud line, while the rest stay up. No part's death
ever stops another: above all the proxy, which every client's request passes through,
keeps serving whatever happens to the dashboard, the collector or Prometheus.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger("stack")


@dataclass(frozen=True)
class RestartPolicy:
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_restarts: int = 5  # within window_s: then the part is given up on
    window_s: float = 300.0
    healthy_within_s: float = 60.0  # a start that answers no health check by then counts as a crash


@dataclass(frozen=True)
class PartSpec:
    name: str
    command: Sequence[str]
    env: dict[str, str]
    health_url: str


@dataclass
class Part:
    spec: PartSpec
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)  # when each restart was started (monotonic)
    restart_at: float | None = None  # a restart is due then
    given_up: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


def wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float) -> bool:
    """True once ``url`` answers below 500, False if the process exits or the time runs out first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


class Supervisor:
    def __init__(
        self,
        specs: Sequence[PartSpec],
        cwd: Path,
        logs: Path,
        policy: RestartPolicy = RestartPolicy(),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.parts = [Part(spec) for spec in specs]
        self._cwd = cwd
        self._logs = logs
        self._policy = policy
        self._on_change = on_change  # called whenever the set of child pids changes

    def pids(self) -> list[int]:
        return [part.process.pid for part in self.parts if part.process is not None and part.process.poll() is None]

    def _spawn(self, part: Part) -> None:
        with open(self._logs / f"{part.name}.log", "ab") as log_file:
            part.process = subprocess.Popen(
                list(part.spec.command), cwd=self._cwd, env=part.spec.env, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._on_change()

    def start_all(self) -> list[str]:
        """Start every part in order, each once healthy before the next; the names of those that did not come up."""
        failed = []
        for part in self.parts:
            self._spawn(part)
            assert part.process is not None
            if not wait_healthy(part.spec.health_url, part.process, self._policy.healthy_within_s):
                failed.append(part.name)
                self._exited(part, time.monotonic())
        return failed

    def _exited(self, part: Part, now: float) -> None:
        """A part is gone (or never came up): schedule its restart, or give up on it."""
        policy = self._policy
        code = part.process.poll() if part.process is not None else None
        if code is None and part.process is not None:  # running but not healthy: stop it before trying again
            part.process.kill()
            part.process.wait()
            code = part.process.returncode
        recent = [at for at in part.restarts if now - at < policy.window_s]
        part.restarts = recent
        logfile = self._logs / f"{part.name}.log"
        if len(recent) >= policy.max_restarts:
            part.given_up = True
            part.restart_at = None
            log.error(
                "%s exited (code %s) after %d restarts in %.0f s: giving up on it, the rest stay up; see %s",
                part.name, code, len(recent), policy.window_s, logfile,
            )
            return
        delay = min(policy.first_backoff_s * 2 ** len(recent), policy.max_backoff_s)
        part.restart_at = now + delay
        log.warning("%s exited (code %s); restarting it in %.0f s (restart %d of %d); see %s",
                    part.name, code, delay, len(recent) + 1, policy.max_restarts, logfile)

    def watch_once(self) -> None:
        """One look at every part: note the ones that exited, restart the ones whose backoff is over."""
        now = time.monotonic()
        for part in self.parts:
            if part.given_up:
                continue
            if part.restart_at is not None:
                if now >= part.restart_at:
                    part.restart_at = None
                    part.restarts.append(now)
                    self._spawn(part)
                    log.info("%s restarted (pid %d)", part.name, part.process.pid if part.process else -1)
            elif part.process is not None and part.process.poll() is not None:
                self._exited(part, now)

    def run(self, interval_s: float = 0.5) -> None:
        """Watch until interrupted (KeyboardInterrupt, SystemExit)."""
        while True:
            self.watch_once()
            time.sleep(interval_s)

    def stop_all(self, grace_s: float = 10) -> None:
        """Every part asked to stop at once; whatever has not stopped ``grace_s`` later, all of them together, is killed."""
        running = [part.process for part in reversed(self.parts) if part.process is not None and part.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
