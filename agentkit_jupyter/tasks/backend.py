"""Where tasks live, as interfaces: the registry, the event logs, control, the work queue.

The hub already does all four in one process: ``Task.to_dict()`` records saved by
``TaskStore`` (the registry), ``EventLog`` plus the store's events table (the logs),
``TaskControl`` forwarding numbered commands to whoever runs the run (control), and
``create_task`` starting the run on its own loop (no queue). This module names what
the hub relies on, so that a second implementation (``redis_backend.py``: Redis
Streams) can hold tasks shared by several servers and workers.

The default implementation stays the in-process ``EventLog`` + ``TaskStore``;
``memory_backend.py`` is the same semantics behind these interfaces (the reference
the contract tests run against, beside Redis). A server on a shared backend uses
them through ``shared.py`` (its tasks) and ``worker.py`` (runs); the hub itself
stays in-process (see docs/scale-out.md).

Every method is a coroutine: an implementation may be across a network. A backend
that cannot be reached raises :class:`BackendUnavailableError` within a bounded time,
never hangs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pydantic

from ..protocol import ApproveMessage, CancelMessage, ControlMessage, RejectMessage
from .log import LogEntry

# What a viewer may ask of a run, as the task WebSocket parses it: cancel, approve,
# reject, pause, resume.
RunCommand = CancelMessage | ControlMessage
_command_adapter: pydantic.TypeAdapter[RunCommand] = pydantic.TypeAdapter(RunCommand)

# Retention of finished tasks, as the SQLite history's (AgentKitExtension
# retention_max_age_days / retention_max_count defaults, applied by
# TaskHub.apply_retention). Events of a task are not capped there: all are kept
# until the task goes.
RETENTION_MAX_AGE_SECONDS = 30 * 86400.0
RETENTION_MAX_COUNT = 1000
# Commands kept per task for a reconnecting runner (tasks/control.py FORWARDED_KEPT).
CONTROL_KEPT = 256


# How long a deleted task's id stays refused (its run's late writes with it).
DELETED_KEPT_SECONDS = 7 * 24 * 3600


class BackendError(RuntimeError):
    """Base of what a backend raises."""


class BackendUnavailableError(BackendError):
    """The backend cannot be reached (down, a network cut, a timeout): nothing was
    done, or the caller cannot know; a retry with the same arguments is safe for every
    method documented as idempotent."""


class DuplicateSeqError(BackendError):
    """An append of a ``seq`` the log already holds: nothing was written."""

    def __init__(self, task_id: str, seq: int) -> None:
        super().__init__(f"task {task_id}: event {seq} is already logged")
        self.task_id = task_id
        self.seq = seq


class SeqGapError(BackendError):
    """An append that would leave a gap (``seq`` beyond the last one + 1): refused."""

    def __init__(self, task_id: str, seq: int, last_seq: int) -> None:
        super().__init__(f"task {task_id}: event {seq} after {last_seq} would leave a gap")
        self.task_id = task_id
        self.seq = seq
        self.last_seq = last_seq


class StaleWriterError(BackendError):
    """An append by a writer whose fencing token is older than the task's (a worker
    that lost its lease): refused, nothing written."""

    def __init__(self, task_id: str, writer: int, current: int) -> None:
        super().__init__(f"task {task_id}: writer {writer} was fenced off by writer {current}")
        self.task_id = task_id
        self.writer = writer
        self.current = current


class EventsTrimmedError(BackendError):
    """A read from before the oldest event kept (trimmed): never a silent gap."""

    def __init__(self, task_id: str, after: int, first_seq: int) -> None:
        super().__init__(
            f"task {task_id}: events after {after} were trimmed; the oldest kept is {first_seq}"
        )
        self.task_id = task_id
        self.after = after
        self.first_seq = first_seq


class TaskDeletedError(BackendError):
    """The task was deleted: nothing more is logged or sent for it (a late write of its
    run would otherwise bring back a stream nobody lists or deletes)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} was deleted")
        self.task_id = task_id


class TaskExistsError(BackendError):
    """A record with that task id exists already."""


class CallDecidedError(BackendError):
    """An approve or reject of a tool call that an earlier command decided already
    (from any server): the first decision wins."""

    def __init__(self, task_id: str, call_id: str, number: int) -> None:
        super().__init__(f"task {task_id}: call {call_id!r} was decided by command {number}")
        self.task_id = task_id
        self.call_id = call_id
        self.number = number


@dataclass(frozen=True, slots=True)
class ListCursor:
    """Where a page of the task list ended: the last record's creation time and id."""

    created_at: float
    task_id: str


@dataclass(frozen=True, slots=True)
class RecordPage:
    records: list[dict[str, Any]]
    # None: that was the last page.
    next: ListCursor | None


