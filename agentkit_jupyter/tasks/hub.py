"""The task hub: tasks created once, run once, watched by any number of subscribers."""

from __future__ import annotations

import asyncio
import heapq
import hmac
import itertools
import json
import logging
import secrets
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import agentkit_jupyter.protocol as protocol

from ..core import AgentPool, CancellationToken, EventType, StepEvent
from ..core.costs import Budget
from ..protocol import TaskStatus
from .bounds import WholeTexts, bounded, carried, container_of, truncation_of
from .control import CONTROL_EVENT_TYPES, TaskControl
from .log import EventLog, LogEntry
from .store import LoadReport, StoredTask, StoreError, TaskStore

# Pages read from the task history for a replay or a GET (a thread does the reading).
HISTORY_PAGE_EVENTS = 500
# How long a reader waits for the writer before it gives up on the history.
HISTORY_WAIT_SECONDS = 5.0

log = logging.getLogger(__name__)

EventSource = Callable[[CancellationToken], AsyncIterator[StepEvent]]

# The most a subscriber's writer takes from the log at once (so at most this, or one
# message, sits in its socket's buffer): a late joiner replaying a big log, or a stuck
# client, costs no more than this beyond the log every subscriber shares.
BATCH_MAX_BYTES = 256 * 1024

# Where a result holds the texts of the terminal step it is made of (see finish_from_event).
_RESULT_PATHS = {
    EventType.FINAL_ANSWER: {"output": "output"},
    EventType.CANCELLED: {"reason": "reason"},
    EventType.ERROR: {"message": "error.message"},
}
_MARKER = f'"{protocol.TRUNCATED_KEY}":'.encode()

# The longest a run's source may publish without giving the event loop a turn.
RUN_TIME_SLICE = 0.002
# Subscribers are checked for lag after this many events or bytes.
LAG_CHECK_EVERY = 64
LAG_CHECK_BYTES = 256 * 1024


class UnknownTaskError(KeyError):
    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id

    def __str__(self) -> str:
        return "Unknown task."


class TaskFinishedError(RuntimeError):
    """The task already has its final result."""


class TooManySubscribersError(RuntimeError):
    pass


class TooManyConnectionsError(TooManySubscribersError):
    """One owner (user) already has ``max_subscribers_per_user`` connections to the task."""


class TooManyRunningTasksError(RuntimeError):
    """``max_running_tasks`` runs are in flight; a new one is refused, not queued."""


class UnknownEventError(LookupError):
    """The task's log has no message with that ``seq``."""


class EventNotKeptError(LookupError):
    """The message was cut (see ``protocol.Truncation``) and its whole copy is not kept."""


