"""One reader per watched task per process, fanned out to every local subscriber.

A server with a thousand viewers of one task on a shared backend (Redis) should
cost the backend one blocking read per batch of events, not a thousand. A
:class:`StreamFanout` keeps, per watched task, one reader that pulls from the
backend into a local ``EventLog`` window; subscribers are cursors into that
window (as the hub's are into a task's own log). A subscriber that is behind the
window (it joined with an older ``after``, or fell behind) reads straight from the
backend until it catches up. The reader stops when the last subscriber leaves.

The server does not use it yet: ``shared.py`` mirrors a watched task into the hub's
own log instead, with one reader per task too (docs/scale-out.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .backend import EventLogBackend
from .log import EventLog, LogEntry

# How long one backend read blocks before the reader asks again (a quiet task costs
# one read per this long).
READ_BLOCK_SECONDS = 5.0


@dataclass(slots=True)
class _Feed:
    log: EventLog
    reader: asyncio.Task[None] | None = None
    subscribers: int = 0
    # Resolved (then replaced) after each batch the reader adds, and when it stops.
    signal: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: bool = False
    error: BaseException | None = None

    def wake(self) -> None:
        signal = self.signal
        self.signal = asyncio.get_running_loop().create_future()
        signal.set_result(None)


class StreamFanout:
    """Local fan-out of backend event logs (see the module's docstring).

    ``is_last`` says which entry ends a task's log (the hub's ``result`` message): the
    reader stops after it, and subscribers end once they have it.
    """

    def __init__(
        self,
        backend: EventLogBackend,
        is_last: Callable[[LogEntry], bool] = lambda entry: False,
        block: float = READ_BLOCK_SECONDS,
        max_entries: int = 20_000,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.backend = backend
        self.is_last = is_last
        self.block = block
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._feeds: dict[str, _Feed] = {}

    def watched(self) -> list[str]:
        """The tasks with a reader now."""
        return list(self._feeds)

    async def batches(
        self, task_id: str, after: int = 0, limit: int = 500
    ) -> AsyncIterator[list[LogEntry]]:
        """Entries after ``after``, oldest first, with no gap and no duplicate; ends
        after the last one (``is_last``). A backend error (``BackendUnavailableError``,
        ``EventsTrimmedError``) is raised here, to every subscriber."""
        feed = self._join(task_id, after)
        cursor = after
        try:
            while True:
                if cursor + 1 < feed.log.first_seq:
                    # Behind the shared window: straight from the backend (which has
                    # them at once, unless the window started beyond the log's end).
                    entries = await self.backend.read_after(
                        task_id, cursor, limit, block=self.block
                    )
                else:
                    entries = feed.log.read_after(cursor, limit)
                if entries:
                    cursor = entries[-1].seq
                    yield entries
                    if self.is_last(entries[-1]):
                        return
                    continue
                if feed.error is not None:
                    raise feed.error
                if feed.ended:
                    return
                # wait(), not await: a subscriber that goes away must not cancel the
                # future every other one waits on.
                await asyncio.wait((feed.signal,))
        finally:
            self._leave(task_id, feed)

    def _join(self, task_id: str, after: int) -> _Feed:
        feed = self._feeds.get(task_id)
        if feed is None:
            log = EventLog(self.max_entries, self.max_bytes)
            log.restore(after + 1, [])
            feed = self._feeds[task_id] = _Feed(log)
            feed.reader = asyncio.get_running_loop().create_task(
                self._read(task_id, feed), name=f"agentkit-fanout-{task_id}"
            )
        feed.subscribers += 1
        return feed

    def _leave(self, task_id: str, feed: _Feed) -> None:
        feed.subscribers -= 1
        if feed.subscribers:
            return
        if self._feeds.get(task_id) is feed:
            del self._feeds[task_id]
        if feed.reader is not None:
            feed.reader.cancel()

    async def _read(self, task_id: str, feed: _Feed) -> None:
        try:
            while True:
                entries = await self.backend.read_after(
                    task_id, feed.log.last_seq, block=self.block
                )
                for entry in entries:
                    feed.log.append(entry.text)
                if entries:
                    feed.wake()
                    if self.is_last(entries[-1]):
                        feed.ended = True
                        return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every subscriber gets it, none waits forever
            feed.error = exc
            feed.wake()
        finally:
            # A feed that ended or failed is not reused: the next subscriber starts anew.
            if self._feeds.get(task_id) is feed and (feed.ended or feed.error is not None):
                del self._feeds[task_id]
