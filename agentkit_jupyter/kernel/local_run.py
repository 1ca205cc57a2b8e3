"""Agents that run in this process (a kernel, a script), shared through the server's hub.

The run happens on one background thread with its own event loop, so a notebook
cell returns at once, other cells keep running, and a blocking ``wait()`` never
meets an "event loop is already running". Each event is recorded in a local
:class:`~agentkit_jupyter.tasks.Task` (same ``seq``, same wire messages as the
server) and, when the server is reachable, published to it over an authenticated
WebSocket; a cancel from any viewer comes back the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import getpass
import json
import logging
import queue
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ..core import Agent, CancellationToken, StepEvent
from ..core.control import ControlError
from ..core.llm import REDACTED
from ..core.replay import ForkPlan
from ..protocol import (
    PUBLISH_TOKEN_HEADER,
    RECORD_ONLY_LIMIT,
    CloseCode,
    ControlMessage,
    ErrorCode,
    dumps,
    parse_control_command,
    publish_event_message,
)
from ..tasks import HubLimits, Task
from .client import AgentKitAPIError, AgentKitClient, ServerInfo, ServerNotFoundError

log = logging.getLogger(__name__)

T = TypeVar("T")

# The publisher's reconnect backoff (seconds), and how long it waits for the server's
# resume offer (or, at the end, for the server to close).
PUBLISH_RETRY_MIN = 0.1
PUBLISH_RETRY_MAX = 2.0
PUBLISH_RESUME_TIMEOUT = 30.0
# How long wait() also waits for the server to have the whole run.
PUBLISH_FLUSH_TIMEOUT = 30.0


class _Refused(Exception):
    """The server will not take this task's events (any more)."""


class _LoopThread:
    """One daemon thread running an event loop for every in-process run."""

    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="agentkit-runs", daemon=True
        )
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


def _redactor(token: str | None) -> Callable[[str], str] | None:
    """The server's token out of every message, as the server's hub does with its copy
    (so both logs stay identical, and a tool printing its environment leaks nothing)."""
    if not token or len(token) < 8:
        return None
    return lambda text: text.replace(token, REDACTED) if token in text else text


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a forked run comes from: its parent, the parent's seq and how
    (``protocol.ForkKind``), the parent's messages it copies, and the plan."""

    parent_id: str
    at_seq: int
    kind: str
    copied: list[dict[str, Any]]
    plan: ForkPlan

    @classmethod
    def of(
        cls, parent_id: str, at_seq: int, messages: list[dict[str, Any]], plan: ForkPlan, kind: str
    ) -> Lineage:
        by_seq = {m["seq"]: m for m in messages if m.get("type") == "step"}
        return cls(parent_id, at_seq, kind, [by_seq[seq] for seq in plan.copied], plan)


