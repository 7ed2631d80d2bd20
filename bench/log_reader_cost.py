"""What reading Ollama's server log costs the collector (issue 40's target: under 1 % of a core at 200 lines/s).

A writer process appends Ollama's lines (tests/fake/server_log.py: Gin's access lines, slog's records, llama-server's
slot lines, in the mix a busy server writes: per request one access line and five slot lines, a runner start and a
truncation now and then, and the loader's lines) to a file at --rate lines a second for --seconds; the collector's
log source (hw_collector/sources/ollama_log.py) follows it on its own thread, as in the collector. Measured: the CPU
time of this process (the reader: its thread polls every 0.2 s) over the run, as a share of one core, against the
same run's idle share (the source following a file nobody writes), and the lines read.

    python bench/log_reader_cost.py [--rate 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hw_collector import instruments as m  # noqa: E402
from hw_collector.sources.ollama_log import OllamaLogSource  # noqa: E402

WRITER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from tests.fake.server_log import ServerLog
    log, rate, seconds = ServerLog(Path(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3])
    start, written, request = time.monotonic(), 0, 0
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate)
        while written < due:
            request += 1
            slot = request % 4
            if request % 50 == 1:
                log.runner_started(f"/root/.ollama/models/blobs/sha256-{request:064x}", 8192, 4, 50000 + request % 1000)
                log.write("load_tensors: offloaded 29/29 layers to GPU", "llama_context: n_ctx_per_seq = 8192")
                written += 3
            task = log.task(slot, 8192, 3000 + request)
            log.batch(slot, task, 0)
            log.batch(slot, task, 2048)
            log.prompt_done(slot, task, 0.4, 3000 + request)
            log.released(slot, task, 3010 + request)
            log.access(200, 1.25, "127.0.0.1", "POST", "/api/chat")
            written += 6
            if request % 40 == 0:
                log.truncated(8191, 9000, 4, 4099)
                written += 1
        time.sleep(0.005)
    print(written)
''')


def cpu_share(path: Path, seconds: float, writer: list[str] | None) -> tuple[float, float]:
    """(this process's CPU over ``seconds`` as a share of one core, lines read) while the source follows ``path``."""
    source = OllamaLogSource(str(path), "http://127.0.0.1:9")
    assert source.available() is None
    try:
        before_cpu, before = time.process_time(), time.monotonic()
        if writer:
            subprocess.run(writer, check=True, capture_output=True, text=True, cwd=ROOT)
        else:
            time.sleep(seconds)
        time.sleep(0.5)  # the last poll
        cpu, wall = time.process_time() - before_cpu, time.monotonic() - before
        read = sum(r.value for r in source.read() if r.metric == m.LOG_LINES)
    finally:
        source.close()
    return cpu / wall, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "server.log"
        path.write_text("")
        idle, _ = cpu_share(path, args.seconds, None)
        busy, read = cpu_share(path, args.seconds, [sys.executable, "-c", WRITER, str(path), str(args.rate), str(args.seconds)])
    print(f"lines read: {read:.0f} in {args.seconds:.0f} s ({read / args.seconds:.0f} a second)")
    print(f"reader CPU, idle (following an unwritten file): {idle * 100:.2f} % of a core")
    print(f"reader CPU at {args.rate:.0f} lines/s: {busy * 100:.2f} % of a core ({(busy - idle) * 100:.2f} % more than idle)")


if __name__ == "__main__":
    main()
