"""The runner's prompt cache, rule by rule as llama.cpp's server keeps it (Ollama runs llama-server with
``-np OLLAMA_NUM_PARALLEL``, no ``--kv-unified`` and no ``--cache-ram``: llm/llama_server.go; so each slot has a KV
cache of its own and the RAM prompt cache its default 8192 MiB).

Read from llama.cpp's tools/server/server-context.cpp (``get_available_slot``, ``launch_slot_with_task``, the prompt
processing in ``update_slots``) and tools/server/server-task.cpp (``server_prompt_cache``) at b11434, and held to the real
server (PyPI's xllamacpp, b11549) request by request by tests/fake/test_prompt_cache.py:

1. **Which slot**: among the idle slots that hold tokens, the one whose tokens share the longest common prefix with the
   prompt, as a share of the prompt, if that share is strictly above 0.1 (``slot_prompt_similarity``; the first slot wins
   a tie); else the least recently used idle slot (a slot never used counts as used at -1; ties go to the highest id).
2. **The RAM prompt cache** (``--cache-ram``): when the slot was taken by LRU, or keeps under half its tokens
   (``f_keep < 0.5``), its tokens are saved to RAM (unless an entry holds them already; entries that are a prefix of
   them are dropped; the oldest go first while the bytes are over the limit), then the entry that suits the prompt
   best replaces them (its prefix covers at least a quarter of it, and beats the slot's own share of itself and of the
   prompt), leaving the cache. After a task starts, every other idle slot is saved too (``cache_idle_slots``).
3. **What is reused**: ``cache_n`` = the common prefix of the slot's tokens and the prompt, at most the prompt less one
   token (the last is always evaluated); ``prompt_n`` the rest.
4. When the task ends the slot holds its prompt and the tokens generated, less the last (never decoded), and is marked
   used now.

A reload or an eviction kills llama-server (Ollama's runner): a new runner has a new, empty cache.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

SIMILARITY = 0.1  # slot_prompt_similarity
KEEP_SHARE = 0.5  # a slot that keeps less of itself is saved to RAM first
ENTRY_SHARE = 0.25  # a RAM entry is used only if the prompt covers this much of it
DEFAULT_RAM_BYTES = 8192 << 20  # --cache-ram's default, which Ollama does not set


def tokens_of(ids: Sequence[int]) -> np.ndarray:
    return np.asarray(ids, dtype=np.uint32)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """llama.cpp's get_common_prefix: how many leading tokens two sequences share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass
class Slot:
    id: int
    tokens: np.ndarray = field(default_factory=lambda: tokens_of([]))
    last_used: int = -1  # t_last_used: -1 until its first task ends
    busy: bool = False
    saved: int | None = None  # the RAM entry holding exactly its tokens, while it does (a fast "already in the cache")


