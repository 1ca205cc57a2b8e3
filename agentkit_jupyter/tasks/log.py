"""A task's ordered event log: the one buffer every subscriber reads from."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One serialised server message of a task, as sent on the wire."""

    seq: int
    text: str

    @property
    def size(self) -> int:
        return len(self.text)


class EventLog:
    """Entries with contiguous ``seq`` 1, 2, 3, ...; keeps a bounded window in memory.

    Subscribers hold only a cursor (the last ``seq`` they sent), so a subscriber
    costs nothing here, and a slow one is just a cursor far behind. When the window
    is full the oldest entries are evicted; a persistent store can serve them.
    """

    def __init__(self, max_entries: int = 20_000, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: list[LogEntry] = []
        self._start = 0  # index of the first live entry in _entries
        # _cumulative[i] = bytes of all entries up to and including _entries[i] since creation
        self._cumulative: list[int] = []
        self._evicted_bytes = 0
        self._last_seq = 0
        self._changed: asyncio.Future[None] | None = None

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """The oldest ``seq`` still held in memory (``last_seq + 1`` if empty)."""
        return self._last_seq - (len(self._entries) - self._start) + 1

    def __len__(self) -> int:
        return len(self._entries) - self._start

    @property
    def held_bytes(self) -> int:
        if not self._cumulative or self._start >= len(self._entries):
            return 0
        return self._cumulative[-1] - self._bytes_before(self._start)

    def restore(self, first_seq: int, texts: list[str]) -> None:
        """Load entries read back from a store, before any live append."""
        if self._last_seq:
            raise RuntimeError("restore() is only for an empty log")
        self._last_seq = first_seq - 1
        for text in texts:
            self.append(text)

    def append(self, text: str) -> LogEntry:
        self._last_seq += 1
        entry = LogEntry(self._last_seq, text)
        total = (self._cumulative[-1] if self._cumulative else self._evicted_bytes) + entry.size
        self._entries.append(entry)
        self._cumulative.append(total)
        self._evict()
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)
        return entry

    def read_after(self, after: int, limit: int = 1000) -> list[LogEntry]:
        """Entries with ``seq > after`` still in memory, oldest first (at most ``limit``)."""
        first = self.first_seq
        index = self._start + max(after + 1 - first, 0)
        return self._entries[index : index + limit]

    def lag_bytes(self, after: int) -> int:
        """Bytes of the entries after ``after`` (what a subscriber at ``after`` still owes)."""
        if after >= self._last_seq or not self._cumulative:
            return 0
        index = self._start + max(after + 1 - self.first_seq, 0)
        return self._cumulative[-1] - self._bytes_before(index)

    async def wait_after(self, after: int) -> None:
        """Return once an entry with ``seq > after`` exists."""
        while self._last_seq <= after:
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)

    def _bytes_before(self, index: int) -> int:
        return self._cumulative[index - 1] if index > 0 else self._evicted_bytes

    def _evict(self) -> None:
        while len(self) > 1 and (len(self) > self.max_entries or self.held_bytes > self.max_bytes):
            self._start += 1
        if self._start > 1024 and self._start * 2 > len(self._entries):
            self._evicted_bytes = self._bytes_before(self._start)
            del self._entries[: self._start]
            del self._cumulative[: self._start]
            self._start = 0
