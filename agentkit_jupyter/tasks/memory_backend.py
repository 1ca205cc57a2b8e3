"""The backend interfaces (``backend.py``) in one process's memory: the reference.

The same guarantees as Redis, nothing shared beyond the process: the contract
tests run against it and against Redis alike. Not used by the hub yet (its
in-process log and store are ``log.py`` and ``store.py``); one event loop only.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..protocol import TaskStatus
from .backend import (
    CONTROL_KEPT,
    RETENTION_MAX_AGE_SECONDS,
    RETENTION_MAX_COUNT,
    CallDecidedError,
    ControlEnvelope,
    DuplicateSeqError,
    EventsTrimmedError,
    ListCursor,
    RecordPage,
    RunCommand,
    SeqGapError,
    StaleWriterError,
    TaskDeletedError,
    TaskExistsError,
    decided_call,
)
from .log import LogEntry


class _Stream:
    def __init__(self) -> None:
        self.entries: deque[LogEntry] = deque()
        self.last = 0
        self.writer = 0  # the fencing token in force
        # Notified on every append: blocking readers wait on it.
        self.changed = asyncio.Condition()


class _Control:
    def __init__(self) -> None:
        self.envelopes: deque[ControlEnvelope] = deque(maxlen=CONTROL_KEPT)
        self.last = 0
        self.keys: dict[str, int] = {}
        # call id -> the number of the command that decided it
        self.decided: dict[str, int] = {}
        self.changed = asyncio.Condition()


class MemoryBackend:
    """Registry, event logs and control of one process (``backend.TaskBackend``)."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}
        self._streams: dict[str, _Stream] = {}
        self._controls: dict[str, _Control] = {}
        self._deleted: set[str] = set()
        self._wholes: dict[tuple[str, int], bytes] = {}
        # Notified on every append and command: the readers of many streams wait on it.
        self._any_change = asyncio.Condition()

    # -- registry -----------------------------------------------------------------------

    async def create(self, record: dict[str, Any]) -> None:
        task_id = str(record["task_id"])
        if task_id in self._records or task_id in self._deleted:
            raise TaskExistsError(task_id)
        self._records[task_id] = dict(record)

    async def get(self, task_id: str) -> dict[str, Any] | None:
        record = self._records.get(task_id)
        return dict(record) if record is not None else None

    async def update(self, task_id: str, fields: dict[str, Any]) -> bool:
        record = self._records.get(task_id)
        if record is None:
            return False
        record.update(fields)
        return True

    async def claim(self, task_id: str, field: str, value: Any) -> Any:
        record = self._records.get(task_id)
        if record is None:
            return None
        if record.get(field) is None:
            record[field] = value
        return record[field]

    async def page(self, limit: int = 100, after: ListCursor | None = None) -> RecordPage:
        ordered = sorted(self._records.values(), key=lambda r: (r["created_at"], r["task_id"]))
        if after is not None:
            bound = (after.created_at, after.task_id)
            ordered = [r for r in ordered if (r["created_at"], r["task_id"]) > bound]
        records = [dict(r) for r in ordered[:limit]]
        more = len(ordered) > limit and records
        last = records[-1] if more else None
        cursor = ListCursor(last["created_at"], last["task_id"]) if last else None
        return RecordPage(records, cursor)

    async def keep_whole(self, task_id: str, seq: int, data: bytes) -> None:
        self._check_not_deleted(task_id)
        self._wholes[(task_id, seq)] = bytes(data)

    async def read_whole(self, task_id: str, seq: int) -> bytes | None:
        return self._wholes.get((task_id, seq))

    async def delete(self, task_id: str) -> None:
        for key in [k for k in self._wholes if k[0] == task_id]:
            del self._wholes[key]
        self._records.pop(task_id, None)
        self._streams.pop(task_id, None)
        self._controls.pop(task_id, None)
        self._deleted.add(task_id)  # one process's life: no expiry needed here

    async def known(self, task_id: str) -> bool:
        return task_id in self._records or task_id in self._deleted

    def _check_not_deleted(self, task_id: str) -> None:
        if task_id in self._deleted:
            raise TaskDeletedError(task_id)

    async def apply_retention(
        self,
        max_age_seconds: float | None = RETENTION_MAX_AGE_SECONDS,
        max_count: int | None = RETENTION_MAX_COUNT,
        now: float | None = None,
    ) -> list[str]:
        now = time.time() if now is None else now
        finished = sorted(
            (r for r in self._records.values() if TaskStatus(r["status"]).finished),
            key=lambda r: (r["created_at"], r["task_id"]),
            reverse=True,
        )
        doomed = [
            str(r["task_id"])
            for index, r in enumerate(finished)
            if (max_count is not None and index >= max_count)
            or (max_age_seconds is not None and now - r["created_at"] > max_age_seconds)
        ]
        for task_id in doomed:
            await self.delete(task_id)
        return doomed

    # -- event logs ---------------------------------------------------------------------

    def _stream(self, task_id: str) -> _Stream:
        return self._streams.setdefault(task_id, _Stream())

    async def append(self, task_id: str, seq: int, data: bytes, writer: int | None = None) -> None:
        await self.append_many(task_id, seq, [data], writer)

    async def append_many(
        self, task_id: str, first_seq: int, data: Sequence[bytes], writer: int | None = None
    ) -> None:
        self._check_not_deleted(task_id)
        stream = self._stream(task_id)
        if writer is not None and writer < stream.writer:
            raise StaleWriterError(task_id, writer, stream.writer)
        if first_seq <= stream.last:
            raise DuplicateSeqError(task_id, first_seq)
        if first_seq != stream.last + 1:
            raise SeqGapError(task_id, first_seq, stream.last)
        for offset, item in enumerate(data):
            stream.entries.append(LogEntry(first_seq + offset, bytes(item)))
        stream.last += len(data)
        async with stream.changed:
            stream.changed.notify_all()
        await self._changed()

    async def read_after(
        self, task_id: str, after: int, limit: int = 500, block: float | None = None
    ) -> list[LogEntry]:
        stream = self._stream(task_id)
        if block and stream.last <= after:
            async with stream.changed:
                try:
                    await asyncio.wait_for(
                        stream.changed.wait_for(lambda: stream.last > after), block
                    )
                except TimeoutError:
                    return []
        if stream.last <= after:
            return []
        first = stream.entries[0].seq
        if after + 1 < first:
            raise EventsTrimmedError(task_id, after, first)
        start = after + 1 - first
        return [stream.entries[i] for i in range(start, min(start + limit, len(stream.entries)))]

    async def read_many(
        self, after: Mapping[str, int], limit: int = 500, block: float | None = None
    ) -> dict[str, list[LogEntry]]:
        async def now() -> dict[str, list[LogEntry]]:
            found = {}
            for task_id, seq in after.items():
                stream = self._streams.get(task_id)
                if stream is None or stream.last <= seq:
                    continue
                first = stream.entries[0].seq
                start = max(seq + 1, first) - first
                found[task_id] = list(stream.entries)[start : start + limit]
            return found

        return await self._wait_for_any(now, block)

    async def receive_many(
        self, after: Mapping[str, int], limit: int = 100, block: float | None = None
    ) -> dict[str, list[ControlEnvelope]]:
        async def now() -> dict[str, list[ControlEnvelope]]:
            found = {}
            for task_id, number in after.items():
                control = self._controls.get(task_id)
                if control is not None and control.last > number:
                    found[task_id] = [e for e in control.envelopes if e.number > number][:limit]
            return found

        return await self._wait_for_any(now, block)

    async def _wait_for_any(
        self, now: Callable[[], Awaitable[dict[str, Any]]], block: float | None
    ) -> dict[str, Any]:
        found = await now()
        if found or not block:
            return found
        async with self._any_change:
            try:
                await asyncio.wait_for(self._any_change.wait(), block)
            except TimeoutError:
                return {}
        return await now()

    async def _changed(self) -> None:
        async with self._any_change:
            self._any_change.notify_all()

    async def fence(self, task_id: str, writer: int) -> int:
        stream = self._stream(task_id)
        stream.writer = max(stream.writer, writer)
        return stream.writer

    async def last_seq(self, task_id: str) -> int:
        return self._stream(task_id).last

    async def first_seq(self, task_id: str) -> int:
        stream = self._stream(task_id)
        return stream.entries[0].seq if stream.entries else stream.last + 1

    async def trim(self, task_id: str, keep_last: int) -> int:
        stream = self._stream(task_id)
        dropped = 0
        while len(stream.entries) > max(keep_last, 1):
            stream.entries.popleft()
            dropped += 1
        return dropped

    # -- control ------------------------------------------------------------------------

    async def send(
        self, task_id: str, command: RunCommand, by: str | None, key: str | None = None
    ) -> int:
        self._check_not_deleted(task_id)
        control = self._controls.setdefault(task_id, _Control())
        if key is not None and key in control.keys:
            return control.keys[key]
        call_id = decided_call(command)
        if call_id is not None and call_id in control.decided:
            raise CallDecidedError(task_id, call_id, control.decided[call_id])
        control.last += 1
        control.envelopes.append(ControlEnvelope(control.last, command, by, key))
        if key is not None:
            control.keys[key] = control.last
        if call_id is not None:
            control.decided[call_id] = control.last
        async with control.changed:
            control.changed.notify_all()
        await self._changed()
        return control.last

    async def receive(
        self, task_id: str, after: int, limit: int = 100, block: float | None = None
    ) -> list[ControlEnvelope]:
        control = self._controls.setdefault(task_id, _Control())
        if block and control.last <= after:
            async with control.changed:
                try:
                    await asyncio.wait_for(
                        control.changed.wait_for(lambda: control.last > after), block
                    )
                except TimeoutError:
                    return []
        return [e for e in control.envelopes if e.number > after][:limit]

    async def close(self) -> None:
        return None
