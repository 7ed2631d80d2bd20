"""Following Ollama's server log from its end: a file, across rotation, restarts and its absence, or the output of a
command that follows a journal or a container (``journalctl -f``, ``podman logs -f``, ``docker logs -f``).

Each follower hands back the complete lines written since it was last asked, and never waits for one. A line longer
than ``MAX_LINE`` (a request body ``OLLAMA_DEBUG`` wrote) is cut to its first ``MAX_LINE`` bytes: what is parsed is the
head, and nothing is kept.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import threading
from pathlib import Path

MAX_LINE = 16 * 1024  # bytes of one line kept for parsing
MAX_READ = 4 * 1024 * 1024  # bytes read from a file in one call: a burst is taken over the next calls
MAX_PENDING = 100_000  # lines a command's reader holds between two calls; the oldest go first
HOME_LOG = Path.home() / ".ollama" / "logs" / "server.log"  # the macOS app's, and `ollama serve` started by it
LINUX_LOGS = (Path("/var/log/ollama/server.log"), Path("/var/log/ollama.log"))


class Missing(Exception):
    """The log is not there (yet): said once by the source, and looked for again at the next call."""


def _lines(buffer: bytearray, data: bytes) -> list[str]:
    """The complete lines in ``buffer + data``; the incomplete tail stays in ``buffer`` (cut at ``MAX_LINE``)."""
    buffer += data
    *complete, rest = bytes(buffer).split(b"\n")
    buffer[:] = rest[:MAX_LINE]
    return [line[:MAX_LINE].decode("utf-8", "replace").rstrip("\r") for line in complete]


class FileFollower:
    """A log file, followed from its end as it was when first found at start; a file that appears later (a new log,
    a rotation: the path names another file, or the file grew shorter) is read from its start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.describe = str(path)
        self._file: object = None
        self._identity: tuple[int, int] | None = None
        self._buffer = bytearray()
        self._from_end = True  # only the file there at start: its past is not this collector's to count

    def past(self, limit: int = MAX_READ) -> list[str]:
        """The complete lines of the file's last ``limit`` bytes as it is now, what following it from its end skips:
        for what Ollama logs once, at its start; none where there is no file."""
        try:
            with open(self.path, "rb") as text:
                size = text.seek(0, os.SEEK_END)
                text.seek(max(0, size - limit))
                data = text.read(limit)
        except OSError:
            return []
        first, _, rest = data.partition(b"\n")
        return _lines(bytearray(), (first + b"\n" if size <= limit else b"") + rest)

    def lines(self) -> list[str]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._from_end = False
            if self._file is None:
                raise Missing(f"no log at {self.path}") from None
            return self._drain_and_close()  # rotated away, the new one not there yet: finish the old
        lines: list[str] = []
        if self._file is not None and (stat.st_dev, stat.st_ino) != self._identity:
            lines = self._drain_and_close()
        if self._file is None:
            self._open(stat)
        elif stat.st_size < self._file.tell():  # type: ignore[attr-defined]  # cut in place (copytruncate): from its start
            self._file.seek(0)  # type: ignore[attr-defined]
            self._buffer.clear()
        return lines + _lines(self._buffer, self._file.read(MAX_READ))  # type: ignore[attr-defined]

    def _open(self, stat: os.stat_result) -> None:
        self._file = open(self.path, "rb")  # noqa: SIM115  # held open across calls
        self._identity = (stat.st_dev, stat.st_ino)
        if self._from_end:
            self._file.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
        self._from_end = False

    def _drain_and_close(self) -> list[str]:
        lines = _lines(self._buffer, self._file.read())  # type: ignore[attr-defined]
        if self._buffer:  # the last line of a file that ends without a newline
            lines.append(self._buffer.decode("utf-8", "replace"))
            self._buffer.clear()
        self.close()
        return lines

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # type: ignore[attr-defined]
        self._file, self._identity = None, None


class CommandFollower:
    """A command that prints the log as it is written, started again when it ends (Ollama's container restarted,
    journald rotated); its lines are read on a thread of its own and taken here."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.describe = " ".join(command)
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: collections.deque[str] = collections.deque(maxlen=MAX_PENDING)
        self._lock = threading.Lock()
        self._ended = ""

    def lines(self) -> list[str]:
        if self._process is None or self._process.poll() is not None:
            if self._process is not None:
                self._ended = f"{self.describe} ended ({self._process.returncode}): started again"
            self._start()
        with self._lock:
            taken = list(self._pending)
            self._pending.clear()
        return taken

    def _start(self) -> None:
        if shutil.which(self.command[0]) is None:
            raise Missing(f"{self.command[0]} is not installed here")
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._read, args=(self._process,), name="ollama-log-reader", daemon=True).start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        buffer = bytearray()
        assert process.stdout is not None
        for chunk in iter(lambda: process.stdout.read1(65536), b""):  # type: ignore[union-attr]
            lines = _lines(buffer, chunk)
            with self._lock:
                self._pending.extend(lines)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()


def follower(spec: str) -> FileFollower | CommandFollower | None:
    """The follower ``--ollama-log`` names: ``off``, ``auto``, a file path, ``journald[:UNIT]``, ``podman:NAME`` or
    ``docker:NAME``. ``auto`` is the macOS app's log, else the ollama systemd unit's journal where there is one, else
    the usual Linux files; None where it finds none (or ``off``)."""
    if spec == "off":
        return None
    kind, _, name = spec.partition(":")
    if kind == "journald":
        return CommandFollower(["journalctl", "--follow", "--lines=0", "--output=cat", "--unit", name or "ollama"])
    if kind in ("podman", "docker") and name:
        return CommandFollower([kind, "logs", "--follow", "--since=0s", name])
    if spec != "auto":
        return FileFollower(Path(spec).expanduser())
    if HOME_LOG.exists():
        return FileFollower(HOME_LOG)
    if Path("/run/systemd/system").exists() and _has_unit("ollama"):
        return CommandFollower(["journalctl", "--follow", "--lines=0", "--output=cat", "--unit", "ollama"])
    return next((FileFollower(path) for path in LINUX_LOGS if path.exists()), None)


def _has_unit(unit: str) -> bool:
    if shutil.which("systemctl") is None:
        return False
    found = subprocess.run(["systemctl", "list-unit-files", f"{unit}.service", "--no-legend"], capture_output=True, text=True, timeout=5)
    return bool(found.stdout.strip())