class TaskRegistry(Protocol):
    """Task records (``Task.to_dict()``, JSON values), listed by creation time."""

    async def create(self, record: dict[str, Any]) -> None:
        """Add ``record`` (it has ``task_id`` and ``created_at``), atomically with its
        place in the list. TaskExistsError if the id is taken: a retry after
        BackendUnavailableError that did land says so (the record is there)."""
        ...

    async def get(self, task_id: str) -> dict[str, Any] | None:
        """The record as last updated, or None (never created, or deleted)."""
        ...

    async def update(self, task_id: str, fields: dict[str, Any]) -> bool:
        """Set ``fields`` (status, times, result, ...) of an existing record, all at
        once (a reader sees all of them or none). False if there is no such record
        (deleted meanwhile): an update never brings a deleted task back. Idempotent."""
        ...

    async def claim(self, task_id: str, field: str, value: Any) -> Any:
        """Set ``field`` to ``value`` unless it already holds one (not None), in one
        step: of two claims exactly one wins (``resumed_by``: one continuation). The
        field's value after: ``value`` if this claim won, the winner's otherwise; None
        if there is no such record."""
        ...

    async def page(self, limit: int = 100, after: ListCursor | None = None) -> RecordPage:
        """At most ``limit`` records, oldest first, strictly after ``after``. Paging
        through sees each record that existed throughout exactly once (ties in
        ``created_at`` are ordered by task id)."""
        ...

    async def delete(self, task_id: str) -> None:
        """Forget the task: record, list entry, events, control. Idempotent. Deleted
        stays deleted: for ``DELETED_KEPT_SECONDS`` its id cannot be created again and
        appends and commands for it raise TaskDeletedError."""
        ...

    async def known(self, task_id: str) -> bool:
        """A record has this id, or had it and was deleted (within
        ``DELETED_KEPT_SECONDS``): the id is not free for a new task."""
        ...

    async def apply_retention(
        self,
        max_age_seconds: float | None = RETENTION_MAX_AGE_SECONDS,
        max_count: int | None = RETENTION_MAX_COUNT,
        now: float | None = None,
    ) -> list[str]:
        """Delete finished tasks created more than ``max_age_seconds`` ago or beyond
        the newest ``max_count`` finished ones (TaskHub.apply_retention's rule). Tasks
        not finished are never deleted. Returns the ids deleted."""
        ...


class EventLogBackend(Protocol):
    """Each task's ordered log of wire messages, ``seq`` 1, 2, 3, ...

    Guarantees: entries are stored in ``seq`` order with no gap and no duplicate
    (an append is refused rather than break that); a read returns contiguous
    entries; whoever reads after ``N`` sees ``N + 1`` first or an error
    (:class:`EventsTrimmedError`), never a later one silently.
    """

    async def append(self, task_id: str, seq: int, data: bytes, writer: int | None = None) -> None:
        """Log message ``seq`` (``data`` is its UTF-8 JSON). ``seq`` must be the last
        one + 1 (1 for a new log): DuplicateSeqError if it is logged already (so a
        retry of an append that landed is harmless), SeqGapError if beyond. Of
        concurrent appends of one ``seq``, exactly one succeeds. With ``writer`` (a
        fencing token, see :meth:`fence`): StaleWriterError if the task's token is
        higher, checked first. Without it, no fencing (one writer, one process)."""
        ...

    async def append_many(
        self, task_id: str, first_seq: int, data: Sequence[bytes], writer: int | None = None
    ) -> None:
        """Messages ``first_seq``, ``first_seq + 1``, ... in one round trip, all or
        none (the same checks as :meth:`append`, on the first)."""
        ...

    async def fence(self, task_id: str, writer: int) -> int:
        """Raise the task's fencing token to ``writer`` (a worker's lease
        ``deliveries``, which grows with each take-over), atomically; returns the
        token in force (``writer``, or a higher one already set: then this writer is
        stale itself). Appends with a lower token are refused from then on."""
        ...

    async def read_after(
        self, task_id: str, after: int, limit: int = 500, block: float | None = None
    ) -> list[LogEntry]:
        """At most ``limit`` entries with ``seq > after``, oldest first, contiguous
        from ``after + 1``. With none yet and ``block`` seconds given, waits that
        long for the next append; ``[]`` at the timeout (or at once without
        ``block``). EventsTrimmedError if ``after + 1`` is no longer kept."""
        ...

    async def keep_whole(self, task_id: str, seq: int, data: bytes) -> None:
        """Keep the whole text of message ``seq``, which is logged cut (beyond
        ``max_event_bytes``), until the task is deleted. TaskDeletedError."""
        ...

    async def read_whole(self, task_id: str, seq: int) -> bytes | None:
        """The whole text kept for message ``seq``, or None."""
        ...

    async def read_many(
        self, after: Mapping[str, int], limit: int = 500, block: float | None = None
    ) -> dict[str, list[LogEntry]]:
        """``read_after`` of many tasks in one round trip (one blocking read for all a
        process watches: one connection, not one per task): the tasks that have
        entries, each with up to ``limit``, contiguous from its ``after + 1``; a task
        whose entries after its ``after`` were trimmed starts at its oldest kept."""
        ...

    async def last_seq(self, task_id: str) -> int:
        """The newest ``seq`` logged (0: none)."""
        ...

    async def first_seq(self, task_id: str) -> int:
        """The oldest ``seq`` still kept (``last_seq + 1`` when none is)."""
        ...

    async def trim(self, task_id: str, keep_last: int) -> int:
        """Keep at most the newest ``keep_last`` entries (at least one); returns how
        many were dropped. Readers from before them get EventsTrimmedError."""
        ...