class PublishError(ValueError):
    """A publisher's event was refused; ``code`` is a protocol error code."""

    def __init__(self, code: protocol.ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class RemoteRun(Protocol):
    """Where the commands of a task run elsewhere go (a shared backend's control
    stream, see tasks/shared.py): the local ``Task`` is then a mirror of its log."""

    def cancel(self, reason: str | None) -> None: ...

    async def command(self, command: protocol.ControlMessage, by: str | None) -> None:
        """Send an approve / reject / pause / resume; a ``ControlError`` if refused
        there (a decision another server sent first)."""
        ...

    async def whole_text(self, seq: int) -> bytes | None:
        """The whole text of message ``seq``, logged cut, where its runner kept it."""
        ...

    async def read_after(self, after: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` entries after ``after`` from the backend's log (older than the
        mirror's memory window); ``[]`` when they cannot be read (trimmed, unreachable)."""
        ...


class TaskSink(Protocol):
    """Gets a copy of what a task logs and saves (a worker's writer to the shared
    backend, tasks/worker.py), in order, from the event loop: it must not block."""

    def appended(self, entry: LogEntry) -> None: ...

    def saved(self, record: dict[str, Any]) -> None: ...

    def whole(self, seq: int, text: str) -> None:
        """The whole text of message ``seq``, which is logged cut (``max_event_bytes``)."""
        ...


@dataclass(frozen=True, slots=True)
class HubLimits:
    """Bounds on memory and fan-out, per task and per subscriber."""

    max_events_in_memory: int = 20_000
    max_bytes_in_memory: int = 16 * 1024 * 1024
    max_subscribers_per_task: int = 1000
    # How far a subscriber may fall behind the live end before it is dropped.
    subscriber_max_lag_messages: int = 5_000
    subscriber_max_lag_bytes: int = 4 * 1024 * 1024
    max_tasks: int = 1000
    # Finished tasks whose log stays in memory (the most recent ones), by count and by
    # bytes; the others are served from the task history on disk. Without a history
    # every finished task's log stays in memory (it is the only copy).
    max_cached_logs: int = 16
    max_cached_log_bytes: int = 32 * 1024 * 1024
    # Runs in flight at once (server and kernel tasks); one more is refused.
    max_running_tasks: int = 100
    # Connections one owner (user) may hold to one task.
    max_subscribers_per_user: int = 100
    # A run that ignores its cancellation token is force-stopped after this long.
    cancel_grace_seconds: float = 2.0
    # A kernel-published task fails if its kernel does not connect within this long.
    publisher_connect_timeout: float = 30.0
    # A kernel whose publish connection dropped may reconnect (and resume) this long.
    publisher_reconnect_timeout: float = 5.0
    # The most one logged message (a step, the result) takes; a larger one is logged cut
    # (see tasks/bounds.py) and kept whole aside. 0: no cap.
    max_event_bytes: int = protocol.MAX_EVENT_BYTES
    # Whole copies of cut messages kept in memory (all tasks together) where the history
    # cannot keep them (no history, or its write queue is full).
    max_whole_bytes_in_memory: int = 64 * 1024 * 1024


class Subscription:
    """One subscriber's cursor into a task's log.

    ``batches()`` yields lists of entries after the cursor, replay first and then live,
    with no gap and no duplicate; it ends after the result, or when the subscriber is
    dropped (``dropped`` then says why).
    """

    def __init__(self, task: Task, after: int, owner: str | None = None) -> None:
        self.task = task
        self.cursor = after
        self.owner = owner
        self.serial = 0  # set by Task.subscribe: orders equal cursors in the lag heap
        self.dropped: protocol.ErrorCode | None = None
        self._wake: asyncio.Future[None] | None = None
        self._on_drop: list[Callable[[protocol.ErrorCode], None]] = []

    @property
    def lag(self) -> int:
        return self.task.log.last_seq - self.cursor

    def on_drop(self, callback: Callable[[protocol.ErrorCode], None]) -> None:
        self._on_drop.append(callback)

    def drop(self, reason: protocol.ErrorCode) -> None:
        if self.dropped is not None:
            return
        self.dropped = reason
        self.task._forget(self)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        for callback in self._on_drop:
            callback(reason)

    def close(self) -> None:
        self.task._forget(self)

    async def batches(
        self, limit: int = 500, max_bytes: int = BATCH_MAX_BYTES
    ) -> AsyncIterator[list[LogEntry]]:
        """Batches of at most ``limit`` entries and ``max_bytes`` (or one entry): what a
        writer has in flight, on top of the shared log, stays that small."""
        task = self.task
        try:
            while self.dropped is None:
                # Looked up each time: a finished task's log may leave memory meanwhile.
                log_ = task.log
                if self.cursor + 1 < log_.first_seq:
                    # Older than what memory holds: from the history on disk, in pages.
                    entries = await task.read_history(
                        self.cursor, min(limit, HISTORY_PAGE_EVENTS), max_bytes
                    )
                    if self.dropped is not None:
                        break
                    if not entries:
                        # Neither memory nor disk has what it has not sent: never a silent gap.
                        self.drop(protocol.ErrorCode.SUBSCRIBER_TOO_SLOW)
                        break
                    self.cursor = entries[-1].seq
                    task._track(self)
                    yield entries
                    continue
                entries = _up_to_bytes(log_.read_after(self.cursor, limit), max_bytes)
                if entries:
                    self.cursor = entries[-1].seq
                    task._track(self)
                    yield entries
                    continue
                if self.task.finished and self.cursor >= log_.last_seq:
                    return
                self._wake = log_.waiter()
                try:
                    await self._wake
                finally:
                    self._wake = None
        finally:
            self.close()


def _up_to_bytes(entries: list[LogEntry], max_bytes: int) -> list[LogEntry]:
    total = 0
    for index, entry in enumerate(entries):
        total += entry.size
        if total > max_bytes and index:
            return entries[:index]
    return entries


class Task:
    """One run: created once, runs once, keeps an ordered log of wire messages."""

    def __init__(
        self,
        task_id: str,
        agent: str,
        user_input: str,
        limits: HubLimits,
        origin: str = "server",
        store: TaskStore | None = None,
        redact: Callable[[str], str] | None = None,
        wholes: WholeTexts | None = None,
    ) -> None:
        self.task_id = task_id
        self.agent = agent
        self.input = user_input
        self.origin = origin
        self.status = TaskStatus.QUEUED
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.result: dict[str, Any] | None = None
        self.token = CancellationToken()
        self.log = EventLog(limits.max_events_in_memory, limits.max_bytes_in_memory)
        self._limits = limits
        self._subscribers: set[Subscription] = set()
        self._owners: Counter[str] = Counter()  # connections per owner (user)
        # Subscribers by cursor, slowest first (stale entries are skipped): the lag check
        # looks at the slowest only, so its cost does not grow with the subscribers.
        self._by_cursor: list[tuple[int, int, Subscription]] = []
        self._serials = itertools.count()
        # Appended since the last look for lagging subscribers (see publish()).
        self._unchecked = 0
        self._unchecked_bytes = 0
        self._runner: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        # Set for tasks whose events come from a kernel: only its holder may publish.
        self.publish_secret: str | None = None
        self.publisher_attached = False
        # Bumped by each (re)connection of the publisher: the current one's number.
        self.publisher_generation = 0
        self._store = store
        # The oldest seq the history has (None: no history, memory is all there is).
        self._history_first: int | None = 1 if store is not None else None
        # The store's ticket of the last record saved: on disk once store.durable() says so.
        self._ticket = 0
        # What could not be read back from the history as written (None: nothing).
        self.damaged: str | None = None
        # The first seq the history on disk does not have (its write queue was full):
        # from there on the log is in memory only. None: the history has it all.
        self.history_incomplete_from: int | None = None
        # Set when that happened in this process: the rest of the log is in memory only.
        self._tail_in_memory = False
        # Whole copies of cut messages the history cannot keep (see _capped()).
        self._wholes = wholes
        # Called once when the task ends (the hub keeps or drops its log).
        self.on_finish: Callable[[Task], None] | None = None
        # Applied to every message before it is logged, stored or sent (known secrets).
        self._redact = redact
        # Approvals, pause and resume (human in the loop).
        self.control = TaskControl()
        # Runs as data: the task this one was forked from (or continues), the parent's
        # seq it was forked at and how (protocol.ForkKind); the continuation of this
        # task once it was resumed after an interruption.
        self.parent_id: str | None = None
        self.forked_at_seq: int | None = None
        self.fork_kind: str | None = None
        self.resumed_by: str | None = None
        # The run's budget (protocol.BudgetData) and what its own model calls used,
        # from its ``usage`` steps (a fork's copied ones were the parent's).
        self.budget: dict[str, Any] | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost: float | None = None
        self._priced = True  # False once a call had no known price: the cost is unknown
        # A run imported from a notebook (protocol.ImportedFrom); None: it ran here.
        self.imported_from: dict[str, Any] | None = None
        # Set when the run is elsewhere (a worker on a shared backend): this task mirrors
        # its log (``mirror()``) and its commands go there.
        self.remote: RemoteRun | None = None
        # A mirror's oldest seq on the backend (older than its memory window is read there).
        self.remote_first_seq: int | None = None
        # Set when this process runs the task for a shared backend: a copy of each entry.
        self.sink: TaskSink | None = None
        self._token_parts: tuple[str, str] | None = None  # see _token_head

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def first_seq(self) -> int:
        """The oldest ``seq`` that can still be read: from the history, or from memory."""
        if self.remote is not None and self.remote_first_seq is not None:
            return min(self.remote_first_seq, self.log.first_seq)  # the backend has those
        if self._store is not None and self._history_first is not None:
            gap = self.history_incomplete_from
            if self._tail_in_memory and gap is not None and self.log.first_seq > gap:
                return self.log.first_seq  # the history stops before what memory holds
            return min(self._history_first, self.log.first_seq)
        return self.log.first_seq

    @property
    def log_in_memory(self) -> bool:
        return len(self.log) > 0

    def forget_log(self) -> None:
        """Drop the log from memory (it is on disk): later reads come from the history."""
        empty = EventLog(self.log.max_entries, self.log.max_bytes)
        empty.restore(self.log.last_seq + 1, [])
        self.log = empty

    def detach(self) -> None:
        """The task was deleted: nothing it does from now on reaches the history."""
        self._store = None
        self._history_first = None

    async def read_history(self, after: int, limit: int, max_bytes: int) -> list[LogEntry]:
        """Entries after ``after`` that memory no longer holds, read from the history
        (on a worker thread); ``[]`` when it has none."""
        store = self._store
        upto = self.log.first_seq - 1
        if self.remote is not None and after < upto:  # a mirror: from the backend's log
            entries = await self.remote.read_after(after, min(limit, upto - after))
            return _up_to_bytes([e for e in entries if e.seq <= upto], max_bytes)
        if store is None or after >= upto:
            return []
        rows, damaged = await asyncio.to_thread(
            store.read_events, self.task_id, after, upto, limit, max_bytes
        )
        if (not rows or rows[0][0] != after + 1) and not store.failing:
            # Not written yet (the writer commits every few ms): wait for it, once.
            try:
                await asyncio.to_thread(store.flush, HISTORY_WAIT_SECONDS)
            except StoreError:
                return []
            rows, damaged = await asyncio.to_thread(
                store.read_events, self.task_id, after, upto, limit, max_bytes
            )
        if damaged and self.damaged is None:
            self.damaged = "some events could not be read back as written (repaired)"
        return [LogEntry(seq, data) for seq, data in rows]

    async def read_page(self, after: int, limit: int, max_bytes: int) -> list[LogEntry]:
        """At most ``limit`` entries after ``after`` (and ``max_bytes``, or one), from
        memory or the history: the same bytes either way."""
        if limit <= 0:
            return []
        if after + 1 < self.log.first_seq:
            entries = await self.read_history(after, limit, max_bytes)
            if entries:
                return entries
        return _up_to_bytes(self.log.read_after(after, limit), max_bytes)

    async def read_event(self, seq: int) -> bytes:
        """Message ``seq`` of the log, whole: as logged, or the whole copy of one that was
        cut. UnknownEventError (no such seq), EventNotKeptError (no whole copy)."""
        if not 1 <= seq <= self.log.last_seq:
            raise UnknownEventError(seq)
        entries = await self.read_page(seq - 1, 1, sys.maxsize)  # one, whatever its size
        if not entries or entries[0].seq != seq:
            raise EventNotKeptError("This event is no longer held (not in memory nor on disk).")
        if truncation_of(json.loads(entries[0].data)) is None:
            return entries[0].data
        whole = self._wholes.get(self.task_id, seq) if self._wholes is not None else None
        if whole is not None:
            return whole.encode("utf-8", "replace")
        store = self._store
        if store is not None:
            data = await asyncio.to_thread(store.read_whole_event, self.task_id, seq)
            if data is None and not store.failing:
                try:  # not written yet (the writer commits every few ms): wait, once
                    await asyncio.to_thread(store.flush, HISTORY_WAIT_SECONDS)
                except StoreError:
                    pass
                data = await asyncio.to_thread(store.read_whole_event, self.task_id, seq)
            if data is not None:
                return data
        if self.remote is not None:  # run elsewhere: its runner kept it on the backend
            data = await self.remote.whole_text(seq)
            if data is not None:
                return data
            raise EventNotKeptError(
                "The whole text of this event is not on the task backend (it was cut "
                "where it ran, and its whole copy was not kept or has been deleted)."
            )
        if self.origin != "server":
            raise EventNotKeptError(
                "The kernel that ran this task published this event already shortened; "
                "its whole text is not on this server."
            )
        raise EventNotKeptError(
            "The whole text of this event is not kept (no task history, and the memory "
            "budget for whole texts, max_whole_bytes_in_memory, was used up)."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "agent": self.agent,
            "input": self.input,
            "status": self.status.value,
            "origin": self.origin,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "last_seq": self.log.last_seq,
            "first_seq": self.first_seq,
            "damaged": self.damaged,
            "history_incomplete_from": self.history_incomplete_from,
            "subscribers": self.subscriber_count,
            "pending_approvals": self.control.pending_list(),
            "parent_id": self.parent_id,
            "forked_at_seq": self.forked_at_seq,
            "fork_kind": self.fork_kind,
            "resumed_by": self.resumed_by,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": self.cost,
            "budget": self.budget,
            "imported_from": self.imported_from,
        }

    def _count_usage(self, data: dict[str, Any]) -> None:
        prompt, completion = data.get("prompt_tokens"), data.get("completion_tokens")
        self.tokens_in += prompt if isinstance(prompt, int) else 0
        self.tokens_out += completion if isinstance(completion, int) else 0
        cost = data.get("cost")
        if not isinstance(cost, int | float) or isinstance(cost, bool):
            self._priced, self.cost = False, None
        elif self._priced:
            self.cost = (self.cost or 0.0) + float(cost)

    def copy_in(self, message: dict[str, Any]) -> LogEntry:
        """Append a step of another task's log (a fork's parent) as this task's own,
        marked ``copied``: no model or tool call made it here."""
        step = dict(message["data"])
        step["copied"] = True
        seq = self.log.last_seq + 1
        return self._append(
            protocol.dumps(
                protocol.step_message(self.task_id, seq, cast(protocol.StepEventData, step))
            )
        )

    # -- subscribers --------------------------------------------------------------

    def subscribe(self, after: int = 0, owner: str | None = None) -> Subscription:
        if len(self._subscribers) >= self._limits.max_subscribers_per_task:
            raise TooManySubscribersError(
                f"This task already has {len(self._subscribers)} subscribers."
            )
        if owner is not None:
            mine = self._owners[owner]
            if mine >= self._limits.max_subscribers_per_user:
                raise TooManyConnectionsError(
                    f"You already have {mine} connections to this task "
                    f"(max_connections_per_user); close one first."
                )
        # Replay starts at the oldest event still held (the caller says so to its client).
        subscription = Subscription(self, max(after, 0, self.first_seq - 1), owner)
        subscription.serial = next(self._serials)
        self._subscribers.add(subscription)
        if owner is not None:
            self._owners[owner] += 1
        self._track(subscription)
        return subscription

    def _forget(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
            if sub.owner is not None:
                self._owners[sub.owner] -= 1
                if not self._owners[sub.owner]:
                    del self._owners[sub.owner]

    def _track(self, sub: Subscription) -> None:
        """Note ``sub``'s new cursor in the slowest-first heap."""
        heap = self._by_cursor
        heapq.heappush(heap, (sub.cursor, sub.serial, sub))
        if len(heap) > 4 * len(self._subscribers) + 64:
            # Mostly stale entries (fast readers' old cursors): rebuild, O(1) a push.
            heap[:] = [(s.cursor, s.serial, s) for s in self._subscribers]
            heapq.heapify(heap)

    def _check_lagging(self) -> None:
        """Drop the subscribers beyond the lag caps, looking at the slowest ones only."""
        limits = self._limits
        last = self.log.last_seq
        first = self.log.first_seq
        heap = self._by_cursor
        while heap:
            cursor, _, sub = heap[0]
            if sub.cursor != cursor or sub.dropped is not None or sub not in self._subscribers:
                heapq.heappop(heap)  # stale: that subscriber moved on or left
                continue
            behind = last - cursor
            if behind <= 16 or not (
                behind > limits.subscriber_max_lag_messages
                or cursor + 1 < first
                or self.log.lag_bytes(cursor) > limits.subscriber_max_lag_bytes
            ):
                return  # the slowest is within the caps, so every other one is too
            heapq.heappop(heap)
            sub.drop(protocol.ErrorCode.SUBSCRIBER_TOO_SLOW)

    # -- the run ------------------------------------------------------------------

    def publish(self, event: StepEvent) -> LogEntry:
        """Append a step event (not the final result) to the log."""
        if self.finished:
            raise TaskFinishedError(f"task {self.task_id} is finished")
        seq = self.log.last_seq + 1
        entry = self._append(
            protocol.dumps(
                protocol.step_message(
                    self.task_id, seq, cast(protocol.StepEventData, event.to_dict())
                )
            )
        )
        # Every few events or bytes, not per event: a laggard overshoots the caps by at
        # most that much.
        self._unchecked += 1
        self._unchecked_bytes += entry.size
        if self._unchecked >= LAG_CHECK_EVERY or self._unchecked_bytes >= LAG_CHECK_BYTES:
            self._unchecked = self._unchecked_bytes = 0
            self._check_lagging()
        if event.event_type in CONTROL_EVENT_TYPES and self.control.observe(event):
            self._control_status_changed()
        elif event.event_type is EventType.USAGE:
            self._count_usage(event.data)
        return entry

    def _control_status_changed(self) -> None:
        status = self.control.status()
        if status is not self.status and not self.finished:
            self.status = status
            self.save()  # the record on disk says it waits (and for what) or is paused

    def command(self, command: protocol.ControlMessage, by: str | None) -> None:
        """A viewer's approve / reject / pause / resume (``ControlError`` if refused)."""
        if self.finished:
            raise TaskFinishedError(f"task {self.task_id} already {self.status.value}")
        self.control.apply(command, by)
        self._control_status_changed()  # a claimed call no longer waits

    async def send_command(self, command: protocol.ControlMessage, by: str | None) -> None:
        """:meth:`command`, wherever the run is: a mirrored task's goes to its runner
        (checked here first, then claimed there: the first decision from any server wins)."""
        remote = self.remote
        if remote is None:
            self.command(command, by)
            return
        if self.finished:
            raise TaskFinishedError(f"task {self.task_id} already {self.status.value}")
        self.control.check(command)
        await remote.command(command, by)
        self.control.note_sent(command)
        self._control_status_changed()

    def _token_head(self, seq: int) -> str:
        parts = self._token_parts
        if parts is None:
            # Made once per task around a placeholder seq: the head of seq N is then
            # before + N + after.
            step = cast(protocol.StepEventData, {"event_type": EventType.TOKEN.value})
            whole = protocol.dumps(protocol.step_message(self.task_id, 0, step))
            before, after = whole[: -len("}}")].split(":0,", 1)
            parts = self._token_parts = (before + ":", "," + after + ",")
        return f"{parts[0]}{seq}{parts[1]}"

    def mirror(self, text: str) -> LogEntry:
        """Append a message its runner logged elsewhere (already redacted and cut), as it
        is, with the same ``seq``; the task's state follows what it says."""
        if self.finished:
            raise TaskFinishedError(f"task {self.task_id} is finished")
        seq = self.log.last_seq + 1
        # Most of a run's messages are tokens, which change nothing: known by their
        # head (as protocol.dumps writes it), not parsed.
        token = self.status is not TaskStatus.QUEUED and text.startswith(self._token_head(seq))
        entry = self.log.append(text)
        self._unchecked += 1
        self._unchecked_bytes += entry.size
        if self._unchecked >= LAG_CHECK_EVERY or self._unchecked_bytes >= LAG_CHECK_BYTES:
            self._unchecked = self._unchecked_bytes = 0
            self._check_lagging()
        if token:
            return entry
        message = json.loads(text)
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(data, dict):
            return entry
        if message.get("type") == "result":
            self.status = TaskStatus(data.get("status", TaskStatus.FAILED.value))
            self.finished_at = self.finished_at or time.time()
            self.result = data
            self._done.set()
            if self.on_finish is not None:
                self.on_finish(self)
            return entry
        if self.status is TaskStatus.QUEUED:
            self.status = TaskStatus.RUNNING
            self.started_at = self.started_at or time.time()
        if self.control.observe_wire(data):
            status = self.control.status()
            if status is not self.status:
                self.status = status
        elif data.get("event_type") == EventType.USAGE.value and not data.get("copied"):
            inner = data.get("data")
            if isinstance(inner, dict):
                self._count_usage(inner)
        return entry

    def _append(self, text: str, *, redacted: bool = False) -> LogEntry:
        if self._redact is not None and not redacted:
            text = self._redact(text)
        text = self._capped(text)
        entry = self.log.append(text)
        if self.sink is not None:
            self.sink.appended(entry)
        if self._store is not None and not self._store.append_event(self.task_id, entry.seq, text):
            # The store's queue was full: its copy of this task stops here (a prefix).
            if self.history_incomplete_from is None:
                self.history_incomplete_from = entry.seq
            self._tail_in_memory = True
        return entry

    def _capped(self, text: str) -> str:
        """``text``, or when it is larger than ``max_event_bytes`` a copy with its longest
        texts cut and the marker (``tasks/bounds.py``). The whole one is kept aside: in
        the history, or in memory within ``max_whole_bytes_in_memory``."""
        seq = self.log.last_seq + 1
        cut = bounded(text, self._limits.max_event_bytes, self.task_id, seq)
        if cut is None:
            return text
        store = self._store
        if store is None or not store.save_whole_event(self.task_id, seq, text):
            if self._wholes is not None:
                self._wholes.keep(self.task_id, seq, text)
        if self.sink is not None:  # on a shared backend: for every server's viewers
            self.sink.whole(seq, text)
        return cut

    def save(self) -> None:
        """Persist the task's record (status, times, result), if there is a store."""
        if self.sink is not None:
            self.sink.saved(self.to_dict())
        if self._store is not None:
            self._ticket = self._store.save_task(self.to_dict())

    def finish(self, status: TaskStatus, **result: Any) -> bool:
        """Record the one final result; later calls are ignored (returns False)."""
        if self.finished:
            return False
        self.status = status
        self.finished_at = time.time()
        spent: dict[str, Any] = {
            "usage": {"prompt_tokens": self.tokens_in, "completion_tokens": self.tokens_out},
            "cost": self.cost,
        }
        record = {"status": status.value, "task_id": self.task_id, **spent, **result}
        data = cast(protocol.ResultData, record)
        # One serialisation for the log and the record, so the record holds what the log
        # holds: strict JSON, valid text (a lone surrogate in an output is U+FFFD in both,
        # also after a restart), redacted, and cut as the log's copy is.
        plain = protocol.dumps(protocol.result_message(self.task_id, self.log.last_seq + 1, data))
        text = self._redact(plain) if self._redact is not None else plain
        try:
            message = json.loads(text)
        except ValueError:  # a "secret" that spans JSON syntax: keep the record
            message = json.loads(plain)
        logged = self._capped(text)
        if logged is not text:
            cut = json.loads(logged)
            if cut.get("type") == "result":
                message = cut
        self.result = message["data"]
        self._append(logged, redacted=True)
        self.save()
        self._done.set()
        if self.on_finish is not None:
            self.on_finish(self)
        return True

    def _say_history_incomplete(self) -> None:
        """A restored task whose history on disk stops at ``history_incomplete_from``
        (its write queue was full while the disk refused writes): its log says so, in an
        ``error`` step (``history_incomplete``), then (finished) its result again, so a
        replay ends as every replay does. Written once: a later start finds them."""
        gap = self.history_incomplete_from
        event: protocol.StepEventData = {
            "event_type": EventType.ERROR.value,
            "step": 0,
            "data": {
                "code": protocol.ErrorCode.HISTORY_INCOMPLETE.value,
                "message": f"Events from {gap} on never reached the task history (its "
                "write queue was full while the disk refused writes): what the run did "
                "after that is lost. The task's result is kept.",
                "from_seq": gap,
            },
            "timestamp": self.finished_at or time.time(),
        }
        seq = self.log.last_seq + 1
        self._append(protocol.dumps(protocol.step_message(self.task_id, seq, event)))
        if self.finished and self.result is not None:
            data = cast(protocol.ResultData, self.result)
            seq = self.log.last_seq + 1
            self._append(protocol.dumps(protocol.result_message(self.task_id, seq, data)))

    def finish_from_event(self, event: StepEvent) -> None:
        data, cut = self._as_logged(event)
        if event.event_type is EventType.FINAL_ANSWER:
            self.finish(
                TaskStatus.SUCCEEDED,
                output=data.get("output"),
                total_steps=data.get("total_steps"),
                total_tokens=data.get("total_tokens"),
                **cut,
            )
        elif event.event_type is EventType.CANCELLED:
            code = {"code": data["code"]} if isinstance(data.get("code"), str) else {}
            self.finish(TaskStatus.CANCELLED, reason=data.get("reason"), **code, **cut)
        elif event.event_type is EventType.ERROR:
            self.finish(
                TaskStatus.FAILED,
                error={"code": data.get("code"), "message": data.get("message")},
                **cut,
            )

    def _as_logged(self, event: StepEvent) -> tuple[dict[str, Any], dict[str, Any]]:
        """The terminal step's data, and the marker its result takes: as logged when it
        was logged cut (so the result is cut as the step is, on a server and in the
        kernel whose run it publishes, and points at the step's whole copy)."""
        entries = self.log.read_after(self.log.last_seq - 1, 1)
        if not entries or _MARKER not in entries[0].data:
            return event.data, {}
        message = json.loads(entries[0].data)
        data = container_of(message)
        marker = truncation_of(message)
        step = message.get("data") if isinstance(message, dict) else None
        kind = step.get("event_type") if isinstance(step, dict) else None
        if data is None or marker is None or kind != event.event_type.value:
            return event.data, {}
        return data, carried(marker, _RESULT_PATHS.get(event.event_type, {}))

    async def run(self, source: EventSource) -> None:
        self.status = TaskStatus.RUNNING
        self.started_at = time.time()
        self.save()
        loop = asyncio.get_running_loop()
        turn_ends = loop.time() + RUN_TIME_SLICE
        try:
            async for event in source(self.token):
                if self.finished:
                    # Ended from outside (fail(), an interrupted kernel): what the source
                    # says after that (its ``cancelled``) is not news; end quietly, once.
                    return
                self.publish(event)
                if event.is_terminal:
                    self.finish_from_event(event)
                    return
                # A source that never awaits (a burst of queued tokens) still lets the
                # subscribers' writers and everything else on the loop run, at least
                # every RUN_TIME_SLICE; each writer then sends what piled up in one go.
                if loop.time() >= turn_ends:
                    await asyncio.sleep(0)
                    turn_ends = loop.time() + RUN_TIME_SLICE
            self.fail("The agent stopped without a final answer.")
        except asyncio.CancelledError:
            # Forced stop (grace period over, or server shutdown): still one final result.
            self._publish_cancelled("The run was stopped.")
            raise
        except Exception:
            log.exception("task %s: the run failed", self.task_id)
            self.fail("The run failed with an internal error; see the server log.")

    def fail(
        self, message: str, code: protocol.ErrorCode = protocol.ErrorCode.INTERNAL_ERROR
    ) -> None:
        if self.finished:
            return
        step = StepEvent(EventType.ERROR, 0, {"message": message, "code": code.value})
        self.publish(step)
        self.finish(TaskStatus.FAILED, error={"code": code.value, "message": message})

    def _publish_cancelled(self, message: str) -> None:
        if self.finished:
            return
        data: dict[str, Any] = {
            "reason": self.token.reason,
            "interrupted": "run",
            "tools": [],
            "background": [],
            "message": message,
        }
        self.publish(StepEvent(EventType.CANCELLED, 0, data))
        self.finish(TaskStatus.CANCELLED, reason=self.token.reason)

    def start(self, source: EventSource) -> None:
        self._runner = asyncio.get_running_loop().create_task(
            self.run(source), name=f"agentkit-task-{self.task_id}"
        )

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel once; False if the task already finished or was already cancelled."""
        if self.finished:
            return False
        if self.remote is not None:
            # Its runner logs the cancellation; this mirror shows it when it arrives.
            if not self.token.cancel(reason):
                return False
            self.remote.cancel(reason)
            return True
        if self.status is TaskStatus.QUEUED and self._runner is None:
            self.token.cancel(reason)
            self._publish_cancelled("Cancelled before it started.")
            return True
        if not self.token.cancel(reason):
            return False
        # A run (or a kernel) that ignores its token is stopped by force after a grace period.
        asyncio.get_running_loop().call_later(self._limits.cancel_grace_seconds, self._force_stop)
        return True

    def _force_stop(self) -> None:
        if self.finished:
            return
        if self._runner is not None:
            if not self._runner.done():
                log.warning("task %s ignored its cancellation; stopping it", self.task_id)
                self._runner.cancel()
        else:
            self._publish_cancelled(
                "Cancelled; the kernel running the agent did not confirm in time."
            )

    # -- events published from elsewhere (a kernel) ------------------------------------

    def check_publish_secret(self, presented: str | None) -> bool:
        if self.publish_secret is None or presented is None:
            return False
        return hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), self.publish_secret.encode()
        )

    def attach_publisher(self) -> int:
        """Attach the (re)connecting publisher; returns its generation. A new connection
        supersedes an older one (only the kernel holding the secret gets here): the
        publisher of a dropped connection resumes after ``log.last_seq``."""
        if self.finished:
            raise TaskFinishedError(f"task {self.task_id} already {self.status.value}")
        self.publisher_attached = True
        self.publisher_generation += 1
        return self.publisher_generation

    def publish_external(self, raw: Any, seq: Any = None) -> StepEvent | None:
        """Validate and append an event sent by the task's publisher.

        ``seq`` (the event's place in the kernel's log) makes a resend after a
        reconnect harmless: one already held is skipped (returns ``None``).
        """
        if self.finished:
            raise TaskFinishedError(f"task {self.task_id} already {self.status.value}")
        if seq is not None:
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise PublishError(
                    protocol.ErrorCode.INVALID_MESSAGE, "'seq' must be an integer >= 1."
                )
            if seq <= self.log.last_seq:
                return None
            if seq != self.log.last_seq + 1:
                raise PublishError(
                    protocol.ErrorCode.INVALID_MESSAGE,
                    f"Events after {self.log.last_seq} are missing (got seq {seq}).",
                )
        try:
            event = StepEvent.from_dict(raw)
        except (KeyError, ValueError, TypeError, OverflowError):  # e.g. "step": 1e999
            raise PublishError(
                protocol.ErrorCode.INVALID_MESSAGE,
                "An event needs event_type (a known type), step (int), data (object), "
                "timestamp (number).",
            ) from None
        if raw.get("copied") is True:
            # A kernel fork's copied step (a follow-up copies the parent's answer too:
            # copied, it ends nothing).
            self.copy_in({"data": event.to_dict()})
            return event
        self.publish(event)
        if event.is_terminal:
            self.finish_from_event(event)
        return event

    def publisher_lost(self, generation: int | None = None, *, at_once: bool = False) -> None:
        """The publisher's connection ended before the run did. It may reconnect within
        ``publisher_reconnect_timeout`` (and resume); otherwise (or ``at_once``) the
        run is failed, never left running. A superseded connection's end is no news."""
        if self.finished or (generation is not None and generation != self.publisher_generation):
            return
        self.publisher_attached = False
        if not at_once and self._limits.publisher_reconnect_timeout > 0:
            asyncio.get_running_loop().call_later(
                self._limits.publisher_reconnect_timeout,
                self._publisher_never_returned,
                self.publisher_generation,
            )
            return
        self._publisher_never_returned(self.publisher_generation)

    def _publisher_never_returned(self, generation: int) -> None:
        if self.finished or self.publisher_attached or generation != self.publisher_generation:
            return
        message = (
            "The kernel running this agent went away before the run finished "
            "(it died, restarted, was interrupted, or lost its connection)."
        )
        self.fail(message, code=protocol.ErrorCode.KERNEL_DISCONNECTED)

    def _publisher_never_came(self) -> None:
        if not self.finished and not self.publisher_attached:
            self.fail(
                "The kernel that created this task never connected to publish its events.",
                code=protocol.ErrorCode.KERNEL_DISCONNECTED,
            )

    async def wait(self) -> dict[str, Any]:
        await self._done.wait()
        assert self.result is not None
        return self.result

    def interrupt(
        self, code: protocol.ErrorCode, was: TaskStatus | None = None, who: str = "The server"
    ) -> None:
        """End as ``interrupted`` (the server, or ``who``, stopped): the events so far
        are kept, and calls that waited for a decision stay in the record, undecided."""
        was = was or self.status
        doing = {TaskStatus.WAITING: "waiting for a decision", TaskStatus.PAUSED: "paused"}
        waiting = self.control.pending_list()
        self.finish(
            TaskStatus.INTERRUPTED,
            error={
                "code": code.value,
                "message": f"{who} stopped while this task was "
                f"{doing.get(was, 'running')}; its events up to then are kept.",
            },
            **({"pending_approvals": waiting} if waiting else {}),
        )

    async def stop(self, reason: str) -> None:
        """Cancel and wait until the runner has ended (server shutdown). A task that
        waits for a person (a decision, or a resume) is not cancelled: it ends
        ``interrupted`` with what it waited for in its record. A mirrored task's run is
        elsewhere and goes on: only this server's viewers are let go."""
        if self.remote is not None:
            for sub in list(self._subscribers):
                sub.drop(protocol.ErrorCode.SERVER_SHUTTING_DOWN)
            return
        if self.status in (TaskStatus.WAITING, TaskStatus.PAUSED):
            self.interrupt(protocol.ErrorCode.SERVER_SHUTTING_DOWN)
            if self._runner is not None and not self._runner.done():
                self._runner.cancel()
                await asyncio.gather(self._runner, return_exceptions=True)
            return
        self.cancel(reason)
        if self._runner is not None and not self._runner.done():
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._runner), self._limits.cancel_grace_seconds
                )
            except (TimeoutError, asyncio.CancelledError):
                self._runner.cancel()
        for sub in list(self._subscribers):
            if not self.finished:
                sub.drop(protocol.ErrorCode.SERVER_SHUTTING_DOWN)


class TaskHub:
    """All tasks of one server. Knows nothing of HTTP or WebSockets."""

    def __init__(
        self,
        agents: AgentPool,
        limits: HubLimits | None = None,
        store: TaskStore | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.agents = agents
        self.limits = limits or HubLimits()
        self.store = store
        # Known secrets (the server's token) out of every message: see Task._append.
        self.redact = redact
        # Whole copies of cut messages that the history cannot keep (see Task._capped).
        self.wholes = WholeTexts(self.limits.max_whole_bytes_in_memory)
        self._tasks: dict[str, Task] = {}
        # Called with each task created here once it ends (OpenTelemetry export).
        self.finish_listeners: list[Callable[[Task], None]] = []
        # Finished tasks whose log is still in memory, least recently used first.
        self._cached: OrderedDict[str, Task] = OrderedDict()
        # Stored records that could not be read at all (see history_status()).
        self.skipped_records = 0
        if store is not None:
            # Records only: a finished task's events stay on disk until someone reads them.
            try:
                report = store.load()
            except Exception:
                log.exception("agentkit: the task history could not be read; starting without it")
                report = LoadReport(skipped=1)
            self.skipped_records = report.skipped
            for stored in report.tasks:
                try:
                    self._restore(stored)
                except Exception:
                    # Never fail a start on one record: skip it, say so.
                    self.skipped_records += 1
                    log.exception("agentkit: a stored task could not be restored; skipped")

    def _restore(self, stored: StoredTask) -> None:
        record = stored.record
        if stored.damaged:
            log.warning(
                "agentkit: stored task %s is damaged (%s); restored as far as possible",
                record["task_id"],
                stored.damaged,
            )
        task = self._hosted(record["task_id"], record["agent"], record["input"], record["origin"])
        task.created_at = record["created_at"]
        task.started_at = record["started_at"]
        task.finished_at = record["finished_at"]
        task.damaged = stored.damaged
        task.parent_id = record.get("parent_id")
        task.forked_at_seq = record.get("forked_at_seq")
        task.fork_kind = record.get("fork_kind")
        task.resumed_by = record.get("resumed_by")
        task.budget = record.get("budget")
        task.imported_from = record.get("imported_from")
        task.tokens_in = int(record.get("tokens_in") or 0)
        task.tokens_out = int(record.get("tokens_out") or 0)
        cost = record.get("cost")
        task.cost = float(cost) if isinstance(cost, int | float) else None
        task._priced = task.cost is not None or not (task.tokens_in or task.tokens_out)
        # An empty log at the stored end; what came before is read from the history.
        task.log.restore(stored.last_seq + 1, [])
        task._history_first = stored.last_seq + 1 if stored.first_seq is None else stored.first_seq
        task.on_finish = self._remember_finished
        task.history_incomplete_from = gap = stored.history_gap
        untold = gap is not None and stored.last_seq < gap  # its log does not say so yet
        status = TaskStatus(record["status"])
        if status.finished:
            task.status = status
            task.result = record["result"]
            if untold:
                task._say_history_incomplete()
            task._done.set()
        else:
            if untold:
                task._say_history_incomplete()
            # It was running (or waiting, or paused) when the server stopped: say so,
            # once, in its own log; a call that waited for a decision stays in the record.
            waiting = [p for p in record.get("pending_approvals") or [] if isinstance(p, dict)]
            task.control.pending = {str(p.get("call_id")): p for p in waiting}
            task.status = TaskStatus.RUNNING
            task.interrupt(protocol.ErrorCode.SERVER_RESTARTED, was=status)
        self._tasks[task.task_id] = task
        if task.log_in_memory:  # the result just written for an interrupted run
            self._remember_finished(task)

    def apply_retention(self, max_age_seconds: float | None, max_count: int | None) -> int:
        """Forget finished tasks older than ``max_age_seconds`` or beyond the newest
        ``max_count``, on disk too. Returns how many went."""
        now = time.time()
        finished = sorted(
            (t for t in self._tasks.values() if t.finished),
            key=lambda t: t.created_at,
            reverse=True,
        )
        doomed = [
            task
            for index, task in enumerate(finished)
            if (max_count is not None and index >= max_count)
            or (max_age_seconds is not None and now - task.created_at > max_age_seconds)
        ]
        for task in doomed:
            self.delete(task.task_id)
        return len(doomed)

    def create_task(
        self, agent_name: str, user_input: str, budget: dict[str, Any] | None = None
    ) -> Task:
        """Create and start a run of a registered agent (UnknownAgentError if none);
        ``budget`` (protocol.BudgetData) replaces the agent's own."""
        agent = self.agents.get(agent_name)
        limits = Budget.parse(budget) or agent.budget_limits
        task = self._new_task(agent.name, user_input, origin="server")
        task.budget = limits.to_dict() if limits is not None else None
        task.save()
        task.start(
            lambda token: agent.stream(user_input, token, control=task.control.run, budget=limits)
        )
        return task

    def new_task(self, agent_name: str, user_input: str, origin: str = "server") -> Task:
        """A task not started yet (a fork or a continuation fills it, then starts it)."""
        return self._new_task(agent_name, user_input, origin=origin)

    def run_source(
        self, agent_name: str, user_input: str, source: EventSource, origin: str = "server"
    ) -> Task:
        """Create a task that runs ``source`` (any event stream) on this event loop."""
        task = self._new_task(agent_name, user_input, origin=origin)
        task.start(source)
        return task

    def create_external_task(self, agent_name: str, user_input: str, origin: str) -> Task:
        """A task whose events are published from elsewhere (a kernel), not run here.

        Its ``publish_secret`` goes only to the creator: only it may publish.
        """
        task = self._new_task(agent_name, user_input, origin=origin)
        task.status = TaskStatus.RUNNING
        task.started_at = time.time()
        task.publish_secret = secrets.token_urlsafe(32)
        task.control.external = True  # its decisions go to the kernel
        asyncio.get_running_loop().call_later(
            self.limits.publisher_connect_timeout, task._publisher_never_came
        )
        return task

    def running_count(self) -> int:
        # Mirrors of runs elsewhere (a shared backend) run on their workers, not here.
        return sum(1 for t in self._tasks.values() if not t.finished and t.remote is None)

    def forget(self, task_id: str) -> None:
        """Let go of a task that never got going (its shared record could not be
        written): no cancellation, nothing stored."""
        self._tasks.pop(task_id, None)

    def host(self, task: Task) -> None:
        """Hold a task made elsewhere (a mirror of a shared backend's task) as any other:
        listed, watched, evicted once finished and old."""
        self._evict_finished()
        task.on_finish = self._task_finished
        self._tasks[task.task_id] = task

    def _new_task(self, agent: str, user_input: str, origin: str) -> Task:
        running = self.running_count()
        if running >= self.limits.max_running_tasks:
            raise TooManyRunningTasksError(
                f"{running} tasks are running, the most this server allows "
                "(max_running_tasks); try again when one has ended."
            )
        self._evict_finished()
        task_id = self.fresh_task_id()
        task = self._hosted(task_id, agent, user_input, origin)
        task.on_finish = self._task_finished
        self._tasks[task_id] = task
        task.save()
        self._trim_cache()
        return task

    def _task_finished(self, task: Task) -> None:
        self._remember_finished(task)
        for listener in list(self.finish_listeners):
            try:
                listener(task)
            except Exception:  # a listener's bug never breaks the end of a run
                log.exception("agentkit: a finish listener failed for task %s", task.task_id)

    def _remember_finished(self, task: Task) -> None:
        """A task ended: its log stays in memory among the recent ones, the oldest of
        which go once they are on disk."""
        if self.store is None or task.task_id not in self._tasks:
            return  # without a history, memory is the only copy
        self._cached[task.task_id] = task
        self._cached.move_to_end(task.task_id)
        self._trim_cache()

    def _trim_cache(self) -> None:
        limits = self.limits
        if not self._cached:
            return
        held = sum(t.log.held_bytes for t in self._cached.values())
        store = self.store
        for task_id, task in list(self._cached.items()):
            if len(self._cached) <= limits.max_cached_logs and held <= limits.max_cached_log_bytes:
                break
            if store is None or not store.durable(task._ticket):
                continue  # not on disk yet (or the disk refuses it): memory keeps it
            if task._tail_in_memory:
                continue  # the history stops before its end: memory has the rest
            held -= task.log.held_bytes
            task.forget_log()
            del self._cached[task_id]

    def logs_in_memory(self) -> int:
        return sum(1 for task in self._tasks.values() if task.log_in_memory)

    def history_status(self) -> dict[str, Any]:
        """What ``GET status`` says of the history (see ``protocol.HistoryStatus``)."""
        damaged = [task.task_id for task in self._tasks.values() if task.damaged]
        if self.store is None:
            base: dict[str, Any] = {
                "state": protocol.HistoryState.OFF.value,
                "path": None,
                "error": None,
                "pending": 0,
                "pending_bytes": 0,
                "max_pending_bytes": 0,
                "dropped_events": 0,
                "warnings": [],
            }
        else:
            base = self.store.status()
        incomplete = [t.task_id for t in self._tasks.values() if t.history_incomplete_from]
        return {
            **base,
            "incomplete_tasks": incomplete,
            "damaged_tasks": damaged,
            "skipped_records": self.skipped_records,
        }

    def _evict_finished(self) -> None:
        excess = len(self._tasks) - self.limits.max_tasks + 1
        if excess <= 0:
            return
        for task in sorted(
            (t for t in self._tasks.values() if t.finished), key=lambda t: t.created_at
        )[:excess]:
            self.delete(task.task_id)

    # -- runs imported from a notebook (tasks/notebook_runs.py) --------------------------

    def fresh_task_id(self) -> str:
        return secrets.token_hex(8)

    def id_is_free(self, task_id: str) -> bool:
        """No task has ``task_id``, and none had it deleted in this process (the store
        drops whatever comes for a deleted id: deleted stays deleted)."""
        return task_id not in self._tasks and not (
            self.store is not None and self.store.was_deleted(task_id)
        )

    def _hosted(self, task_id: str, agent: str, user_input: str, origin: str) -> Task:
        """A Task with this hub's limits, history, redaction and whole-event keeper."""
        return Task(
            task_id,
            agent,
            user_input,
            self.limits,
            origin=origin,
            store=self.store,
            redact=self.redact,
            wholes=self.wholes,
        )

    def imported_task(self, task_id: str, agent: str, user_input: str, origin: str) -> Task:
        """A task for a run read from elsewhere, not held yet (``finish_imported``)."""
        return self._hosted(task_id, agent, user_input, origin)

    def finish_imported(
        self, task: Task, messages: list[dict[str, Any]], status: TaskStatus
    ) -> None:
        """Log the run's messages (seq 1, 2, ... already theirs; the last the result),
        end it ``status`` and hold it as any finished task: stored, listed, replayed."""
        self._evict_finished()
        entry = None
        for message in messages:
            entry = task._append(protocol.dumps(message))
        assert entry is not None
        task.status = status
        # As logged (redacted, maybe cut), as Task.finish keeps it.
        task.result = json.loads(entry.data)["data"]
        task._done.set()
        task.on_finish = self._remember_finished
        self._tasks[task.task_id] = task
        task.save()
        self._remember_finished(task)

    def get(self, task_id: str) -> Task:
        try:
            task = self._tasks[task_id]
        except KeyError:
            raise UnknownTaskError(task_id) from None
        if task_id in self._cached:
            self._cached.move_to_end(task_id)  # recently used: kept longest
        return task

    def all(self) -> list[Task]:
        return sorted(self._tasks.values(), key=lambda t: t.created_at)

    def cancel(self, task_id: str, reason: str | None = None) -> Task:
        task = self.get(task_id)
        if task.finished:
            raise TaskFinishedError(f"task {task_id} already {task.status.value}")
        task.cancel(reason)
        return task

    def delete(self, task_id: str) -> None:
        task = self.get(task_id)
        task.cancel("deleted")
        # What the run still does (its cancelled step, its record) must not bring the
        # task back on disk: deleted stays deleted, also after a restart.
        task.detach()
        for sub in list(task._subscribers):
            sub.drop(protocol.ErrorCode.UNKNOWN_TASK)
        del self._tasks[task_id]
        self._cached.pop(task_id, None)
        self.wholes.forget(task_id)
        if self.store is not None:
            self.store.delete_task(task_id)

    async def shutdown(self) -> None:
        await asyncio.gather(
            *(t.stop("server shutting down") for t in self._tasks.values() if not t.finished)
        )
        if self.store is not None:
            self.store.close()
