"""A task's ordered event log: the one buffer every subscriber reads from."""

from __future__ import annotations

import asyncio
from array import array
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One serialised server message of a task, as sent on the wire.

    ``data`` is the message's UTF-8 JSON, encoded once when it is logged: every
    subscriber writes these same bytes.
    """

    seq: int
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    @property
    def size(self) -> int:
        return len(self.data)


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
        # _cumulative[i] = bytes of all entries up to and including _entries[i] since
        # creation; a typed array: 8 bytes an entry instead of an int object and a slot
        self._cumulative = array("q")
        self._evicted_bytes = 0
        self._last_seq = 0
        # Futures of readers waiting for the next entry, resolved all at once soon after
        # an append (see append()).
        self._waiters: list[asyncio.Future[None]] = []
        self._prune_at = 64  # drop cancelled waiters when the list gets this long
        self._wake_scheduled = False

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
        # "replace": a lone surrogate (from a broken tool output, say) must not make
        # the message unsendable; it goes out as '?'.
        entry = LogEntry(self._last_seq, text.encode("utf-8", "replace"))
        total = (self._cumulative[-1] if self._cumulative else self._evicted_bytes) + entry.size
        self._entries.append(entry)
        self._cumulative.append(total)
        self._evict()
        if self._waiters and not self._wake_scheduled:
            # Wake the readers from the event loop, once for everything appended until
            # then, not here: resolving a thousand futures inside every append would
            # spend the publisher's turn on wake-ups, so each turn would publish one
            # event and each reader would write one message per socket write.
            self._wake_scheduled = True
            self._waiters[0].get_loop().call_soon(self._wake)
        return entry

    def _wake(self) -> None:
        self._wake_scheduled = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():  # a reader that went away cancelled its own
                waiter.set_result(None)

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

    def waiter(self) -> asyncio.Future[None]:
        """A future of the caller's own, resolved soon after the next append (in the
        next turn of the event loop).

        One plain future per waiting reader (no task, no shield): a reader that is
        cancelled cancels only its own future, and waking N readers costs N callbacks.
        """
        if len(self._waiters) >= self._prune_at:
            # Readers that went away while the log was quiet; the threshold doubles
            # with what is still waiting, so a thousand live readers cost O(1) each.
            self._waiters = [w for w in self._waiters if not w.done()]
            self._prune_at = max(64, 2 * len(self._waiters))
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

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
