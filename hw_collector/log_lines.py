"""Ollama's server log, line by line: what each line says, for the few that tell what no API does.

Ollama's log interleaves three writers (read from Ollama's Go source at v0.33.0-rc2, fb30760):

- Gin's access line for every request it served (``gin.Default()`` in server/routes.go ``GenerateRoutes``; gin
  v1.10.0 logger.go ``defaultLogFormatter``, on stdout, without colours unless on a terminal)::

    [GIN] 2026/08/21 - 14:03:27 | 200 |  1.503217894s |       127.0.0.1 | POST     "/api/chat"

- Ollama's own slog records (logutil/logutil.go ``NewLogger``: Go's TextHandler with the source file's base name)::

    time=2026-08-21T14:03:27.123-07:00 level=WARN source=llama_server.go:812 msg="truncating input prompt" limit=2047 prompt=5000 keep=4 new=2047

  of which: ``server config`` with the settings it started with (server/routes.go ``Serve``), ``starting
  llama-server`` with the runner's command line (llm/llama_server.go ``startLlamaServer``),
  ``truncating input prompt`` (``completionPromptForRequest``), and the MLX runner's ``Prompt processing progress``
  (x/mlxrunner/pipeline.go ``TextGenerationPipeline``);
- llama-server's own lines, verbatim (``NewStatusWriter``; ``appendLlamaServerLogArgs`` starts it with
  ``--log-verbosity 4 --no-log-prefix --no-log-timestamps``), per slot (tools/server/server-context.cpp at b11549,
  as the real server writes them: tests/collector/test_log_lines.py)::

    slot   operator(): id  1 | task 0 | new prompt, n_ctx_slot = 4096, n_keep = 0, task.n_tokens = 3809
    slot   operator(): id  1 | task 0 | cached n_tokens = 2048, memory_seq_rm [2048, end)
    slot print_timing: id  1 | task 0 | prompt eval time =     688.95 ms /  3809 tokens (    0.18 ms per token,  5528.67 tokens per second)
    slot      release: id  1 | task 0 | stop processing: n_tokens = 3812, truncated = 0

Formats change between releases, so nothing here raises: ``parse`` returns None for a line it does not know the
shape of, and the caller counts it. A line's text is read here and dropped: a prompt that ``OLLAMA_DEBUG`` writes
into the log is never kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ollama_otel_stack.go_time import go_duration_seconds
from ollama_otel_stack.ollama_routes import OWN_QUERY, route_of


@dataclass(frozen=True)
class Access:
    """A request Ollama served (Gin's line)."""

    status: int
    method: str
    route: str
    latency_s: float | None
    own: bool = False  # sent by this stack itself (its query says so: ``OWN_QUERY``), not by a client


@dataclass(frozen=True)
class RunnerStarted:
    """``starting llama-server``: the runner's settings as its command line gives them."""

    model_path: str
    context_per_slot: int | None
    slots: int
    kv_cache_type: str  # f16 where Ollama passes none (llama-server's default)
    flash_attention: str  # on, off or auto
    gpu_layers: str  # a number, or "auto" where Ollama leaves -ngl out (num_gpu unset)
    port: int | None


@dataclass(frozen=True)
class Truncated:
    """``truncating input prompt``: the runner cut a prompt longer than its context to ``new`` tokens."""

    limit: int
    prompt: int
    keep: int
    new: int


@dataclass(frozen=True)
class ServerConfig:
    """``server config``: the settings Ollama started with (server/routes.go ``Serve``: ``envconfig.Values()``, a Go
    map slog writes as ``map[OLLAMA_NUM_PARALLEL:1 …]``); None where the line leaves one out."""

    num_parallel: int | None


@dataclass(frozen=True)
class PromptStarted:
    """A slot takes a request: ``new prompt``."""

    slot: int
    task: int
    context: int
    prompt_tokens: int


@dataclass(frozen=True)
class PromptRead:
    """The prompt read so far on a slot: ``cached n_tokens`` before each batch (the task's first: what the cache
    held), or ``prompt processing`` once a prompt has taken 3 s."""

    slot: int
    task: int
    tokens: int


@dataclass(frozen=True)
class PromptDone:
    """``prompt eval time``: the prompt was read (``tokens`` of it, the rest came from the cache)."""

    slot: int
    task: int
    seconds: float
    tokens: int


@dataclass(frozen=True)
class SlotReleased:
    """``stop processing``: the request left its slot."""

    slot: int
    task: int
    tokens: int
    truncated: bool


@dataclass(frozen=True)
class MlxProgress:
    """The MLX runner's ``Prompt processing progress`` (it names no slot: one request at a time)."""

    processed: int
    total: int


@dataclass(frozen=True)
class Other:
    """A line of a known shape that tells nothing this source keeps (most of them)."""


Event = Access | RunnerStarted | Truncated | ServerConfig | PromptStarted | PromptRead | PromptDone | SlotReleased | MlxProgress | Other
OTHER = Other()

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GIN = re.compile(r'\[GIN\] \d{4}/\d\d/\d\d - \d\d:\d\d:\d\d \|\s*(\d{3})\s*\|\s*(\S+)\s*\|\s*(\S*)\s*\|\s*([A-Z]+)\s+"((?:[^"\\]|\\.)*)"')
_SLOG = re.compile(r'time=\S+ level=([A-Z]+)(?:[+-]\d+)? (?:source=\S+ )?msg=("(?:[^"\\]|\\.)*"|\S+)(.*)')
_ATTR = re.compile(r' ([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')
_LLAMA_PREFIX = re.compile(r"\d+\.\d\d\.\d{3}\.\d{3} [IWEDT] ")  # llama.cpp's timestamp and level, where not turned off
_SLOT = re.compile(r"slot +\S+: id +(\d+) \| task (-?\d+) \| (.*)")
# llama.cpp's lines: a module's tag and a function's name (``srv  update_slots:``, ``cmn  common_param:``), or a
# function's name alone (``load_tensors:``, ``print_info:``), and the continuation of a multi-line one (indented)
_LLAMA = re.compile(r"[a-z]{2,5} +\S+: |[a-z][a-z0-9_.]*: |llama_|ggml_|\s")
_GO_CRASH = ("panic: ", "fatal error: ", "goroutine ")  # Go's own words when Ollama crashes: no shape of a log's
_NEW_PROMPT = re.compile(r"new prompt, n_ctx_slot = (\d+), n_keep = -?\d+, task\.n_tokens = (\d+)")
_CACHED = re.compile(r"(?:n_past|cached n_tokens) = (\d+), memory_seq_rm")
_PROGRESS = re.compile(r"prompt processing, n_tokens = (\d+), progress = ([\d.]+)")
_PROMPT_EVAL = re.compile(r"prompt eval time = +([\d.]+) ms / +(\d+) tokens")
_RELEASED = re.compile(r"stop processing: n_tokens = (\d+), truncated = (\d)")
_NUM_PARALLEL = re.compile(r"(?:^map\[|\s)OLLAMA_NUM_PARALLEL:(\d+)(?=[\s\]])")


def parse(line: str) -> Event | None:
    """What ``line`` says; ``OTHER`` for a line of a known shape with nothing to keep, None for an unknown shape."""
    line = _ANSI.sub("", line).rstrip()
    if not line:
        return OTHER
    if line.startswith("[GIN"):
        return _gin(line)
    if line.startswith("time="):
        return _slog(line)
    line = _LLAMA_PREFIX.sub("", line, count=1)
    if slot := _SLOT.match(line):
        return _slot(int(slot[1]), int(slot[2]), slot[3])
    return OTHER if _LLAMA.match(line) and not line.startswith(_GO_CRASH) else None


def _gin(line: str) -> Event | None:
    if line.startswith("[GIN-debug]"):
        return OTHER
    found = _GIN.match(line)
    if found is None:
        return None
    path, _, query = _go_unquote(f'"{found[5]}"').partition("?")
    return Access(int(found[1]), found[4], route_of(path), go_duration_seconds(found[2]), OWN_QUERY in query.split("&"))


def _slog(line: str) -> Event | None:
    found = _SLOG.match(line)
    if found is None:
        return None
    message = _go_unquote(found[2])
    if message == "starting llama-server":
        return _runner(_attrs(found[3]).get("cmd", ""))
    if message == "truncating input prompt":
        numbers = _numbers(_attrs(found[3]), "limit", "prompt", "keep", "new")
        return Truncated(*numbers) if numbers else OTHER
    if message == "server config":
        setting = _NUM_PARALLEL.search(_attrs(found[3]).get("env", ""))
        return ServerConfig(int(setting[1]) if setting else None)
    if message == "Prompt processing progress":
        numbers = _numbers(_attrs(found[3]), "processed", "total")
        return MlxProgress(*numbers) if numbers else OTHER
    return OTHER


def _slot(slot: int, task: int, text: str) -> Event:
    if found := _NEW_PROMPT.match(text):
        return PromptStarted(slot, task, int(found[1]), int(found[2]))
    if found := _CACHED.match(text) or _PROGRESS.match(text):
        return PromptRead(slot, task, int(found[1]))
    if found := _PROMPT_EVAL.match(text.strip()):
        return PromptDone(slot, task, float(found[1]) / 1000, int(found[2]))
    if found := _RELEASED.match(text):
        return SlotReleased(slot, task, int(found[1]), found[2] == "1")
    return OTHER


def _runner(cmd: str) -> Event:
    """llama-server's flags as exec.Cmd.String() joins them (spaces, no quoting): -c is context per slot × slots."""
    words = cmd.split(" ")
    flags: dict[str, str] = {}
    for index, word in enumerate(words[:-1]):
        if word.startswith("-"):
            flags.setdefault(word, words[index + 1])
    slots = _int(flags.get("-np") or flags.get("--parallel")) or 1
    context = _int(flags.get("-c") or flags.get("--ctx-size"))
    model = flags.get("--model") or flags.get("-m")
    if model is None:
        return OTHER
    return RunnerStarted(model, context // slots if context else None, slots, flags.get("--cache-type-k", "f16"), flags.get("--flash-attn", "auto"),
                         flags.get("-ngl") or flags.get("--n-gpu-layers") or "auto", _int(flags.get("--port")))


def _attrs(text: str) -> dict[str, str]:
    return {key: _go_unquote(value) for key, value in _ATTR.findall(text)}


def _numbers(attrs: dict[str, str], *names: str) -> list[int] | None:
    numbers = [_int(attrs.get(name)) for name in names]
    return None if None in numbers else numbers  # type: ignore[return-value]


def _int(text: str | None) -> int | None:
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _go_unquote(value: str) -> str:
    """A value as strconv.Quote wrote it (slog quotes one with a space, '=', '"' or an unprintable character)."""
    if len(value) < 2 or not value.startswith('"') or not value.endswith('"'):
        return value
    return re.sub(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", lambda m: _escape(m[1]), value[1:-1])


def _escape(code: str) -> str:
    if code[0] in "xuU" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)
