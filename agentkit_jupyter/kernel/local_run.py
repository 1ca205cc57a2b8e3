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
import json
import logging
import queue
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection, connect

from ..core import Agent, CancellationToken, StepEvent
from ..protocol import (
    PUBLISH_TOKEN_HEADER,
    RECORD_ONLY_LIMIT,
    ErrorCode,
    dumps,
    publish_event_message,
)
from ..tasks import HubLimits, Task
from .client import AgentKitAPIError, AgentKitClient, ServerInfo, ServerNotFoundError

log = logging.getLogger(__name__)

T = TypeVar("T")


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


class LocalRun:
    """An agent run in this process; ``shared`` says whether the server's hub sees it."""

    def __init__(
        self,
        agent: Agent,
        user_input: str,
        *,
        server: ServerInfo | None = None,
        share: bool = True,
    ) -> None:
        self.agent = agent
        self.input = user_input
        self.shared = False
        self.not_shared_reason: str | None = None
        self.server: ServerInfo | None = None
        registration: dict[str, Any] | None = None
        if share:
            registration = self._register(server)
        else:
            self.not_shared_reason = "sharing was turned off (share=False)"
        task_id = registration["task_id"] if registration else f"local-{secrets.token_hex(6)}"
        self.task = Task(task_id, agent.name, user_input, HubLimits(), origin="kernel")
        self._threads = _LoopThread.get()
        self._publish_target = registration
        self.shared = registration is not None
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

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run ends; returns its result.

        Interrupting the kernel while waiting stops the run and fails it with a clear
        reason (``kernel_interrupted``), so viewers never see it running forever.
        """
        try:
            self._future.result(timeout)
        except KeyboardInterrupt:
            self.abort("The kernel was interrupted during the run.")
            raise
        except concurrent.futures.TimeoutError:
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
                return client.register_kernel_task(
                    self.agent.name, self.input, self.agent.description
                )
        except (ServerNotFoundError, AgentKitAPIError) as exc:
            self.not_shared_reason = (
                f"the run stays in this process and is not shared with other viewers: {exc}"
            )
            log.info("agentkit: %s", self.not_shared_reason)
            return None

    async def _drive(self) -> None:
        publisher = asyncio.create_task(self._publish()) if self._publish_target else None
        try:
            await self.task.run(self._source)
        finally:
            if publisher is not None:
                try:
                    await asyncio.wait_for(publisher, 5)
                except (TimeoutError, asyncio.CancelledError):
                    publisher.cancel()

    def _source(self, token: CancellationToken) -> AsyncIterator[StepEvent]:
        return self.agent.stream(self.input, token)

    async def _abort(self, message: str) -> None:
        self.task.token.cancel(message)
        self.task.fail(message, code=ErrorCode.KERNEL_INTERRUPTED)

    async def _publish(self) -> None:
        """Forward every step of the local log to the server; take cancels back."""
        assert self._publish_target is not None and self.server is not None
        url = self.server.ws_path(self._publish_target["publish_url"])
        headers = {
            **self.server.headers(),
            PUBLISH_TOKEN_HEADER: self._publish_target["publish_token"],
        }
        try:
            async with connect(url, additional_headers=headers, max_size=None) as ws:
                listener = asyncio.create_task(self._listen(ws))
                try:
                    subscription = self.task.subscribe(0)
                    async for batch in subscription.batches():
                        for entry in batch:
                            message = json.loads(entry.text)
                            if message["type"] == "step":
                                await ws.send(dumps(publish_event_message(message["data"])))
                finally:
                    listener.cancel()
        except (OSError, websockets.WebSocketException) as exc:
            self.shared = False
            self.not_shared_reason = f"lost the connection to the server: {exc}"
            log.warning("agentkit: task %s: %s", self.task_id, self.not_shared_reason)

    async def _listen(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if message.get("type") == "cancel":
                self.task.cancel(message.get("reason") or "cancelled by a viewer")
            elif message.get("type") == "error":
                log.warning("agentkit: the server refused an event: %s", message.get("data"))


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
