"""The fake's server log, written as Ollama writes its own (``--log FILE``): the lines hw_collector's log source reads.

- Gin's access line for each request (server/routes.go ``GenerateRoutes``: ``gin.Default()``; gin v1.10.0 logger.go
  ``defaultLogFormatter``, no colours off a terminal), its latency as Go's ``time.Duration.String`` writes it;
- Ollama's slog records (logutil/logutil.go ``NewLogger``: Go's ``slog.TextHandler``, the source file's base name):
  ``server config`` (server/routes.go ``Serve``), ``starting llama-server`` with the command line ``startLlamaServer``
  builds (llm/llama_server.go), the MLX runner's ``Prompt processing progress`` (x/mlxrunner/pipeline.go), and
  ``truncating input prompt`` (``completionPromptForRequest``);
- llama-server's own lines for each request on a slot, verbatim (``NewStatusWriter``; ``--no-log-prefix
  --no-log-timestamps``), in the shapes the real server (xllamacpp, b11549) writes: tests/collector/test_log_lines.py
  holds the parser to both.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

BLOBS = "/root/.ollama/models/blobs"
BATCH = 2048  # llama-server's -b default: the prompt is read this many tokens a batch, a "cached n_tokens" line each
MLX_PREFILL_CHUNK = 2 << 10  # x/mlxrunner/pipeline.go prefillChunkSize: a "Prompt processing progress" line each


def blob_path(blob: str) -> str:
    """Where a model's weights lie (the scheduler's key, ``schedulerModelKey``): the path llama-server is started on."""
    return f"{BLOBS}/sha256-{hashlib.sha256(blob.encode()).hexdigest()}"


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String``: ``1.503217894s``, ``2m3.5s``, ``512µs``, ``0s``."""
    ns = round(seconds * 1e9)
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = (f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else "") + _fraction(rest, 1_000_000_000) + "s"
    return sign + text


def _fraction(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    digits = f"{part:0{len(str(unit)) - 1}d}".rstrip("0") if unit > 1 else ""
    return f"{whole}.{digits}" if digits else str(whole)


_NEEDS_QUOTE = re.compile(r'[\s="]|[^\x21-\x7e]')


def slog_value(value: object) -> str:
    """A value as slog's TextHandler writes it: quoted (strconv.Quote) when empty or holding a space, '=', '"' or an
    unprintable character."""
    text = str(value)
    if text and not _NEEDS_QUOTE.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


class ServerLog:
    """Appends lines to the log file, whole lines at a time (one writer, many requests)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._tasks = 0

    def write(self, *lines: str) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))

    def access(self, status: int, latency_s: float, client: str, method: str, path: str) -> None:
        stamp = datetime.now().strftime("%Y/%m/%d - %H:%M:%S")
        self.write(f'[GIN] {stamp} | {status:3d} | {go_duration(latency_s):>13} | {client:>15} | {method:<7} "{path}"')

    def slog(self, level: str, source: str, message: str, **attrs: object) -> None:
        stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
        self.write(f"time={stamp} level={level} source={source} msg={slog_value(message)}" + "".join(f" {k}={slog_value(v)}" for k, v in attrs.items()))

    def server_config(self, num_parallel: int) -> None:
        """server/routes.go ``Serve``: the settings Ollama started with, ``envconfig.Values()`` (a map[string]string,
        which fmt writes with its keys sorted); a few of its keys here."""
        env = {"HTTPS_PROXY": "", "OLLAMA_CONTEXT_LENGTH": "0", "OLLAMA_FLASH_ATTENTION": "false", "OLLAMA_HOST": "http://127.0.0.1:11434",
               "OLLAMA_KEEP_ALIVE": "5m0s", "OLLAMA_KV_CACHE_TYPE": "", "OLLAMA_MAX_LOADED_MODELS": "0", "OLLAMA_MAX_QUEUE": "512",
               "OLLAMA_NUM_PARALLEL": str(num_parallel), "OLLAMA_ORIGINS": "[http://localhost https://localhost app://* file://*]"}
        self.slog("INFO", "routes.go:1951", "server config", env="map[" + " ".join(f"{key}:{value}" for key, value in sorted(env.items())) + "]")

    def runner_started(self, model_path: str, num_ctx: int, slots: int, port: int, num_gpu: int | None = None) -> None:
        """llm/llama_server.go ``startLlamaServer``: ``-c`` is num_ctx × slots; no ``--cache-type-k`` without
        OLLAMA_KV_CACHE_TYPE, ``--flash-attn auto`` where the GPUs may support it, ``-ngl`` only where the request set
        num_gpu (0: the CPU alone)."""
        cmd = (f"/usr/lib/ollama/llama-server --model {model_path} --port {port} --host 127.0.0.1 --no-webui --offline -c {num_ctx * slots} "
               f"-np {slots} --log-verbosity 4 --no-log-prefix --no-log-timestamps --flash-attn auto") + (f" -ngl {num_gpu}" if num_gpu is not None and num_gpu >= 0 else "")
        self.slog("INFO", "llama_server.go:433", "starting llama-server", cmd=cmd)

    def truncated(self, limit: int, prompt: int, keep: int, new: int) -> None:
        self.slog("WARN", "llama_server.go:812", "truncating input prompt", limit=limit, prompt=prompt, keep=keep, new=new)

    def mlx_progress(self, processed: int, total: int) -> None:
        """x/mlxrunner/pipeline.go, after each chunk of the prompt: the MLX runner serves one request at a time, no slot."""
        self.slog("INFO", "pipeline.go:204", "Prompt processing progress", processed=processed, total=total)

    def task(self, slot: int, context: int, tokens: int) -> int:
        """llama-server takes a prompt into a slot: ``new prompt``; the task's id."""
        with self._lock:
            self._tasks += 1
            task = self._tasks
        self.write(f"slot   operator(): id {slot:2d} | task {task} | new prompt, n_ctx_slot = {context}, n_keep = 0, task.n_tokens = {tokens}")
        return task

    def batch(self, slot: int, task: int, in_slot: int) -> None:
        """Before each batch of the prompt it reads: the tokens in the slot so far (the first: what the cache held)."""
        self.write(f"slot   operator(): id {slot:2d} | task {task} | cached n_tokens = {in_slot}, memory_seq_rm [{in_slot}, end)")

    def prompt_done(self, slot: int, task: int, prompt_s: float, read: int) -> None:
        rate = read / prompt_s if prompt_s > 0 else 0.0
        self.write(f"slot print_timing: id {slot:2d} | task {task} | prompt eval time = {prompt_s * 1000:10.2f} ms / {read:5d} tokens "
                   f"({prompt_s * 1000 / max(read, 1):8.2f} ms per token, {rate:8.2f} tokens per second)")

    def released(self, slot: int, task: int, in_slot: int) -> None:
        self.write(f"slot      release: id {slot:2d} | task {task} | stop processing: n_tokens = {in_slot}, truncated = 0")


class AccessLog:
    """Gin's Logger middleware: one line for each request once its answer has gone, with its status and latency."""

    def __init__(self, app: Any, log: ServerLog | None) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.log is None:
            return await self.app(scope, receive, send)
        arrived, status = time.perf_counter(), 500

        async def logged(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, logged)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            client = (scope.get("client") or ("",))[0]
            self.log.access(status, time.perf_counter() - arrived, client, scope["method"], scope["path"] + (f"?{query}" if query else ""))
