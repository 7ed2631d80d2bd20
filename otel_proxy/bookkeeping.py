"""Per-request bookkeeping, done where it costs no request its time.

Recording a finished request (a dozen metric records, its spans, its /-/requests
entry) takes a few hundred microseconds. Done the moment a response ends, it sits in
front of the next request: a client that streams back to back on one connection sends
its next request at once, and the proxy would read it only after the recording
(docs/benchmarks.md). The bookkeeper queues that work and runs it right after the proxy
has written a request to Ollama (the moment it would otherwise wait for Ollama), and a
couple of milliseconds later in any case, half a millisecond of it at a time. Whatever
reads the records (``/metrics``, ``/-/requests``, shutdown) drains the queue first, so no
reader sees a request that ended but is not yet counted.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

DELAY_S = 0.002
SLICE_S = 0.0005


class Bookkeeper:
    """A first-in, first-out queue of recording work, run from the event loop's thread.

    ``run`` works through the queue for at most ``slice_s`` and leaves the rest to the
    loop's next turn, so a backlog (32 streams ending together) never holds every other
    stream's chunks for milliseconds; ``drain`` runs everything, for the readers.
    """

    def __init__(self, delay_s: float = DELAY_S, slice_s: float = SLICE_S) -> None:
        self._pending: deque[Callable[[], None]] = deque()
        self._delay_s = delay_s
        self._slice_s = slice_s
        self._timer: asyncio.Handle | None = None

    def defer(self, work: Callable[[], None]) -> None:
        self._pending.append(work)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop to come back later: now
                self.drain()
                return
            self._timer = loop.call_later(self._delay_s, self.run)

    def run(self) -> None:
        """A slice of the queue, in order; what is left runs on the loop's next turn."""
        self._work(time.perf_counter() + self._slice_s)
        if self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_soon(self.run)

    def drain(self) -> None:
        """Everything queued, before a reader looks at the records."""
        self._work(None)

    def _work(self, deadline: float | None) -> None:
        """Queued work until ``deadline``. A failure in one record is logged and loses no other.

        It runs in a context of its own: called while another request's span is current,
        its records must not take that span for theirs (as exemplars).
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            contextvars.Context().run(self._run_pending, deadline)

    def _run_pending(self, deadline: float | None) -> None:
        pending = self._pending
        while pending:
            work = pending.popleft()
            try:
                work()
            except Exception:
                log.exception("recording a finished request failed")
            if deadline is not None and time.perf_counter() >= deadline:
                return

    def __len__(self) -> int:
        return len(self._pending)