class LocalRun:
    """An agent run in this process; ``shared`` says whether the server's hub sees it."""

    def __init__(
        self,
        agent: Agent,
        user_input: str,
        *,
        server: ServerInfo | None = None,
        share: bool = True,
        lineage: Lineage | None = None,
    ) -> None:
        self.agent = agent
        self.input = user_input
        # A fork (or the continuation of an interrupted run): what it copies and
        # where it goes on (None: a run from the start).
        self.lineage = lineage
        self.shared = False
        self.not_shared_reason: str | None = None
        self.server: ServerInfo | None = None
        registration: dict[str, Any] | None = None
        if share:
            registration = self._register(server)
        else:
            self.not_shared_reason = "sharing was turned off (share=False)"
        task_id = registration["task_id"] if registration else f"local-{secrets.token_hex(6)}"
        token = self.server.token if self.server is not None else None
        self.task = Task(
            task_id, agent.name, user_input, HubLimits(), origin="kernel", redact=_redactor(token)
        )
        if lineage is not None:
            self.task.parent_id = lineage.parent_id
            self.task.forked_at_seq = lineage.at_seq
            self.task.fork_kind = lineage.kind
            for message in lineage.copied:
                self.task.copy_in(message)
        self._threads = _LoopThread.get()
        self._publish_target = registration
        self.shared = registration is not None
        self._publisher: asyncio.Task[None] | None = None
        self._publishing = self.shared
        self._forwarded = 0  # the last seq the publisher sent
        self._connection: ClientConnection | None = None  # the publish socket, if any
        self._applied_controls: set[int] = set()  # ids of the server's forwarded commands
        self._progress = asyncio.Event()  # set (on the run's loop) as the publisher sends
        self._published: concurrent.futures.Future[None] = concurrent.futures.Future()
        if not self.shared:
            self._published.set_result(None)
        self._future = self._threads.submit(self._drive())

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def status(self) -> str:
        return self.task.status.value

    @property
    def result(self) -> dict[str, Any] | None:
        return self.task.result

    @property
    def done(self) -> bool:
        return self._future.done()

    def messages(self, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The run's wire messages (``step``s, then the ``result``) with ``seq > after``
        (at most ``limit``)."""
        entries = self.task.log.read_after(after, limit=1 << 30 if limit is None else limit)
        return [json.loads(e.text) for e in entries]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages() if m["type"] == "step"]

    # -- control --------------------------------------------------------------------

    def cancel(self, reason: str | None = "cancelled from Python") -> bool:
        """Cancel the run (the in-flight model or tool call is interrupted)."""
        outcome: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def do() -> None:
            outcome.set_result(self.task.cancel(reason))

        self._threads.loop.call_soon_threadsafe(do)
        return outcome.result(timeout=5)

    def command(self, command: ControlMessage, by: str | None = None) -> None:
        """approve / reject / pause / resume the run here (a run the server does not
        see; a shared one takes them through the server, which forwards them back).
        Raises the ``ControlError`` that refused it."""
        outcome: concurrent.futures.Future[None] = concurrent.futures.Future()

        def do() -> None:
            try:
                self.task.command(command, by)
            except Exception as exc:  # handed to the caller's thread
                outcome.set_exception(exc)
            else:
                outcome.set_result(None)

        self._threads.loop.call_soon_threadsafe(do)
        outcome.result(timeout=5)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run ends; returns its result.

        Interrupting the kernel while waiting stops the run and fails it with a clear
        reason (``kernel_interrupted``), so viewers never see it running forever.
        """
        try:
            self._future.result(timeout)
            # Let the server get the end too (a script exits after this); a publisher
            # still at it after that goes on in the background while the process lives.
            self._published.result(PUBLISH_FLUSH_TIMEOUT if timeout is None else 0.1)
        except KeyboardInterrupt:
            self.abort("The kernel was interrupted during the run.")
            raise
        except concurrent.futures.TimeoutError:
            if not self._future.done():
                raise TimeoutError(f"the run did not finish in {timeout} s") from None
        assert self.task.result is not None
        return self.task.result

    def abort(self, message: str) -> None:
        """Stop the run and fail it with ``message`` (code ``kernel_interrupted``)."""
        self._threads.submit(self._abort(message))

    async def wait_async(self) -> dict[str, Any]:
        """Await the result from any event loop (an ``async`` cell, a script)."""
        await asyncio.wrap_future(self._future)
        assert self.task.result is not None
        return self.task.result

    def subscribe(
        self, callback: Callable[[list[dict[str, Any]]], None], after: int = 0
    ) -> concurrent.futures.Future[None]:
        """Call ``callback(messages)`` from the run's thread for each batch after ``after``,
        until the result. Returns a future; cancel it to stop."""

        async def feed() -> None:
            subscription = self.task.subscribe(after)
            async for batch in subscription.batches():
                callback([json.loads(entry.text) for entry in batch])

        return self._threads.submit(feed())

    # -- the run ------------------------------------------------------------------------

    def _register(self, server: ServerInfo | None) -> dict[str, Any] | None:
        try:
            with AgentKitClient(server, timeout=10) as client:
                self.server = client.server
                lineage = self.lineage
                return client.register_kernel_task(
                    self.agent.name,
                    self.input,
                    self.agent.description,
                    parent=(lineage.parent_id, lineage.at_seq, lineage.kind) if lineage else None,
                )
        except (ServerNotFoundError, AgentKitAPIError) as exc:
            self.not_shared_reason = (
                f"the run stays in this process and is not shared with other viewers: {exc}"
            )
            log.info("agentkit: %s", self.not_shared_reason)
            return None

    async def _drive(self) -> None:
        if self._publish_target:
            # Not awaited: the run ends when the agent does; the publisher goes on until
            # the server has the whole log (as long as this process lives).
            self._publisher = asyncio.create_task(self._publish())
            self._publisher.add_done_callback(lambda _: self._published.set_result(None))
        await self.task.run(self._source)

    async def _source(self, token: CancellationToken) -> AsyncIterator[StepEvent]:
        control = self.task.control.run
        snapshot = self.lineage.plan.snapshot if self.lineage is not None else None
        events = self.agent.stream(self.input, token, control=control, snapshot=snapshot)
        async for event in events:
            yield event
            if self._publishing and self._backlog_too_big():
                # Backpressure: the run waits for the publisher rather than letting
                # the log's window evict events the server has not got yet.
                await self._caught_up(token)

    async def _abort(self, message: str) -> None:
        self.task.token.cancel(message)
        self.task.fail(message, code=ErrorCode.KERNEL_INTERRUPTED)

    # -- publishing to the server ---------------------------------------------------

    @property
    def publish_done(self) -> bool:
        """Whether the publisher is over: the server has the whole run, or gave up."""
        return self._publisher is None or self._publisher.done()

    def _backlog_too_big(self) -> bool:
        log_ = self.task.log
        return (
            log_.last_seq - self._forwarded > log_.max_entries // 2
            or log_.lag_bytes(self._forwarded) > log_.max_bytes // 2
        )

    async def _caught_up(self, token: CancellationToken) -> None:
        while self._publishing and self._backlog_too_big() and not token.cancelled:
            self._progress.clear()
            stop = asyncio.ensure_future(token.wait())
            try:
                await asyncio.wait(
                    {stop, asyncio.ensure_future(self._progress.wait())},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                stop.cancel()

    async def _publish(self) -> None:
        """Forward every step of the local log to the server; take cancels back.

        The server says first where to resume (the last ``seq`` it holds); after a
        dropped connection this reconnects (backing off up to ``PUBLISH_RETRY_MAX``
        seconds) and resumes there. It ends when the server has the run's end, or
        refuses the task (it failed it, or it was deleted).
        """
        assert self._publish_target is not None and self.server is not None
        url = self.server.ws_path(self._publish_target["publish_url"])
        headers = {
            **self.server.headers(),
            PUBLISH_TOKEN_HEADER: self._publish_target["publish_token"],
        }
        delay = PUBLISH_RETRY_MIN
        try:
            while True:
                try:
                    async with connect(url, additional_headers=headers, max_size=None) as ws:
                        if await self._forward(ws):
                            return
                        delay = PUBLISH_RETRY_MIN
                except _Refused as exc:
                    self._stop_sharing(f"the server refused the task's events: {exc}")
                    return
                except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                    log.info("agentkit: task %s: publish connection lost (%s)", self.task_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, PUBLISH_RETRY_MAX)
        finally:
            self._publishing = False
            self._progress.set()

    async def _forward(self, ws: ClientConnection) -> bool:
        """One connection: resume where the server is, forward until the run's end.
        Returns True when the server has it all."""
        first = json.loads(await asyncio.wait_for(ws.recv(), PUBLISH_RESUME_TIMEOUT))
        if first.get("type") != "resume":
            raise _Refused((first.get("data") or {}).get("message") or "no resume offer")
        cursor = int(first["last_seq"])
        self._connection = ws
        listener = asyncio.create_task(self._listen(ws))
        log_ = self.task.log
        try:
            while True:
                if cursor + 1 < log_.first_seq:
                    raise _Refused(f"events {cursor + 1} to {log_.first_seq - 1} were lost")
                entries = log_.read_after(cursor, 500)
                for entry in entries:
                    message = json.loads(entry.data)
                    if message["type"] == "step":
                        await ws.send(dumps(publish_event_message(message["data"], entry.seq)))
                    cursor = entry.seq
                    self._forwarded = max(self._forwarded, cursor)
                if entries:
                    self._progress.set()
                    continue
                if self.task.finished and cursor >= log_.last_seq:
                    # Everything is sent; the server closes when it has the end.
                    await asyncio.wait_for(ws.wait_closed(), PUBLISH_RESUME_TIMEOUT)
                    return ws.close_code == CloseCode.NORMAL
                waiter = log_.waiter()
                await asyncio.wait({waiter, listener}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if listener.done():
                    listener.result()  # the connection ended: raise why
                    raise websockets.ConnectionClosedError(None, None)
        finally:
            listener.cancel()

    def _stop_sharing(self, reason: str) -> None:
        self.shared = False
        self.not_shared_reason = reason
        log.warning("agentkit: task %s: %s", self.task_id, reason)

    async def _listen(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if message.get("type") == "cancel":
                self.task.cancel(message.get("reason") or "cancelled by a viewer")
            elif message.get("type") == "control":
                self._apply_forwarded(message)
            elif message.get("type") == "error":
                data = message.get("data") or {}
                if data.get("code") in (ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_TASK):
                    raise _Refused(str(data.get("message")))
                log.warning("agentkit: the server refused an event: %s", data)

    def _apply_forwarded(self, message: dict[str, Any]) -> None:
        """A viewer's command the server checked and forwarded; after a reconnect the
        server sends them all again, so each id is applied once."""
        number = message.get("id")
        if isinstance(number, int):
            if number in self._applied_controls:
                return
            self._applied_controls.add(number)
        try:
            command = parse_control_command(message.get("command"))
            by = message.get("by")
            self.task.command(command, by if isinstance(by, str) else None)
        except (ValueError, ControlError) as exc:
            log.warning("agentkit: task %s: a forwarded command failed: %s", self.task_id, exc)
        except Exception:
            log.exception("agentkit: task %s: a forwarded command failed", self.task_id)


class LocalRunClient:
    """Answers a :class:`~agentkit_jupyter.kernel.widget.TaskWidget` from a run in this
    process, for runs the server does not see (no server, or ``share=False``)."""

    def __init__(self, run: LocalRun) -> None:
        self.run = run

    def get_task(
        self, task_id: str, after: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        self._check(task_id)
        record = self.run.task.to_dict()
        record["events"] = self.run.messages(after or 0, limit)
        return record

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        self._check(task_id)
        if self.run.done:
            raise AgentKitAPIError(
                409, ErrorCode.TASK_FINISHED.value, f"Task {task_id} has already finished."
            )
        self.run.cancel()
        return self.get_task(task_id, limit=RECORD_ONLY_LIMIT)

    def send_control(self, task_id: str, command: ControlMessage) -> dict[str, Any]:
        self._check(task_id)
        if self.run.done:
            raise AgentKitAPIError(
                409, ErrorCode.TASK_FINISHED.value, f"Task {task_id} has already finished."
            )
        try:
            self.run.command(command, by=_local_user())
        except ControlError as exc:
            raise AgentKitAPIError(409, exc.code.value, str(exc)) from None
        return {"task_id": task_id, "status": self.run.status, "accepted": command.type}

    def iter_messages(
        self, task_id: str, after: int = 0, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        self._check(task_id)
        batches: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        feed = self.run.subscribe(batches.put, after)
        feed.add_done_callback(lambda _: batches.put(None))
        try:
            while True:
                try:
                    batch = batches.get(timeout=timeout)
                except queue.Empty:
                    raise TimeoutError(f"no message from run {task_id} in {timeout} s") from None
                if batch is None:
                    return
                for message in batch:
                    yield message
                    if message.get("type") == "result":
                        return
        finally:
            feed.cancel()

    def _check(self, task_id: str) -> None:
        if task_id != self.run.task_id:
            raise AgentKitAPIError(
                404, ErrorCode.UNKNOWN_TASK.value, f"No task {task_id!r} in this process."
            )


def _local_user() -> str | None:
    """Who decides in a run nobody else sees: the account the kernel runs as."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return None
