"""A worker: runs tasks taken from a shared backend's queue (docs/scale-out.md).

Each task taken is run by an ordinary hub ``Task`` in this process (the engine and
the hub's result, budget and human-in-the-loop logic, unchanged), whose ``sink`` is a
:class:`BackendWriter`: every entry it logs goes to the task's stream (batched: what
piles up during one round trip goes in the next, all or none), every record it saves
to the task's hash. Commands come from the task's control stream (a blocking read,
so a cancel is applied as soon as it is sent); the lease is renewed every third of
its length; the log is fenced with the lease's ``deliveries``, so a worker that lost
the task cannot append to it any more.

A task taken over from a worker that died (``deliveries > 1``) is not run again: it
ends ``interrupted`` (``worker_lost``), its events up to then kept, and its
continuation (``resumed_by``) is queued: a new task that copies its completed steps
and goes on from the last one (``core.replay.plan_resume``, as ``POST
tasks/{id}/resume``), unless it waited for a person (it stays interrupted with its
pending calls, as after a server restart) or was taken over more than
``MAX_DELIVERIES`` times. One whose log is still empty (its worker died before
logging anything) is run from the start.

The Jupyter server's embedded worker (``run_tasks=True``) is this class too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from typing import Any

import agentkit_jupyter.protocol as protocol

from ..core import AgentPool
from ..core.control import ControlError
from ..core.costs import Budget
from ..core.replay import plan_resume
from ..protocol import CancelMessage, PauseMessage, TaskStatus
from .backend import (
    BackendError,
    BackendUnavailableError,
    ControlEnvelope,
    DuplicateSeqError,
    Lease,
    StaleWriterError,
    TaskBackend,
    TaskDeletedError,
    TaskExistsError,
    WorkQueue,
)
from .bounds import truncation_of
from .hub import HubLimits, Task, TaskFinishedError
from .log import LogEntry
from .multiread import ManyStreams
from .runs import (
    FORK_EDIT_FIELD,
    ForkError,
    InvalidForkArgumentsError,
    fork_plan,
    step_events,
)

log = logging.getLogger(__name__)

# The most entries one append carries (Redis takes them in one script call).
APPEND_BATCH = 256
# How long a failed append waits before it is tried again (same seq: safe).
RETRY_SECONDS = 0.5
# How long a control read blocks (a cancel arrives at once; this only bounds a quiet one).
CONTROL_BLOCK_SECONDS = 2.0
# What a run may log while the backend cannot take it (Redis away) before it is
# cancelled: its events wait in memory, bounded, and none is dropped.
MAX_UNSENT_EVENTS = 20_000
MAX_UNSENT_BYTES = 64 * 1024 * 1024
BACKEND_AWAY_REASON = "the task backend (Redis) was unreachable for too long"
# After a stop's grace period: how long a run may take to reach the end of its step
# (a pause), then how long handing it over may take.
PAUSE_WAIT_SECONDS = 5.0
HAND_OVER_SECONDS = 10.0
HAND_OVER_REASON = "its worker is shutting down; it goes on in a continuation"
# A task taken over more than this many times ends without a continuation: it kills
# workers.
MAX_DELIVERIES = 5
# A run's log kept in a worker's memory (the backend has all of it).
WORKER_EVENTS_IN_MEMORY = 1_000
WORKER_BYTES_IN_MEMORY = 4 * 1024 * 1024


def without_subscribers(record: dict[str, Any]) -> dict[str, Any]:
    # A server's count of its own viewers: not the task's, and not shared.
    return {k: v for k, v in record.items() if k != "subscribers"}


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaseLostError(RuntimeError):
    """Another worker holds the task now (the lease lapsed, or the log was fenced)."""


class BackendWriter:
    """A task's sink onto the backend: its entries and records, in order, batched.

    Everything is written from one coroutine; what the run logs meanwhile waits in
    memory (its own ``EventLog`` holds it too). A write that fails for want of the
    backend is retried with the same ``seq`` (a retry that had landed is refused as a
    duplicate, which means done); a stale fencing token ends it (``lost``).
    """

    def __init__(
        self,
        backend: TaskBackend,
        task_id: str,
        writer: int | None,
        create: dict[str, Any] | None = None,
    ) -> None:
        """``writer``: the fencing token (None: not fenced, a task with one writer);
        ``create``: the record to create before anything else (a task that is not on
        the backend yet)."""
        self.backend = backend
        self.task_id = task_id
        self.writer = writer
        self._entries: list[LogEntry] = []
        self._record: dict[str, Any] | None = None
        self._wholes: list[tuple[int, str]] = []
        self._unsent_bytes = 0
        self.overflowed = False
        # Called once when the unsent entries pass the bound (the worker cancels the run).
        self.on_overflow: Callable[[], object] | None = None
        self._create = without_subscribers(create) if create is not None else None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        if self._create is None:
            self._idle.set()
        else:
            self._wake.set()
        self.lost: LeaseLostError | None = None
        self._job = asyncio.get_running_loop().create_task(self._write())

    def appended(self, entry: LogEntry) -> None:
        self._entries.append(entry)
        self._unsent_bytes += entry.size
        if not self.overflowed and (
            len(self._entries) > MAX_UNSENT_EVENTS or self._unsent_bytes > MAX_UNSENT_BYTES
        ):
            # The backend has been away this long: stop the run rather than hold more
            # (what it logs while stopping still fits: the bound is checked once).
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
        self._idle.clear()
        self._wake.set()

    def whole(self, seq: int, text: str) -> None:
        # Written before the entry that is its cut copy: whoever reads that finds it.
        self._wholes.append((seq, text))
        self._idle.clear()
        self._wake.set()

    def saved(self, record: dict[str, Any]) -> None:
        # Only the newest record matters: a newer save replaces one not written yet.
        self._record = without_subscribers(record)
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Until everything given so far is written (or the task was lost)."""
        await self._idle.wait()

    async def close(self) -> None:
        self._job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._job

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending() and self.lost is None:
                try:
                    if self._create is not None:
                        with contextlib.suppress(TaskExistsError):  # a retry that landed
                            await self.backend.create(self._create)
                        self._create = None
                        continue
                    if self._wholes:
                        seq, text = self._wholes[0]
                        await self.backend.keep_whole(self.task_id, seq, text.encode())
                        del self._wholes[0]
                        continue
                    if self._entries:
                        batch = self._entries[:APPEND_BATCH]
                        await self._append(batch)
                        del self._entries[: len(batch)]
                        self._unsent_bytes -= sum(e.size for e in batch)
                        continue  # events before the record that follows them
                    record, self._record = self._record, None
                    assert record is not None
                    try:
                        await self.backend.update(self.task_id, record)
                    except BaseException:
                        if self._record is None:
                            self._record = record
                        raise
                except (StaleWriterError, TaskDeletedError) as exc:
                    self.lost = LeaseLostError(str(exc))
                except BackendUnavailableError:
                    log.warning("agentkit: task %s: Redis is away; retrying", self.task_id)
                    await asyncio.sleep(RETRY_SECONDS)
                except BackendError as exc:
                    # A log this writer cannot continue (a gap): stop the run, never a
                    # silent hang; the next holder of the lease ends it.
                    log.exception("agentkit: task %s: the log cannot be written", self.task_id)
                    self.lost = LeaseLostError(str(exc))
            if self.lost is not None:
                self._entries.clear()
                self._unsent_bytes = 0
                self._wholes.clear()
                self._record = self._create = None
            if not self._pending():
                self._idle.set()

    def _pending(self) -> bool:
        return (
            self._create is not None
            or bool(self._wholes or self._entries)
            or self._record is not None
        )

    async def _append(self, batch: list[LogEntry]) -> None:
        try:
            await self.backend.append_many(
                self.task_id, batch[0].seq, [e.data for e in batch], writer=self.writer
            )
        except DuplicateSeqError:
            # An earlier try landed (its answer was lost). It was all or none, but it
            # may have been a shorter batch (more piled up since): send what is left.
            last = await self.backend.last_seq(self.task_id)
            rest = [entry for entry in batch if entry.seq > last]
            if rest:
                await self._append(rest)


