"""The task hub: tasks created once, run once, watched by any number of subscribers."""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

import agentkit_jupyter.protocol as protocol

from ..core import AgentPool, CancellationToken, EventType, StepEvent
from ..protocol import TaskStatus
from .log import EventLog, LogEntry
from .store import StoredTask, TaskStore

log = logging.getLogger(__name__)

EventSource = Callable[[CancellationToken], AsyncIterator[StepEvent]]

# The most a subscriber's writer takes from the log at once (so at most this, or one
# message, sits in its socket's buffer): a late joiner replaying a big log, or a stuck
# client, costs no more than this beyond the log every subscriber shares.
BATCH_MAX_BYTES = 256 * 1024

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


class PublishError(ValueError):
    """A publisher's event was refused; ``code`` is a protocol error code."""

    def __init__(self, code: protocol.ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


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
    # A run that ignores its cancellation token is force-stopped after this long.
    cancel_grace_seconds: float = 2.0
    # A kernel-published task fails if its kernel does not connect within this long.
    publisher_connect_timeout: float = 30.0


class Subscription:
    """One subscriber's cursor into a task's log.

    ``batches()`` yields lists of entries after the cursor, replay first and then live,
    with no gap and no duplicate; it ends after the result, or when the subscriber is
    dropped (``dropped`` then says why).
    """

    def __init__(self, task: Task, after: int) -> None:
        self.task = task
        self.cursor = after
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
        self.task._subscribers.discard(self)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        for callback in self._on_drop:
            callback(reason)

    def close(self) -> None:
        self.task._subscribers.discard(self)

    async def batches(
        self, limit: int = 500, max_bytes: int = BATCH_MAX_BYTES
    ) -> AsyncIterator[list[LogEntry]]:
        """Batches of at most ``limit`` entries and ``max_bytes`` (or one entry): what a
        writer has in flight, on top of the shared log, stays that small."""
        log_ = self.task.log
        try:
            while self.dropped is None:
                if self.cursor + 1 < log_.first_seq:
                    # What it has not sent yet left the window: never a silent gap.
                    self.drop(protocol.ErrorCode.SUBSCRIBER_TOO_SLOW)
                    break
                entries = _up_to_bytes(log_.read_after(self.cursor, limit), max_bytes)
                if entries:
                    self.cursor = entries[-1].seq
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
        # Appended since the last look for lagging subscribers (see publish()).
        self._unchecked = 0
        self._unchecked_bytes = 0
        self._runner: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        # Set for tasks whose events come from a kernel: only its holder may publish.
        self.publish_secret: str | None = None
        self.publisher_attached = False
        self._store = store

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

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
            "first_seq": self.log.first_seq,
            "subscribers": self.subscriber_count,
        }

    # -- subscribers --------------------------------------------------------------

    def subscribe(self, after: int = 0) -> Subscription:
        if len(self._subscribers) >= self._limits.max_subscribers_per_task:
            raise TooManySubscribersError(
                f"This task already has {len(self._subscribers)} subscribers."
            )
        # Replay starts at the oldest event still held (the caller says so to its client).
        subscription = Subscription(self, max(after, 0, self.log.first_seq - 1))
        self._subscribers.add(subscription)
        return subscription

    def _check_lagging(self) -> None:
        limits = self._limits
        last = self.log.last_seq
        first = self.log.first_seq
        for sub in list(self._subscribers):
            behind = last - sub.cursor
            if behind <= 16:
                continue  # cheap common case: nearly caught up
            if (
                behind > limits.subscriber_max_lag_messages
                or sub.cursor + 1 < first
                or self.log.lag_bytes(sub.cursor) > limits.subscriber_max_lag_bytes
            ):
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
        # Looking at every subscriber costs O(subscribers): do it every few events or
        # bytes, not per event. A laggard overshoots the caps by at most that much.
        self._unchecked += 1
        self._unchecked_bytes += entry.size
        if self._unchecked >= LAG_CHECK_EVERY or self._unchecked_bytes >= LAG_CHECK_BYTES:
            self._unchecked = self._unchecked_bytes = 0
            self._check_lagging()
        return entry

    def _append(self, text: str) -> LogEntry:
        entry = self.log.append(text)
        if self._store is not None:
            self._store.append_event(self.task_id, entry.seq, text)
        return entry

    def save(self) -> None:
        """Persist the task's record (status, times, result), if there is a store."""
        if self._store is not None:
            self._store.save_task(self.to_dict())

    def finish(self, status: TaskStatus, **result: Any) -> bool:
        """Record the one final result; later calls are ignored (returns False)."""
        if self.finished:
            return False
        self.status = status
        self.finished_at = time.time()
        self.result = {"status": status.value, "task_id": self.task_id, **result}
        data = cast(protocol.ResultData, self.result)
        seq = self.log.last_seq + 1
        self._append(protocol.dumps(protocol.result_message(self.task_id, seq, data)))
        self.save()
        self._done.set()
        return True

    def finish_from_event(self, event: StepEvent) -> None:
        data = event.data
        if event.event_type is EventType.FINAL_ANSWER:
            self.finish(
                TaskStatus.SUCCEEDED,
                output=data.get("output"),
                total_steps=data.get("total_steps"),
                total_tokens=data.get("total_tokens"),
            )
        elif event.event_type is EventType.CANCELLED:
            self.finish(TaskStatus.CANCELLED, reason=data.get("reason"))
        elif event.event_type is EventType.ERROR:
            self.finish(
                TaskStatus.FAILED,
                error={"code": data.get("code"), "message": data.get("message")},
            )

    async def run(self, source: EventSource) -> None:
        self.status = TaskStatus.RUNNING
        self.started_at = time.time()
        self.save()
        loop = asyncio.get_running_loop()
        turn_ends = loop.time() + RUN_TIME_SLICE
        try:
            async for event in source(self.token):
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

    def attach_publisher(self) -> None:
        if self.finished:
            raise TaskFinishedError(f"task {self.task_id} already {self.status.value}")
        if self.publisher_attached:
            raise PublishError(protocol.ErrorCode.FORBIDDEN, "This task already has a publisher.")
        self.publisher_attached = True

    def publish_external(self, raw: Any) -> StepEvent:
        """Validate and append an event sent by the task's publisher."""
        if self.finished:
            raise TaskFinishedError(f"task {self.task_id} already {self.status.value}")
        try:
            event = StepEvent.from_dict(raw)
        except (KeyError, ValueError, TypeError):
            raise PublishError(
                protocol.ErrorCode.INVALID_MESSAGE,
                "An event needs event_type (a known type), step (int), data (object), "
                "timestamp (number).",
            ) from None
        self.publish(event)
        if event.is_terminal:
            self.finish_from_event(event)
        return event

    def publisher_lost(self) -> None:
        """The publisher went away: a run without its end is failed, never left running."""
        if self.finished:
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

    async def stop(self, reason: str) -> None:
        """Cancel and wait until the runner has ended (server shutdown)."""
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
    ) -> None:
        self.agents = agents
        self.limits = limits or HubLimits()
        self.store = store
        self._tasks: dict[str, Task] = {}
        if store is not None:
            for stored in store.load(self.limits.max_events_in_memory):
                self._restore(stored)

    def _restore(self, stored: StoredTask) -> None:
        record = stored.record
        task = Task(
            record["task_id"],
            record["agent"],
            record["input"],
            self.limits,
            origin=record["origin"],
            store=self.store,
        )
        task.created_at = record["created_at"]
        task.started_at = record["started_at"]
        task.finished_at = record["finished_at"]
        task.log.restore(stored.first_seq, stored.events)
        status = TaskStatus(record["status"])
        if status.finished:
            task.status = status
            task.result = record["result"]
            task._done.set()
        else:
            # It was running when the server stopped: say so, once, in its own log.
            task.status = TaskStatus.RUNNING
            task.finish(
                TaskStatus.INTERRUPTED,
                error={
                    "code": protocol.ErrorCode.SERVER_RESTARTED.value,
                    "message": "The server stopped while this task was running; "
                    "its events up to then are kept.",
                },
            )
        self._tasks[task.task_id] = task

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

    def create_task(self, agent_name: str, user_input: str) -> Task:
        """Create and start a run of a registered agent (UnknownAgentError if none)."""
        agent = self.agents.get(agent_name)
        return self.run_source(
            agent.name, user_input, lambda token: agent.stream(user_input, token)
        )

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
        asyncio.get_running_loop().call_later(
            self.limits.publisher_connect_timeout, task._publisher_never_came
        )
        return task

    def _new_task(self, agent: str, user_input: str, origin: str) -> Task:
        self._evict_finished()
        task_id = secrets.token_hex(8)
        task = Task(task_id, agent, user_input, self.limits, origin=origin, store=self.store)
        self._tasks[task_id] = task
        task.save()
        return task

    def _evict_finished(self) -> None:
        excess = len(self._tasks) - self.limits.max_tasks + 1
        if excess <= 0:
            return
        for task in sorted(
            (t for t in self._tasks.values() if t.finished), key=lambda t: t.created_at
        )[:excess]:
            self.delete(task.task_id)

    def get(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise UnknownTaskError(task_id) from None

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
        for sub in list(task._subscribers):
            sub.drop(protocol.ErrorCode.UNKNOWN_TASK)
        del self._tasks[task_id]
        if self.store is not None:
            self.store.delete_task(task_id)

    async def shutdown(self) -> None:
        await asyncio.gather(
            *(t.stop("server shutting down") for t in self._tasks.values() if not t.finished)
        )
        if self.store is not None:
            self.store.close()