@dataclass(frozen=True, slots=True)
class ControlEnvelope:
    """One command to a run, numbered per task from 1 in the order it was accepted."""

    number: int
    command: RunCommand
    by: str | None
    # The sender's own id of the command: a resend with it is the same command.
    key: str | None = None


def command_to_json(command: RunCommand) -> dict[str, Any]:
    return command.model_dump(mode="json")


def decided_call(command: RunCommand) -> str | None:
    """The tool call an approve or reject decides (None for other commands)."""
    return command.call_id if isinstance(command, ApproveMessage | RejectMessage) else None


def command_from_json(data: Any) -> RunCommand:
    """A command as stored; pydantic.ValidationError if it is not one."""
    return _command_adapter.validate_python(data)


class ControlChannel(Protocol):
    """Commands to whoever runs a task, wherever it runs.

    Delivery is at least once and in order: a runner reads the commands after the
    number it last applied, so after a crash or reconnect it gets the rest again and
    applies each number once (skipping those up to its own last). A sender that
    retries with the same ``key`` makes no second command.
    """

    async def send(
        self, task_id: str, command: RunCommand, by: str | None, key: str | None = None
    ) -> int:
        """Accept ``command``; returns its number. With ``key``: a command already
        accepted under that key for this task is not added again, its number is
        returned. An approve or reject claims its call in the same step: a second
        decision on the call (another key, another server) raises CallDecidedError
        and is not added."""
        ...

    async def receive_many(
        self, after: Mapping[str, int], limit: int = 100, block: float | None = None
    ) -> dict[str, list[ControlEnvelope]]:
        """``receive`` of many tasks in one round trip (a worker's runs: one blocking
        read for all of them): the tasks that have commands after their number."""
        ...

    async def receive(
        self, task_id: str, after: int, limit: int = 100, block: float | None = None
    ) -> list[ControlEnvelope]:
        """Commands numbered above ``after``, in order; waits up to ``block`` seconds
        for one when there are none (``[]`` at the timeout). At least the newest
        ``CONTROL_KEPT`` commands of a task are kept; older ones may be gone."""
        ...


@dataclass(frozen=True, slots=True)
class Lease:
    """A task taken from the queue by one worker, until it is done or the lease lapses."""

    task_id: str
    # The queue entry's id: what done() and renew() name.
    entry_id: str
    worker: str
    # 1 for a first delivery; more when a worker died (or stalled) holding it.
    deliveries: int


class WorkQueue(Protocol):
    """Tasks waiting for a worker. A taken task is leased: the worker renews the lease
    while it runs and says done at the end; a lease not renewed within ``lease_seconds``
    (the worker died or hung) lets another worker take the task over, with
    ``deliveries`` counting the takes. A task is never with two workers at once on a
    renewed lease; it may be run twice only when a lease lapsed (the new worker
    resumes from the task's log, see docs/scale-out.md). A worker fences the task's
    log with its lease (``EventLogBackend.fence(task_id, lease.deliveries)``), so the
    one that lost it cannot append any more."""

    async def enqueue(self, task_id: str) -> str:
        """Queue ``task_id``; returns the entry id."""
        ...

    async def take(self, worker: str, block: float | None = None) -> Lease | None:
        """A task whose lease lapsed first, else the next queued one; waits up to
        ``block`` seconds for one; None at the timeout."""
        ...

    async def renew(self, lease: Lease) -> bool:
        """Restart the lease's clock; False if the worker lost it (another took the
        task over): the worker must stop running it."""
        ...

    async def done(self, lease: Lease) -> bool:
        """The task ended (whatever its status): it leaves the queue. False if the
        lease was lost meanwhile (the new holder owns the task now)."""
        ...


class TaskBackend(TaskRegistry, EventLogBackend, ControlChannel, Protocol):
    """All of it, as one object shares one connection pool."""

    async def close(self) -> None: ...