class Worker:
    """Takes tasks from ``queue`` and runs them (see the module's docstring)."""

    def __init__(
        self,
        backend: TaskBackend,
        queue: WorkQueue,
        agents: AgentPool,
        name: str | None = None,
        limits: HubLimits | None = None,
        lease_seconds: float = 30.0,
        max_running: int | None = None,
    ) -> None:
        self.backend = backend
        self.queue = queue
        self.agents = agents
        self.name = name or default_worker_name()
        # A worker's own copy of a log only feeds its writer: a small window will do.
        self.limits = limits or HubLimits(
            max_events_in_memory=WORKER_EVENTS_IN_MEMORY,
            max_bytes_in_memory=WORKER_BYTES_IN_MEMORY,
        )
        self.lease_seconds = lease_seconds
        self.max_running = max_running or self.limits.max_running_tasks
        self.running: dict[str, Task] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.max_running)
        self._loop_job: asyncio.Task[None] | None = None
        self._handing_over: set[str] = set()
        # One read in flight for the control streams of all its runs (tasks/multiread.py).
        self._control = command_streams(backend, self.running.get)

    def start(self) -> None:
        self._loop_job = asyncio.get_running_loop().create_task(
            self.serve(), name=f"agentkit-worker-{self.name}"
        )

    async def serve(self) -> None:
        """Take and run tasks until cancelled."""
        while True:
            await self._slots.acquire()
            try:
                lease = await self.queue.take(self.name, block=1.0)
            except BackendUnavailableError:
                self._slots.release()
                log.warning("agentkit: worker %s cannot reach Redis; retrying", self.name)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            except BaseException:
                self._slots.release()
                raise
            if lease is None:
                self._slots.release()
                continue
            job = asyncio.get_running_loop().create_task(self._handle(lease))
            self._runs.add(job)
            job.add_done_callback(self._run_done)

    def _run_done(self, job: asyncio.Task[None]) -> None:
        self._runs.discard(job)
        self._slots.release()
        if not job.cancelled() and job.exception() is not None:
            log.error("agentkit: worker %s: a run failed", self.name, exc_info=job.exception())

    async def stop(self, grace_seconds: float = 0.0) -> None:
        """Stop taking tasks. With ``grace_seconds``: the runs have that long to
        finish; each one still going is then handed over: stopped, ended
        ``interrupted`` (``worker_lost``) with its events kept, and its continuation
        queued at once for another worker (no wait for the lease), as a take-over
        would. Without: the runs stop unlogged and their leases lapse (as a crash)."""
        if self._loop_job is not None:
            self._loop_job.cancel()
            await asyncio.gather(self._loop_job, return_exceptions=True)
        if grace_seconds > 0 and self._runs:
            await asyncio.wait(set(self._runs), timeout=grace_seconds)
            await asyncio.gather(
                *(self._pause_then_stop(task) for task in list(self.running.values()))
            )
            if self._runs:
                await asyncio.wait(set(self._runs), timeout=HAND_OVER_SECONDS)
        for job in list(self._runs):
            job.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        await self._control.close()

    async def _pause_then_stop(self, task: Task) -> None:
        """Stop at a step's end if it comes soon (a call in flight finishes, so the
        continuation has no call to ask about again), else where it is."""
        if task.finished or task.sink is None:
            return
        with contextlib.suppress(ControlError, TaskFinishedError):
            task.command(PauseMessage(type="pause", reason=HAND_OVER_REASON), None)
        deadline = asyncio.get_running_loop().time() + PAUSE_WAIT_SECONDS
        while task.status is not TaskStatus.PAUSED and not task.finished:
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.01)
        self._stop_for_hand_over(task)

    def _stop_for_hand_over(self, task: Task) -> None:
        """Stop the run without logging how (its handler then hands it over)."""
        if task.finished or task.sink is None:
            return
        self._handing_over.add(task.task_id)  # until its handler is done
        task.sink = None
        if task._runner is not None:
            task._runner.cancel()
        task._done.set()

    async def _handle(self, lease: Lease) -> None:
        record = await self.backend.get(lease.task_id)
        if record is None:  # deleted meanwhile
            await self.queue.done(lease)
            return
        token = await self.backend.fence(lease.task_id, lease.deliveries)
        if token > lease.deliveries:  # a later holder fenced it already
            return
        writer = BackendWriter(self.backend, lease.task_id, token)
        task = self._task_for(record)
        task.sink = writer
        writer.on_overflow = lambda: task.cancel(BACKEND_AWAY_REASON)
        self.running[task.task_id] = task
        renewing = asyncio.get_running_loop().create_task(self._renew(lease, task, writer))
        self._control.watch(task.task_id, 0)
        try:
            if TaskStatus(record.get("status", "queued")).finished:
                pass  # finished before (a worker died between its result and done())
            elif lease.deliveries > MAX_DELIVERIES or (
                lease.deliveries > 1 and await self.backend.last_seq(task.task_id) > 0
            ):
                await self._take_over(task, lease)
            else:
                await self._run(task, record)
                if task.task_id in self._handing_over and writer.lost is None:
                    await self._hand_over(record, lease, writer)
            await writer.drain()
            if writer.lost is None:
                await self.queue.done(lease)
        finally:
            renewing.cancel()
            self._control.forget(task.task_id)
            runner = task._runner
            if runner is not None and not runner.done():
                # Stopped (or lost) mid-run: nothing more reaches the backend, so the
                # next holder of the lease says how it ended (worker_lost).
                task.sink = None
                runner.cancel()
            await asyncio.gather(renewing, *([runner] if runner else []), return_exceptions=True)
            await writer.close()
            self.running.pop(task.task_id, None)
            self._handing_over.discard(task.task_id)

    def _task_for(self, record: dict[str, Any]) -> Task:
        task = Task(
            str(record["task_id"]),
            str(record["agent"]),
            str(record["input"]),
            self.limits,
            origin=str(record.get("origin") or "server"),
        )
        task.created_at = float(record["created_at"])
        task.budget = record.get("budget")
        task.parent_id = record.get("parent_id")
        task.forked_at_seq = record.get("forked_at_seq")
        task.fork_kind = record.get("fork_kind")
        return task

    async def _run(self, task: Task, record: dict[str, Any]) -> None:
        try:
            agent = self.agents.get(task.agent)
        except KeyError:
            task.fail(
                f"This worker has no agent {task.agent!r}.", code=protocol.ErrorCode.UNKNOWN_AGENT
            )
            return
        limits = Budget.parse(task.budget) or agent.budget_limits
        user_input = task.input
        snapshot = None
        if task.parent_id is not None and task.fork_kind is not None:
            # A fork or a continuation: the parent's events read from the backend, the
            # plan made again as the server that queued it made it (tasks/runs.py), the
            # copied steps logged first, then on live from there.
            parent = await self._messages(task.parent_id)
            if task.fork_kind == protocol.ForkKind.RESUME.value:
                plan = plan_resume(user_input, step_events(parent))
            else:
                parent_record = await self.backend.get(task.parent_id) or {}
                raw_edit = record.get(FORK_EDIT_FIELD)
                edit = protocol.ForkEdit.model_validate(raw_edit) if raw_edit else None
                try:
                    plan = fork_plan(
                        agent,
                        str(parent_record.get("input", user_input)),
                        parent,
                        int(task.forked_at_seq or 0),
                        edit,
                    )
                except (ForkError, InvalidForkArgumentsError) as exc:
                    # Checked by the server; only a parent deleted meanwhile gets here.
                    task.fail(
                        f"The fork cannot be made: {exc}", code=protocol.ErrorCode.INVALID_FORK
                    )
                    return
            by_seq = {int(m["seq"]): m for m in parent if m.get("type") == "step"}
            for seq in plan.copied:
                task.copy_in(by_seq[seq])
            user_input, snapshot = plan.user_input, plan.snapshot
        run_input = user_input
        task.start(
            lambda token: agent.stream(
                run_input, token, control=task.control.run, budget=limits, snapshot=snapshot
            )
        )
        # The end of the run, or the lease lost (_renew sets it then, with no result).
        await task._done.wait()

    async def _messages(self, task_id: str) -> list[dict[str, Any]]:
        return await backend_messages(self.backend, task_id)

    async def _hand_over(self, record: dict[str, Any], lease: Lease, writer: BackendWriter) -> None:
        """After a stop for hand-over: what the run logged is written, then the task
        ends as a take-over ends it (from the log on the backend, by a fresh Task, as
        the stopped one logged locally what it did while stopping)."""
        runner = self.running[lease.task_id]._runner
        if runner is not None:
            await asyncio.gather(runner, return_exceptions=True)
        await writer.drain()
        task = self._task_for(record)
        task.sink = writer
        self.running[task.task_id] = task
        await self._take_over(task, lease, who="Its worker, shutting down,")

    async def _take_over(
        self, task: Task, lease: Lease, who: str = "The worker running it"
    ) -> None:
        """The worker that had it died: the log so far stays, the task ends interrupted
        and, unless it waited for a person or keeps killing workers, its continuation
        is queued (or, if it already ended there, its record says so)."""
        messages = await self._messages(task.task_id)
        last = int(messages[-1]["seq"]) if messages else 0
        task.log.restore(last + 1, [])
        if messages and messages[-1].get("type") == "result":
            task.status = TaskStatus(messages[-1]["data"]["status"])
            task.result = messages[-1]["data"]
            task.save()
            return
        for message in messages:
            task.control.observe_wire(message.get("data"))
        task.status = task.control.status()
        if lease.deliveries > MAX_DELIVERIES:
            who = f"The worker ({lease.deliveries} took it over in turn)"
        else:
            if not task.control.pending_list() and task.agent in self.agents:
                # Named in the record before the result, so whoever sees the result
                # finds where the run goes on.
                task.resumed_by = await self._queue_continuation(task, messages)
                await self.backend.update(task.task_id, {"resumed_by": task.resumed_by})
        task.interrupt(protocol.ErrorCode.WORKER_LOST, who=who)

    async def _queue_continuation(self, task: Task, messages: list[dict[str, Any]]) -> str:
        """A new task that goes on from ``task``'s last completed step (as ``POST
        tasks/{id}/resume`` makes one), queued for any worker; its id."""
        steps = [int(m["seq"]) for m in messages if m.get("type") == "step"]
        child = Task(secrets.token_hex(8), task.agent, task.input, self.limits, task.origin)
        child.parent_id = task.task_id
        child.forked_at_seq = steps[-1] if steps else 0
        child.fork_kind = protocol.ForkKind.RESUME.value
        child.budget = task.budget
        await self.backend.create(child.to_dict())
        await self.queue.enqueue(child.task_id)
        return child.task_id

    async def _renew(self, lease: Lease, task: Task, writer: BackendWriter) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                kept = await self.queue.renew(lease)
            except BackendUnavailableError:
                continue  # the lease may lapse meanwhile; the fence keeps us honest
            if not kept or writer.lost is not None:
                # Another worker has it now: stop, and write nothing more (fenced anyway).
                writer.lost = writer.lost or LeaseLostError(task.task_id)
                task.sink = None
                task._done.set()
                if task._runner is not None:
                    task._runner.cancel()
                return


