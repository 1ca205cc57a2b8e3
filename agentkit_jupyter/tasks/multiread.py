"""One blocking read for many streams: what a process watches on a shared backend.

A server mirrors every task it is asked about, and a worker reads the control stream
of every run it holds. One blocking read per task would hold one connection per task
(a Redis client's pool is bounded: a few hundred live tasks would exhaust it and
every call would fail). :class:`ManyStreams` keeps one read in flight for all of
them (``XREAD`` over many streams), and starts it again when a stream is added, so
a new task is read at once rather than after the current read's block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")

# (positions, block) -> the streams that have items after their position
ReadMany = Callable[[Mapping[str, int], float], Awaitable[Mapping[str, list[Item]]]]


class ManyStreams(Generic[Item]):
    """Reads every watched stream after its position, hands each batch to ``handle``.

    ``handle(key, items)`` returns False when the stream needs no more reading (its
    task ended); ``number_of(item)`` is the position an item moves its stream to. A
    failed read (the backend away) is logged and tried again after ``retry``
    seconds: the watchers wait, nothing is skipped.
    """

    def __init__(
        self,
        read: ReadMany[Item],
        handle: Callable[[str, list[Item]], Awaitable[bool]],
        number_of: Callable[[Item], int],
        block: float,
        retry: float,
        what: str,
    ) -> None:
        self._read = read
        self._handle = handle
        self._number_of = number_of
        self._block = block
        self._retry = retry
        self._what = what
        self._after: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._job: asyncio.Task[None] | None = None

    def watch(self, key: str, after: int) -> None:
        self._after[key] = after
        self._changed.set()  # the read in flight does not have it: start again
        if self._job is None or self._job.done():
            self._job = asyncio.get_running_loop().create_task(
                self._serve(), name=f"agentkit-read-{self._what}"
            )

    def forget(self, key: str) -> None:
        self._after.pop(key, None)

    def watching(self) -> list[str]:
        return list(self._after)

    async def close(self) -> None:
        self._after.clear()
        if self._job is not None:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._job

    async def _serve(self) -> None:
        while self._after:
            self._changed.clear()
            read = asyncio.ensure_future(self._read(dict(self._after), self._block))
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({read, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            if not read.done():
                # A stream was added: this read does not include it. Nothing is lost
                # by dropping it: reads do not consume, the next starts where it was.
                read.cancel()
                await asyncio.gather(read, return_exceptions=True)
                continue
            try:
                found = read.result()
            except Exception:
                log.warning("agentkit: reading %s from the backend failed; retrying", self._what)
                await asyncio.sleep(self._retry)
                continue
            for key, items in found.items():
                if key not in self._after or not items:
                    continue  # forgotten meanwhile
                self._after[key] = self._number_of(items[-1])
                try:
                    more = await self._handle(key, items)
                except Exception:
                    log.exception(
                        "agentkit: %s %s: its stream could not be applied", self._what, key
                    )
                    more = False
                if not more:
                    self._after.pop(key, None)
