"""Agents' sessions, from the proxies' request lists: each session's turns, tokens, and where its time went.

No Streamlit here. A coding agent names its session in a header (Claude Code, Codex, opencode, goose: docs/metrics.md);
the proxy keeps only a hash of it, in each request's ``session``. A session's time is its turns' time in Ollama
(waiting for a load or a slot, up to the first output, after it) and the time between its turns, when the agent's
tools ran on the user's machine or the user typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Session:
    session: str
    client: str
    models: tuple[str, ...]  # the models its turns asked for, most used first
    turns: int
    input_tokens: int | None  # None where any turn's count is unknown
    output_tokens: int | None
    started: float  # unix seconds
    ended: float
    waiting_s: float  # in Ollama's queues: behind loads, a reload's drain, a slot
    to_first_output_s: float  # from arrival to the first output, less the waits: the prompt (and a tool call's whole generation)
    after_first_output_s: float  # from the first output to the last byte: the generation
    between_turns_s: float  # from one turn's end to the next one's start: the agent's tools, the user
    cached_tokens: int | None = None  # of the input tokens, read from the prompt cache (None where any turn's is unknown)
    turns_read_again: int = 0  # turns that lost the prompt cache (docs/metrics.md, "The prompt cache")
    read_again_tokens: int = 0  # what they read again

    @property
    def in_ollama_s(self) -> float:
        return self.waiting_s + self.to_first_output_s + self.after_first_output_s


def _seconds(when: str) -> float:
    return datetime.fromisoformat(when).timestamp()


def _total(values: list[int | None]) -> int | None:
    return None if any(value is None for value in values) else sum(values)  # type: ignore[arg-type]


def sessions(entries: list[dict]) -> list[Session]:
    """The sessions among ``entries`` (any order), the latest first; requests with no session are left out."""
    turns: dict[str, list[dict]] = {}
    for entry in entries:
        if entry.get("session"):
            turns.setdefault(entry["session"], []).append(entry)
    found = []
    for session, its in turns.items():
        its.sort(key=lambda entry: entry["start_time"])
        starts = [_seconds(entry["start_time"]) for entry in its]
        ends = [start + (entry.get("duration_s") or 0.0) for start, entry in zip(starts, its)]
        waiting = [entry.get("queue_wait_s") or 0.0 for entry in its]
        first = [entry.get("time_to_first_token_s") for entry in its]
        to_first = sum(max(0.0, (f if f is not None else entry.get("duration_s") or 0.0) - wait) for f, wait, entry in zip(first, waiting, its))
        after = sum(max(0.0, (entry.get("duration_s") or 0.0) - f) for f, entry in zip(first, its) if f is not None)
        models: dict[str, int] = {}
        for entry in its:
            name = entry.get("model") or entry.get("requested_model") or "?"
            models[name] = models.get(name, 0) + 1
        found.append(Session(
            session=session,
            client=its[-1].get("client") or "?",
            models=tuple(sorted(models, key=lambda name: -models[name])),
            turns=len(its),
            input_tokens=_total([entry.get("input_tokens") for entry in its]),
            output_tokens=_total([entry.get("output_tokens") for entry in its]),
            started=starts[0],
            ended=max(ends),
            waiting_s=sum(waiting),
            to_first_output_s=to_first,
            after_first_output_s=after,
            between_turns_s=sum(max(0.0, start - end) for start, end in zip(starts[1:], ends[:-1])),
            cached_tokens=_total([entry.get("prompt_cached_tokens") for entry in its]),
            turns_read_again=sum(1 for entry in its if entry.get("cache_miss")),
            read_again_tokens=sum(entry.get("read_again_tokens") or 0 for entry in its),
        ))
    return sorted(found, key=lambda found_session: -found_session.ended)
