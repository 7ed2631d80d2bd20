"""Ollama's /api/ps, read by the proxy off the hot path, into its scheduler view: what is resident, each
runner's context length and expiry, so that queue wait, cold loads and reloads are told apart.

Read every --ps-interval, and at once after a load (for the new runner's context length), by the rule
both services share (ollama_otel_stack/ollama_ps.py): the models named by /api/tags.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx

from otel_proxy.bookkeeping import Bookkeeper
from otel_proxy.scheduling import SchedulerView
from ollama_otel_stack.ollama_ps import ResidentModels

log = logging.getLogger(__name__)


class PsPoller:
    def __init__(self, upstream: str, interval_s: float, timeout_s: float, scheduler: SchedulerView, bookkeeper: Bookkeeper) -> None:
        self._base = upstream.rstrip("/")
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._scheduler = scheduler
        self._bookkeeper = bookkeeper
        self.resident = ResidentModels()
        self.version: str | None = None  # Ollama's, read with /api/tags: whether it reports its prompt cache (otel_proxy/ollama.py)
        self.first_read = asyncio.Event()  # the first /api/ps read is in, or has failed
        self._loaded = asyncio.Event()  # set when a runner was just loaded: /api/ps is read at once
        scheduler.on_load = self._loaded.set

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout_s, trust_env=False) as client:  # no spans: not a client's request
            failing = False
            while True:
                try:
                    await self._read(client)
                    failing = False
                except (httpx.HTTPError, ValueError) as exc:
                    if not failing:
                        log.info("Ollama's /api/ps at %s cannot be read (%s): queue and load are told apart once it answers", self._base, exc)
                    failing = True
                self.first_read.set()
                # the next read: after --ps-interval, or at once when a load has just ended
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._loaded.wait(), self._interval_s)
                self._loaded.clear()

    async def _read(self, client: httpx.AsyncClient) -> None:
        if self.resident.tags_due():
            tags = await client.get(self._base + "/api/tags")
            self.resident.take_tags(tags.json() if tags.status_code == 200 else None)
            version = await client.get(self._base + "/api/version")
            body = version.json() if version.status_code == 200 else None
            found = body.get("version") if isinstance(body, dict) else None
            self.version = found if isinstance(found, str) else None
        read_at = time.perf_counter()
        answer = await client.get(self._base + "/api/ps")
        entries = self.resident.take_ps(answer.json()) if answer.status_code == 200 else None
        if entries is not None:
            self._bookkeeper.defer(lambda: self._scheduler.observe_ps(entries, read_at))