class PromptCache:
    """One runner's slots and its RAM prompt cache. ``ram_bytes`` 0: no RAM cache (``--cache-ram 0``).

    The entries are kept oldest first, each under a key, and their tokens' bytes in sorted order too: the entries that
    begin with some tokens are then neighbours, found by bisection, so the rules never scan every entry (the fake
    serves thousands of requests a second in the soak tests, with thousands of entries)."""

    def __init__(self, slots: int, n_ctx: int, bytes_per_token: int, ram_bytes: int = DEFAULT_RAM_BYTES) -> None:
        self.slots = [Slot(index) for index in range(max(1, slots))]
        self.n_ctx = n_ctx  # the whole context (llama_n_ctx): the RAM cache's token limit
        self.bytes_per_token = bytes_per_token
        self.ram_bytes = ram_bytes
        self._entries: dict[int, np.ndarray] = {}  # key -> tokens, oldest first
        self._raw: dict[int, bytes] = {}  # key -> the tokens' bytes
        self._by_raw: dict[bytes, int] = {}
        self._sorted: list[tuple[bytes, int]] = []  # (bytes, key), sorted
        self._lengths: Counter[int] = Counter()  # the entries' lengths in tokens
        self._tokens = 0  # of every entry together
        self._next_key = 0
        self._clock = 0

    @property
    def entries(self) -> list[np.ndarray]:
        return list(self._entries.values())

    # The task's start and end ------------------------------------------------------------------

    def begin(self, prompt: np.ndarray) -> tuple[int, int]:
        """A task with ``prompt`` takes a slot (one must be idle): the slot's id, and ``cache_n``."""
        slot, keeps_little = self._choose(prompt)
        if keeps_little and self.ram_bytes:
            self._save(slot)
            self._load(slot, prompt)
            self._update()
        cached = min(common_prefix(slot.tokens, prompt), max(0, len(prompt) - 1))
        if cached < len(slot.tokens):
            slot.tokens, slot.saved = slot.tokens[:cached], None
        slot.busy = True
        if self.ram_bytes:  # cache_idle_slots: the other idle slots saved (they keep their KV: no unified cache)
            for other in self.slots:
                if not other.busy and self._save(other):
                    self._update()
        return slot.id, cached

    def end(self, slot_id: int, prompt: np.ndarray, generated: np.ndarray) -> None:
        """The task is over: the slot holds its prompt and the tokens generated, less the last one."""
        slot = self.slots[slot_id]
        slot.tokens = np.concatenate([prompt, generated[:-1]]) if len(generated) else prompt
        slot.saved = None
        self._clock += 1
        slot.last_used, slot.busy = self._clock, False

    # The rules ------------------------------------------------------------------------------------

    def _choose(self, prompt: np.ndarray) -> tuple[Slot, bool]:
        """(the slot, whether it keeps under half of itself or was taken by LRU: then saved to RAM first)."""
        idle = [slot for slot in self.slots if not slot.busy]
        best, best_share, shared = None, 0.0, 0
        for slot in idle:
            if not len(slot.tokens) or not len(prompt) or slot.tokens[0] != prompt[0]:
                continue  # empty, or nothing in common
            lcp = common_prefix(slot.tokens, prompt)
            share = lcp / len(prompt)
            if share > best_share and share > SIMILARITY:
                best, best_share, shared = slot, share, lcp
        if best is not None:
            return best, shared / len(best.tokens) < KEEP_SHARE
        lru = None
        for slot in idle:
            if lru is None or slot.last_used <= lru.last_used:
                lru = slot
        assert lru is not None, "no idle slot: the runner's semaphore lets no more tasks in than it has slots"
        return lru, True

    def _size(self, tokens: int) -> int:
        return tokens * self.bytes_per_token

    def _beginning_with(self, raw: bytes) -> list[int]:
        """The keys of the entries whose bytes begin with ``raw``, oldest first."""
        found, at = [], bisect.bisect_left(self._sorted, (raw, -1))
        while at < len(self._sorted) and self._sorted[at][0].startswith(raw):
            found.append(self._sorted[at][1])
            at += 1
        return sorted(found)

    def _remove(self, key: int) -> np.ndarray:
        tokens, raw = self._entries.pop(key), self._raw.pop(key)
        del self._by_raw[raw]
        del self._sorted[bisect.bisect_left(self._sorted, (raw, key))]
        self._lengths[len(tokens)] -= 1
        if not self._lengths[len(tokens)]:
            del self._lengths[len(tokens)]
        self._tokens -= len(tokens)
        return tokens

    def _save(self, slot: Slot) -> bool:
        """The slot's tokens into the RAM cache; whether they went in."""
        tokens = slot.tokens
        if not len(tokens) or slot.saved in self._entries:
            return False
        raw = tokens.tobytes()
        at = bisect.bisect_left(self._sorted, (raw, -1))
        if at < len(self._sorted) and self._sorted[at][0].startswith(raw):
            return False  # "prompt is already in the cache, skipping"
        size = self._size(len(tokens))
        if size > self.ram_bytes:
            return False  # "prompt state size … exceeds cache size limit"
        width = tokens.itemsize
        for length in [length for length in self._lengths if length < len(tokens)]:  # obsolete: entries that are a prefix of these
            key = self._by_raw.get(raw[: length * width])
            if key is not None:
                self._remove(key)
        while self._entries and self._size(self._tokens) + size > self.ram_bytes:
            self._remove(next(iter(self._entries)))  # "making room for prompt cache entry, removing oldest entry"
        key, self._next_key = self._next_key, self._next_key + 1
        self._entries[key], self._raw[key], self._by_raw[raw] = tokens, raw, key
        bisect.insort(self._sorted, (raw, key))
        self._lengths[len(tokens)] += 1
        self._tokens += len(tokens)
        slot.saved = key
        return True

    def _load(self, slot: Slot, prompt: np.ndarray) -> None:
        lcp = common_prefix(slot.tokens, prompt)
        keep_best = lcp / len(slot.tokens) if len(slot.tokens) else -1.0
        sim_best = lcp / len(prompt) if len(prompt) else 0.0
        if not self._lengths or not len(prompt):
            return
        raw, width = prompt.tobytes(), prompt.itemsize
        needed = {length: max(1, math.ceil(length * ENTRY_SHARE)) for length in self._lengths}  # shared at least, to be used
        # an entry must share more of the prompt than the slot does (sim_best < sim) and a quarter of itself
        shared = max(lcp + 1, min(needed.values()))
        if shared > len(prompt):
            return
        found = None
        for key in self._beginning_with(raw[: shared * width]):  # the others cannot win
            entry = self._entries[key]
            if not raw.startswith(self._raw[key][: needed[len(entry)] * width]):
                continue
            lcp = common_prefix(entry, prompt)
            keep, sim = lcp / len(entry), lcp / len(prompt)
            if keep < ENTRY_SHARE:
                continue
            if keep_best < keep and sim_best < sim:
                keep_best, sim_best, found = keep, sim, key
        if found is not None:
            slot.tokens, slot.saved = self._remove(found), None  # restored into the slot, and out of the cache

    def _update(self) -> None:
        while self._entries and self._size(self._tokens) > self.ram_bytes:
            self._remove(next(iter(self._entries)))
        if not self._tokens:
            return
        per_token = max(1.0, self._size(self._tokens) / self._tokens)
        limit = max(self.n_ctx, int(self.ram_bytes / per_token))
        while self._entries and self._tokens > limit:
            self._remove(next(iter(self._entries)))
