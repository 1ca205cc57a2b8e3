"""A server's view of tasks on a shared backend (Redis): create, list, watch, command.

A task on the backend is hosted on every server that is asked about it as a mirror:
an ordinary hub ``Task`` (so ``seq``, replay, lag caps, the heartbeat and every
handler stay as they are) whose log one reader per task and process copies from the
backend's stream (``Task.mirror``), and whose commands (cancel, approve, reject,
pause, resume) go to the backend's control stream, read by the worker that runs it
(tasks/worker.py). A thousand viewers on one server cost one backend reader.

Creating a task writes its record and queues it; any worker (the server's embedded
one or an ``agentkit-jupyter worker``) runs it. Listing reads the backend's records,
so a server sees tasks created through another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import agentkit_jupyter.protocol as protocol

from ..core.control import AlreadyDecidedError
from ..core.costs import Budget
from ..protocol import CancelMessage, ControlMessage, ForkKind, TaskStatus
from .backend import (
    BackendError,
    BackendUnavailableError,
    CallDecidedError,
    EventsTrimmedError,
    TaskBackend,
    TaskDeletedError,
    WorkQueue,
)
from .hub import Task, TaskFinishedError, TaskHub, UnknownTaskError
from .log import EventLog, LogEntry
from .multiread import ManyStreams
from .notebook_runs import ImportedRun, import_runs
from .runs import (
    FORK_EDIT_FIELD,
    AlreadyResumedError,
    check_forkable,
    check_resumable,
    fork_plan,
    last_step_seq,
    new_child,
)
from .worker import BackendWriter, backend_messages, command_streams, without_subscribers

log = logging.getLogger(__name__)

# How long one read of a mirrored task's stream blocks (a quiet task costs one read
# per this long), and the pause before a failed read is tried again.
MIRROR_BLOCK_SECONDS = 5.0
MIRROR_RETRY_SECONDS = 1.0
RECORD_PAGE = 500
# The most entries one read of the mirrored streams brings per task.
MIRROR_BATCH = 500
# A mirror's run times from the record after its result: tries, and the pause between.
RECORD_SETTLE_TRIES = 5
RECORD_SETTLE_SECONDS = 0.2
# How long writing imported runs to the backend may take before the import fails.
IMPORT_WRITE_SECONDS = 30.0


class _Remote:
    """A mirrored task's commands, to its runner through the backend's control stream."""

    def __init__(self, shared: SharedTasks, task_id: str) -> None:
        self._shared = shared
        self._task_id = task_id

    def cancel(self, reason: str | None) -> None:
        self._shared._spawn(self._send_cancel(reason))

    async def _send_cancel(self, reason: str | None) -> None:
        try:
            await self._shared.backend.send(
                self._task_id, CancelMessage(type="cancel", reason=reason), by=None
            )
        except BackendError:
            log.exception("agentkit: the cancel of task %s did not reach Redis", self._task_id)

    async def read_after(self, after: int, limit: int) -> list[LogEntry]:
        try:
            return await self._shared.backend.read_after(self._task_id, after, limit=limit)
        except EventsTrimmedError as exc:
            with contextlib.suppress(KeyError):  # say so to whoever connects next
                self._shared.hub.get(self._task_id).remote_first_seq = exc.first_seq
        except BackendError:
            log.warning("agentkit: task %s: older events unreadable on Redis", self._task_id)
        return []

    async def whole_text(self, seq: int) -> bytes | None:
        return await self._shared.backend.read_whole(self._task_id, seq)

    async def command(self, command: ControlMessage, by: str | None) -> None:
        try:
            await self._shared.backend.send(self._task_id, command, by)
        except CallDecidedError as exc:
            raise AlreadyDecidedError(
                f"Call {exc.call_id!r} was already decided.", exc.call_id
            ) from None
        except TaskDeletedError:
            raise TaskFinishedError(f"task {self._task_id} was deleted") from None


class SharedTasks:
    """Tasks of one hub that live on ``backend`` (see the module's docstring)."""

    def __init__(self, hub: TaskHub, backend: TaskBackend, queue: WorkQueue) -> None:
        self.hub = hub
        self.backend = backend
        self.queue = queue
        # One read in flight for every watched task's log, one for the commands of the
        # runs it writes through (tasks/multiread.py): connections stay few.
        self._logs: ManyStreams[LogEntry] = ManyStreams(
            self._read_logs,
            self._copy_batch,
            lambda entry: entry.seq,
            MIRROR_BLOCK_SECONDS,
            MIRROR_RETRY_SECONDS,
            "task logs",
        )
        self._commands = command_streams(backend, self._hosted)
        self._jobs: set[asyncio.Task[None]] = set()
        self._adopting: dict[str, asyncio.Future[Task | None]] = {}
        # Runs of this server written through to the backend (imports, kernels' runs).
        self._written: set[str] = set()
        self._closed = False

    def _spawn(self, coroutine: Any) -> None:
        job = asyncio.get_running_loop().create_task(coroutine)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def create_task(
        self, agent_name: str, user_input: str, budget: dict[str, Any] | None = None
    ) -> Task:
        """Record and queue a run of ``agent_name`` (checked against this server's
        agents: UnknownAgentError); a worker runs it. BackendUnavailableError: nothing
        is queued and the task is not kept."""
        agent = self.hub.agents.get(agent_name)
        limits = Budget.parse(budget) or agent.budget_limits
        task = self.hub.new_task(agent.name, user_input, origin="server")
        task.budget = limits.to_dict() if limits is not None else None
        await self._queue(task)
        return task

    async def _queue(self, task: Task, extra: dict[str, Any] | None = None) -> None:
        """Record ``task`` on the backend and queue it for a worker; watched here."""
        try:
            await self.backend.create({**task.to_dict(), **(extra or {})})
            await self.queue.enqueue(task.task_id)
        except BaseException:
            self.hub.forget(task.task_id)
            with contextlib.suppress(BackendError):
                await self.backend.delete(task.task_id)
            raise
        self._watch(task)

    # -- runs as data (tasks/runs.py) on the backend --------------------------------------

    async def fork(self, task_id: str, at_seq: int, edit: protocol.ForkEdit | None) -> Task:
        """As ``runs.fork_task``, queued for a worker: the plan is checked here (its
        errors are the same), made again by the worker from the parent's log on the
        backend (the edit goes with the record)."""
        parent = await self._parent(task_id, "fork")
        agent = self.hub.agents.get(parent.agent)  # UnknownAgentError: the agent is gone
        messages = await backend_messages(self.backend, task_id)
        plan = fork_plan(agent, parent.input, messages, at_seq, edit)
        child = new_child(self.hub, parent, plan.user_input, at_seq, ForkKind.FORK)
        extra = {FORK_EDIT_FIELD: edit.model_dump(exclude_none=True)} if edit else None
        await self._queue(child, extra)
        return child

    async def resume(self, task_id: str) -> Task:
        """As ``runs.resume_task``, queued for a worker; of two servers resuming one
        task at once, one makes the continuation and the other says which
        (AlreadyResumedError)."""
        task = await self._parent(task_id, "resume")
        check_resumable(task)
        self.hub.agents.get(task.agent)
        messages = await backend_messages(self.backend, task_id)
        child = new_child(self.hub, task, task.input, last_step_seq(messages), ForkKind.RESUME)
        winner = await self.backend.claim(task_id, "resumed_by", child.task_id)
        if winner != child.task_id:
            self.hub.forget(child.task_id)
            if winner is None:
                raise UnknownTaskError(task_id)
            task.resumed_by = str(winner)
            raise AlreadyResumedError(task_id, task.resumed_by)
        try:
            await self._queue(child)
        except BaseException:
            with contextlib.suppress(BackendError):
                await self.backend.update(task_id, {"resumed_by": None})
            raise
        task.resumed_by = child.task_id
        return child

    async def _parent(self, task_id: str, action: str) -> Task:
        parent = await self.find(task_id)
        if parent is None:
            raise UnknownTaskError(task_id)
        check_forkable(parent, action)
        return parent

    # -- runs of this server on the backend: imports, kernels' runs -----------------------

    async def import_runs(self, runs: list[ImportedRun], source: str | None) -> list[Task]:
        """As ``notebook_runs.import_runs``, each run written to the backend too (ids
        free there as well): all or none."""
        wanted = [str(run.record["task_id"]) for run in runs]
        found = await asyncio.gather(*(self.backend.known(task_id) for task_id in wanted))
        taken = {task_id for task_id, known in zip(wanted, found, strict=True) if known}
        writers: list[BackendWriter] = []

        def write_through(task: Task) -> None:
            task.sink = BackendWriter(self.backend, task.task_id, None, create=task.to_dict())
            writers.append(task.sink)

        tasks = import_runs(self.hub, runs, source, taken, write_through)
        try:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(w.drain() for w in writers)), IMPORT_WRITE_SECONDS
                )
            except TimeoutError:
                raise BackendUnavailableError("the imported runs could not be written") from None
        except BaseException:
            for task in tasks:
                self.hub.delete(task.task_id)
                with contextlib.suppress(BackendError):
                    await self.backend.delete(task.task_id)
            raise
        finally:
            for task in tasks:
                task.sink = None
            await asyncio.gather(*(w.close() for w in writers))
        self._written.update(task.task_id for task in tasks)
        return tasks

    async def share(self, task: Task) -> None:
        """A run this server hosts but does not take from the queue (a kernel's, which
        publishes it here) on the backend too: its record and events written through,
        so every server lists and watches it, and commands from other servers (through
        its control stream) applied here, as a worker applies them."""
        try:  # before anyone can ask for it by id (or it would seem deleted)
            await self.backend.create(without_subscribers(task.to_dict()))
        except BaseException:
            self.hub.delete(task.task_id)
            raise
        writer = BackendWriter(self.backend, task.task_id, None)
        task.sink = writer
        self._written.add(task.task_id)
        self._spawn(self._serve_shared(task, writer))

    async def _serve_shared(self, task: Task, writer: BackendWriter) -> None:
        self._commands.watch(task.task_id, 0)
        try:
            await task._done.wait()
            await writer.drain()
        finally:
            self._commands.forget(task.task_id)
            await writer.close()

    def _hosted(self, task_id: str) -> Task | None:
        try:
            return self.hub.get(task_id)
        except KeyError:
            return None

    async def find(self, task_id: str) -> Task | None:
        """The hub's task ``task_id``, or a mirror of the backend's (None: neither has it)."""
        try:
            task = self.hub.get(task_id)
        except KeyError:
            pass
        else:
            if not self.on_backend(task):
                return task
            # Another server may have deleted it, or a worker started it: one read.
            record = await self.backend.get(task_id)
            if record is None:
                self._drop(task)
                return None
            self._started(record)
            return task
        pending = self._adopting.get(task_id)
        if pending is not None:  # another request is fetching it: one mirror, not two
            return await asyncio.shield(pending)
        future: asyncio.Future[Task | None] = asyncio.get_running_loop().create_future()
        self._adopting[task_id] = future
        try:
            record = await self.backend.get(task_id)
            found = None if record is None else await self._adopt(record)
            future.set_result(found)
            return found
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter may or may not come
            raise
        finally:
            del self._adopting[task_id]

    def on_backend(self, task: Task) -> bool:
        """A mirror, or a run of this server written through (an import, a kernel's)."""
        return task.remote is not None or task.task_id in self._written

    def _drop(self, task: Task) -> None:
        """Deleted on the backend (through another server): gone here too."""
        self._written.discard(task.task_id)
        with contextlib.suppress(KeyError):
            self.hub.delete(task.task_id)

    def _started(self, record: dict[str, Any]) -> None:
        """A worker took the task but it logged nothing yet (a slow first model call):
        its record says it runs, and so does the mirror then (as a local run would)."""
        try:
            task = self.hub.get(str(record.get("task_id")))
        except KeyError:
            return
        if task.remote is None or task.status is not TaskStatus.QUEUED:
            return
        if record.get("status") not in (TaskStatus.QUEUED.value, None):
            task.status = TaskStatus.RUNNING
            task.started_at = record.get("started_at") or task.started_at

    async def _adopt(self, record: dict[str, Any]) -> Task:
        """A mirror of the backend's task, with what its log holds so far (as far as
        the hub's window keeps it) before anyone sees it: its first answer has its
        status and events, not a run that seems to start."""
        task_id = str(record["task_id"])
        try:
            return self.hub.get(task_id)
        except KeyError:
            pass
        task = self.hub.imported_task(
            task_id,
            str(record.get("agent")),
            str(record.get("input")),
            str(record.get("origin") or "server"),
        )
        task.created_at = float(record.get("created_at") or time.time())
        task.started_at = record.get("started_at")
        task.finished_at = record.get("finished_at")
        task.budget = record.get("budget")
        task.parent_id = record.get("parent_id")
        task.forked_at_seq = record.get("forked_at_seq")
        task.fork_kind = record.get("fork_kind")
        task.resumed_by = record.get("resumed_by")
        task.imported_from = record.get("imported_from")
        # Its status comes from its log as the mirror copies it (the result ends it;
        # a finished record's status would refuse the copy).
        started = record.get("status") not in (TaskStatus.QUEUED.value, None)
        task.status = TaskStatus.RUNNING if started else TaskStatus.QUEUED
        task.remote_first_seq = await self.backend.first_seq(task_id)
        self.hub.host(task)
        try:  # what is logged so far, before its first answer (then its reader goes on)
            while not task.finished and await self._copy_once(task, block=None):
                pass
        except BaseException:
            self.hub.forget(task_id)
            raise
        self._watch(task)
        return task

    def _watch(self, task: Task) -> None:
        task.remote = _Remote(self, task.task_id)
        if task.remote_first_seq is None:
            task.remote_first_seq = 1  # created here: its whole log is on the backend
        if not self._closed and not task.finished:
            self._logs.watch(task.task_id, task.log.last_seq)

    async def _read_logs(
        self, after: Mapping[str, int], block: float
    ) -> Mapping[str, list[LogEntry]]:
        # A batch is copied in one go: well inside the memory window, so a live viewer
        # is not left behind the window by one read (it would be dropped as too slow).
        window = self.hub.limits.max_events_in_memory
        limit = max(1, min(MIRROR_BATCH, window // 4))
        return await self.backend.read_many(after, limit=limit, block=block)

    async def _copy_batch(self, task_id: str, entries: list[LogEntry]) -> bool:
        """New entries of a watched task's stream into its mirror; False once it ended."""
        try:
            task = self.hub.get(task_id)
        except KeyError:
            return False  # deleted or evicted here meanwhile
        if task.finished:
            return False
        if entries[0].seq != task.log.last_seq + 1:
            # Trimmed on the backend beyond what the mirror had (a cap on events per
            # task, opt-in): the viewers are told and reconnect; never a silent gap.
            log.warning("agentkit: task %s: events trimmed before this server read them", task_id)
            task.remote_first_seq = entries[0].seq
            for sub in list(task._subscribers):
                sub.drop(protocol.ErrorCode.SUBSCRIBER_TOO_SLOW)
            fresh = EventLog(task.log.max_entries, task.log.max_bytes)
            fresh.restore(entries[0].seq, [])
            task.log = fresh
        await self._mirror_entries(task, entries)
        return not task.finished

    async def _copy_once(self, task: Task, block: float | None) -> int:
        """Copy what the stream has after the mirror's last seq; how many entries."""
        entries = await self.backend.read_after(task.task_id, task.log.last_seq, block=block)
        await self._mirror_entries(task, entries)
        return len(entries)

    async def _mirror_entries(self, task: Task, entries: list[LogEntry]) -> None:
        if entries:
            await self._note_continuation(task, entries[-1])  # before viewers see the result
        for entry in entries:
            if task.finished:
                break
            task.mirror(entry.text)
            if task.finished:
                self._spawn(self._times_of_the_run(task))

    async def _times_of_the_run(self, task: Task) -> None:
        """When the run started and ended where it ran, not when this server saw it:
        from the record, which its runner writes just after the result."""
        for _ in range(RECORD_SETTLE_TRIES):
            with contextlib.suppress(BackendError):
                record = await self.backend.get(task.task_id)
                if record is not None and record.get("finished_at"):
                    task.started_at = record.get("started_at") or task.started_at
                    task.finished_at = float(record["finished_at"])
                    return
            await asyncio.sleep(RECORD_SETTLE_SECONDS)

    async def _note_continuation(self, task: Task, entry: LogEntry) -> None:
        """Before an ``interrupted`` result reaches the viewers: the continuation its
        worker queued (named in the record before the result was logged)."""
        message = json.loads(entry.data)
        data = message.get("data") if isinstance(message, dict) else None
        if message.get("type") != "result" or not isinstance(data, dict):
            return
        if data.get("status") != TaskStatus.INTERRUPTED.value:
            return
        with contextlib.suppress(BackendError):
            record = await self.backend.get(task.task_id)
            if record is not None and record.get("resumed_by"):
                task.resumed_by = str(record["resumed_by"])

    async def records(self) -> list[dict[str, Any]]:
        """Every record on the backend, oldest first."""
        records: list[dict[str, Any]] = []
        page = await self.backend.page(RECORD_PAGE)
        records.extend(page.records)
        while page.next is not None:
            page = await self.backend.page(RECORD_PAGE, page.next)
            records.extend(page.records)
        for record in records:
            self._started(record)
        return records

    async def delete(self, task_id: str) -> None:
        """Gone from the backend and from this server; a run still going is cancelled
        first (its worker stops; what it still appends is dropped with the task)."""
        task = await self.find(task_id)
        if task is not None and not task.finished:
            with contextlib.suppress(BackendError):
                cancel = CancelMessage(type="cancel", reason="deleted")
                await self.backend.send(task_id, cancel, None)
            task.token.cancel("deleted")  # sent: the hub's delete sends nothing more
        await self.backend.delete(task_id)
        if task is not None:
            self._drop(task)

    async def close(self) -> None:
        self._closed = True
        await self._logs.close()
        await self._commands.close()
        await asyncio.gather(*self._jobs, return_exceptions=True)
