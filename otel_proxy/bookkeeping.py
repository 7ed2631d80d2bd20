"""Per-request bookkeeping, done where it costs no request its time.

Recording a finished request (a dozen metric records, its spans, its /-/requests
entry) takes a few hundred microseconds. Done the moment a response ends, it sits in
front of the next request: a client that streams back to back on one connection sends
its next request at once, and the proxy would read it only after the recording
(docs/benchmarks.md). The bookkeeper queues that work and runs it right after the proxy
has written a request to Ollama (the moment it would otherwise wait for Ollama), and a
couple of milliseconds later in any case. Whatever reads the records (``/metrics``,
``/-/requests``, shutdown) runs the queue first, so no reader sees a request that ended
but is not yet counted.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

DELAY_S = 0.002


class Bookkeeper:
    """A first-in, first-out queue of recording work, run from the event loop's thread."""

    def __init__(self, delay_s: float = DELAY_S) -> None:
        self._pending: deque[Callable[[], None]] = deque()
        self._delay_s = delay_s
        self._timer: asyncio.TimerHandle | None = None

    def defer(self, work: Callable[[], None]) -> None:
        self._pending.append(work)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop to come back later: now
                self.run()
                return
            self._timer = loop.call_later(self._delay_s, self.run)

    def run(self) -> None:
        """Everything queued, in order. A failure in one record is logged and loses no other.

        It runs in a context of its own: called while another request's span is current,
        its records must not take that span for theirs (as exemplars).
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            contextvars.Context().run(self._run_pending)

    def _run_pending(self) -> None:
        pending = self._pending
        while pending:
            work = pending.popleft()
            try:
                work()
            except Exception:
                log.exception("recording a finished request failed")

    def __len__(self) -> int:
        return len(self._pending)