async def backend_messages(backend: TaskBackend, task_id: str) -> list[dict[str, Any]]:
    """Every message of a task's log on the backend, oldest first ([] for none)."""
    messages: list[dict[str, Any]] = []
    after = 0
    while True:
        entries = await backend.read_after(task_id, after, limit=500)
        if not entries:
            return messages
        for entry in entries:
            message = json.loads(entry.data)
            if truncation_of(message) is not None:
                whole = await backend.read_whole(task_id, entry.seq)
                message = json.loads(whole) if whole is not None else message
            messages.append(message)
        after = entries[-1].seq


def command_streams(
    backend: TaskBackend, runs: Callable[[str], Task | None]
) -> ManyStreams[ControlEnvelope]:
    """The control streams of the runs a process runs (a worker's, or a server's that
    writes kernels' runs through), read with one blocking read; ``runs`` finds a run
    by its task id (None: it ended here)."""

    async def receive(
        after: Mapping[str, int], block: float
    ) -> Mapping[str, list[ControlEnvelope]]:
        return await backend.receive_many(after, block=block)

    async def apply(task_id: str, envelopes: list[ControlEnvelope]) -> bool:
        task = runs(task_id)
        if task is None:
            return False
        apply_envelopes(task, envelopes)
        return not task.finished

    return ManyStreams(
        receive,
        apply,
        lambda envelope: envelope.number,
        CONTROL_BLOCK_SECONDS,
        RETRY_SECONDS,
        "task commands",
    )


def apply_envelopes(task: Task, envelopes: list[ControlEnvelope]) -> None:
    """Apply commands of the task's control stream, each once, in order (its runner's
    side of the control path: a worker's, or the server a kernel's run publishes to)."""
    for envelope in envelopes:
        command = envelope.command
        try:
            if isinstance(command, CancelMessage):
                task.cancel(command.reason or "cancelled")
            else:
                task.command(command, envelope.by)
        except (ControlError, TaskFinishedError) as exc:
            log.info(
                "agentkit: task %s: command %d refused: %s", task.task_id, envelope.number, exc
            )


async def close_quietly(backend: TaskBackend) -> None:
    with contextlib.suppress(BackendError, OSError):
        await backend.close()
