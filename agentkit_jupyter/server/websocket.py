"""The task WebSocket (``agentkit/ws/tasks/{id}``: replay, live events, ping, cancel)
and the publish WebSocket a kernel sends its own run's events on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol

from ..core.control import ControlError
from ..protocol import (
    PONG,
    PUBLISH_TOKEN_HEADER,
    PUBLISH_WS_PREFIX,
    TASK_WS_PREFIX,
    CancelMessage,
    ClientMessageError,
    CloseCode,
    ControlMessage,
    ErrorCode,
    PingMessage,
    PublishControlMessage,
    ServerMessage,
    connected_message,
    dumps,
    error_message,
    parse_client_message,
    publish_cancel_message,
    publish_resume_message,
)
from ..tasks import (
    PublishError,
    Subscription,
    Task,
    TaskFinishedError,
    TooManyConnectionsError,
    TooManySubscribersError,
    UnknownTaskError,
)
from ..tasks.backend import BackendUnavailableError
from .base import (
    BACKEND_DOWN_TEXT,
    INTERNAL_ERROR_TEXT,
    WRONG_KEY_TEXT,
    AgentKitHandlerMixin,
    parse_nonnegative_int,
)
from .frames import TextFrameProtocol, cut, text_frame_protocol

TASK_ID = r"(?P<task_id>[^/]+)"


class _SocketBase(AgentKitHandlerMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """What both WebSockets share: closing for sure, and failing without leaking."""

    def get_compression_options(self) -> dict[str, Any] | None:
        return None  # per-message deflate costs about 10x the memory per connection

    def _send_text(self, text: str) -> None:
        try:
            self.write_message(text)
        except WebSocketClosedError:
            pass

    def _send(self, message: ServerMessage) -> None:
        self._send_text(dumps(message))

    def _close(self, code: int, reason: str) -> None:
        """Close, and cut the TCP connection a second later if the client never answers
        (Tornado would wait five seconds for a client that does not read)."""
        connection = self.ws_connection  # close() forgets it
        self.close(code, reason[:120])
        if connection is not None:
            asyncio.get_running_loop().call_later(1.0, cut, connection)

    def _internal_error(self, doing: str) -> None:
        """An unexpected exception: its traceback goes to the log, never to the client."""
        self.log.exception("agentkit: unexpected error while %s %s", doing, self.request.path)
        self._send(error_message(ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_TEXT))
        self._close(CloseCode.INTERNAL_ERROR, "Internal server error")

    async def _guarded(self, doing: str, step: Callable[[], Awaitable[None] | None]) -> None:
        """Run one step of the connection: a closed socket ends it quietly, anything
        else is an internal error (logged, said to the client, connection closed)."""
        try:
            result = step()
            if result is not None:
                await result
        except WebSocketClosedError:
            pass
        except Exception:
            self._internal_error(doing)

    async def open(self, task_id: str) -> None:
        super().open()  # starts WebSocket pings
        await self._guarded("opening", lambda: self._start(task_id))

    def _start(self, task_id: str) -> Awaitable[None] | None:
        """Set up the connection to ``task_id`` (each socket its own way)."""
        raise NotImplementedError

    async def _check_before_upgrade(self, action: str) -> None:
        """Authenticated (Jupyter or a key) and allowed ``action``, else 403."""
        if self.current_user is None:
            self.log.warning("Couldn't authenticate WebSocket connection")
            raise web.HTTPError(403)
        if not await self.is_allowed(action):
            raise web.HTTPError(403)

    def on_close(self) -> None:
        # Jupyter's keep-alive pinger would hold this handler until its next tick.
        if self.ping_callback is not None:
            self.ping_callback.stop()


class TaskStreamHandler(_SocketBase):
    """``agentkit/ws/tasks/{task_id}``: replay after ``?after=``, then live events."""

    @property
    def max_message_size(self) -> int:
        # Frames up to 10x the limit are read and answered with message_too_large;
        # beyond that Tornado closes with 1009 without buffering them.
        return 10 * int(self.agentkit.max_message_size)

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None
        return text_frame_protocol(self, self.max_message_size)

    subscription: Subscription | None = None
    _can_write = False
    _writer: asyncio.Task[None] | None = None
    _heartbeat: asyncio.Task[None] | None = None

    async def get(self, task_id: str) -> None:
        # A wrong key is answered after the upgrade (error unauthenticated, close 4001),
        # as the seed service did; everything else is checked before it.
        if not self.api_key_refused:
            await self._check_before_upgrade("read")
            self._can_write = await self.is_allowed("write")
        await super().get(task_id)

    # -- connection lifecycle ---------------------------------------------------------

    async def _start(self, task_id: str) -> None:
        # Each write is a whole batch of messages: send it now, do not let Nagle hold
        # it back until the client's (delayed, up to 40 ms) ACK of the previous one.
        self.set_nodelay(True)
        self._last_message_at = time.monotonic()
        self._allowance = self._burst = 2 * self.agentkit.client_message_rate
        self._allowance_at = time.monotonic()
        if self.api_key_refused:
            self._send(error_message(ErrorCode.UNAUTHENTICATED, WRONG_KEY_TEXT))
            self.close(CloseCode.UNAUTHENTICATED, "Unauthenticated")
            return
        try:
            after = self._parse_after()
        except ValueError:
            self._send(error_message(ErrorCode.INVALID_AFTER, "'after' must be an integer >= 0."))
            self.close(CloseCode.NORMAL, "Invalid after")
            return
        try:
            found = await self.lookup_task(task_id)
        except BackendUnavailableError:
            self._send(error_message(ErrorCode.BACKEND_UNAVAILABLE, BACKEND_DOWN_TEXT))
            self.close(CloseCode.GOING_AWAY, "Backend unavailable")
            return
        if found is None:
            self._send(error_message(ErrorCode.UNKNOWN_TASK, "No task with that id."))
            self.close(CloseCode.UNKNOWN_TASK, "Unknown task")
            return
        task = found
        last = task.log.last_seq
        notice = None
        if after > last:
            notice = error_message(
                ErrorCode.AFTER_BEYOND_LOG,
                f"'after' is beyond the last event ({last}); streaming from there.",
                last_seq=last,
            )
            after = last
        elif after + 1 < task.first_seq:  # neither memory nor the history has them
            first = task.first_seq
            notice = error_message(
                ErrorCode.EVENTS_TRUNCATED,
                f"Events before {first} are no longer held; replaying from {first}.",
                first_seq=first,
            )
        try:
            self.subscription = task.subscribe(after, owner=self.limit_owner)
        except TooManyConnectionsError as exc:
            self._send(error_message(ErrorCode.TOO_MANY_CONNECTIONS, str(exc)))
            self.close(CloseCode.TOO_MANY_SUBSCRIBERS, "Too many connections from you")
            return
        except TooManySubscribersError as exc:
            self._send(error_message(ErrorCode.TOO_MANY_SUBSCRIBERS, str(exc)))
            self.close(CloseCode.TOO_MANY_SUBSCRIBERS, "Too many subscribers")
            return
        self.subscription.on_drop(self._on_dropped)
        self._send(
            connected_message(
                task.task_id, task.agent, task.status.value, last, after, self._can_write
            )
        )
        if notice is not None:
            self._send(notice)
        self._writer = asyncio.create_task(self._pump(self.subscription))
        if self.agentkit.heartbeat_timeout > 0:
            self._heartbeat = asyncio.create_task(self._watch_heartbeat())

    def on_close(self) -> None:
        super().on_close()
        if self.subscription is not None:
            self.subscription.close()
        for job in (self._writer, self._heartbeat):
            if job is not None:
                job.cancel()

    # -- server -> client -------------------------------------------------------------

    async def _pump(self, subscription: Subscription) -> None:
        """Write the task's log to this one client; never blocks other subscribers."""
        try:
            async for batch in subscription.batches():
                # One write per batch; waiting for it to drain is the flow control.
                await self._write_frames([entry.data for entry in batch])
        except (WebSocketClosedError, StreamClosedError):
            return
        except Exception:
            self._internal_error("streaming to")
            return
        if subscription.dropped is None:
            self.close(CloseCode.NORMAL, "Task finished")

    def _write_frames(self, payloads: list[bytes]) -> asyncio.Future[None]:
        connection = self.ws_connection
        if not isinstance(connection, TextFrameProtocol):
            raise WebSocketClosedError()
        return connection.write_text_frames(payloads)

    def _on_dropped(self, reason: ErrorCode) -> None:
        code, text = {
            ErrorCode.SUBSCRIBER_TOO_SLOW: (
                CloseCode.TOO_SLOW,
                "Too far behind the stream; reconnect with ?after=<last seq>.",
            ),
            ErrorCode.SERVER_SHUTTING_DOWN: (CloseCode.GOING_AWAY, "The server is shutting down."),
            ErrorCode.UNKNOWN_TASK: (CloseCode.UNKNOWN_TASK, "The task was deleted."),
        }.get(reason, (CloseCode.NORMAL, "Closed."))
        self._send(error_message(reason, text))
        # A client that does not read would hold the socket open; it is cut after a second.
        self._close(code, text)

    # -- client -> server -------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        await self._guarded("handling a message from", lambda: self._on_message(message))

    async def _on_message(self, message: str | bytes) -> None:
        self._last_message_at = time.monotonic()
        if not self._take_allowance():
            self._send(error_message(ErrorCode.RATE_LIMITED, "Too many messages; slow down."))
            return
        try:
            parsed = parse_client_message(message, self.agentkit.max_message_size)
        except ClientMessageError as exc:
            self._send(error_message(exc.code, str(exc)))
            return
        if isinstance(parsed, PingMessage):
            self._send_text(PONG)
        elif isinstance(parsed, CancelMessage):
            await self._cancel(parsed)
        else:
            await self._control(parsed)

    async def _control(self, command: ControlMessage) -> None:
        """approve / reject / pause / resume: accepted silently (the step that records
        it follows on the stream), refused with an error frame to this client only."""
        call_id = getattr(command, "call_id", None)
        about = {"call_id": call_id} if call_id else {}
        if not await self.is_allowed("write"):
            self._send(
                error_message(
                    ErrorCode.FORBIDDEN,
                    "You may watch this task, not decide its tool calls, pause or resume it.",
                    **about,
                )
            )
            return
        assert self.subscription is not None
        task = self.subscription.task
        try:
            await task.send_command(command, self.actor_name)
        except ControlError as exc:
            self._send(error_message(exc.code, str(exc), **about))
        except TaskFinishedError:
            self._send(
                error_message(
                    ErrorCode.TASK_FINISHED,
                    f"The task already ended ({task.status.value}).",
                    **about,
                )
            )

    async def _cancel(self, message: CancelMessage) -> None:
        if not await self.is_allowed("write"):
            self._send(
                error_message(ErrorCode.FORBIDDEN, "You may watch this task, not cancel it.")
            )
            return
        assert self.subscription is not None
        try:
            self.hub.cancel(
                self.subscription.task.task_id, message.reason or "cancelled by a viewer"
            )
        except (TaskFinishedError, UnknownTaskError):
            status = self.subscription.task.status.value
            self._send(
                error_message(ErrorCode.TASK_FINISHED, f"The task already ended ({status}).")
            )

    def _take_allowance(self) -> bool:
        """Token bucket: a flood from one client is refused without touching the others."""
        now = time.monotonic()
        rate = self.agentkit.client_message_rate
        self._allowance = min(self._burst, self._allowance + (now - self._allowance_at) * rate)
        self._allowance_at = now
        if self._allowance < 1:
            return False
        self._allowance -= 1
        return True

    async def _watch_heartbeat(self) -> None:
        timeout = self.agentkit.heartbeat_timeout
        while True:
            idle = time.monotonic() - self._last_message_at
            if idle >= timeout:
                self._close(CloseCode.NORMAL, "Heartbeat timeout")
                return
            await asyncio.sleep(min(timeout - idle + 0.01, 5.0))

    # -- checks -----------------------------------------------------------------------

    def _parse_after(self) -> int:
        raw = self.raw_query_argument("after")
        return 0 if raw is None else parse_nonnegative_int(raw)


class PublishHandler(_SocketBase):
    """``agentkit/ws/publish/{task_id}``: the kernel that created a task sends its events.

    Server -> kernel first: ``{"type": "resume", "last_seq": n}`` (what the server
    holds). Kernel -> server: ``{"type": "event", "event": StepEvent.to_dict(), "seq":
    n}`` for each event after that. Server -> kernel: ``{"type": "cancel", "reason":
    ...}`` when a viewer cancels (also on a reconnect after one), and ``error``
    messages for refused events. A publisher whose connection drops may reconnect
    and resume within ``publisher_reconnect_timeout``; after that the task fails
    (``kernel_disconnected``).
    """

    task: Task | None = None
    _unregister: Callable[[], None] | None = None
    _generation = 0
    _fatal = False

    async def get(self, task_id: str) -> None:
        await self._check_before_upgrade("write")
        await super().get(task_id)

    def _refuse(self, code: ErrorCode, message: str, close: CloseCode) -> None:
        try:
            self.write_message(dumps(error_message(code, message)))
        except WebSocketClosedError:
            return
        self.close(close, message[:120])

    def _start(self, task_id: str) -> None:
        try:
            task = self.hub.get(task_id)
        except UnknownTaskError:
            self._refuse(ErrorCode.UNKNOWN_TASK, "No task with that id.", CloseCode.UNKNOWN_TASK)
            return
        if not task.check_publish_secret(self.request.headers.get(PUBLISH_TOKEN_HEADER)):
            self._refuse(
                ErrorCode.FORBIDDEN,
                "Only the kernel that created this task may publish to it.",
                CloseCode.FORBIDDEN,
            )
            return
        try:
            self._generation = task.attach_publisher()
        except (PublishError, TaskFinishedError) as exc:
            self._refuse(ErrorCode.FORBIDDEN, str(exc), CloseCode.FORBIDDEN)
            return
        self.task = task
        # Where to resume: a reconnecting publisher sends what comes after this.
        self._send_text(dumps(publish_resume_message(task.log.last_seq)))
        loop = asyncio.get_running_loop()

        def forward_cancel(reason: str | None) -> None:
            message = dumps(publish_cancel_message(reason))
            loop.call_soon_threadsafe(self._send_text, message)

        def forward_control(message: PublishControlMessage) -> None:
            self._send_text(dumps(message))

        unregister_cancel = task.token.add_callback(forward_cancel)
        # Decisions, pause and resume for the kernel's run (again after a reconnect).
        detach_control = task.control.attach_forwarder(forward_control)

        def unregister() -> None:
            unregister_cancel()
            detach_control()

        self._unregister = unregister

    async def on_message(self, message: str | bytes) -> None:
        await self._guarded("handling an event from", lambda: self._on_message(message))

    def _internal_error(self, doing: str) -> None:
        self._fatal = True  # our fault, not a dropped connection: no reconnect to wait for
        super()._internal_error(doing)

    def _on_message(self, message: str | bytes) -> None:
        if self.task is None:
            return
        if self._generation != self.task.publisher_generation:
            self._close(CloseCode.FORBIDDEN, "A newer connection of this kernel publishes.")
            return
        try:
            raw = json.loads(message)
            if not isinstance(raw, dict) or raw.get("type") != "event":
                raise PublishError(
                    ErrorCode.INVALID_MESSAGE, "Expected {'type': 'event', 'event': {...}}."
                )
            self.task.publish_external(raw.get("event"), raw.get("seq"))
        except (ValueError, RecursionError) as exc:
            code = exc.code if isinstance(exc, PublishError) else ErrorCode.INVALID_JSON
            self._send_text(
                dumps(
                    error_message(
                        code,
                        str(exc)
                        if isinstance(exc, PublishError)
                        else "The message is not valid JSON.",
                    )
                )
            )
        except TaskFinishedError:
            self._send_text(dumps(error_message(ErrorCode.TASK_FINISHED, "The task has ended.")))
        if self.task.finished:
            self.close(CloseCode.NORMAL, "Task finished")

    def on_close(self) -> None:
        super().on_close()
        if self._unregister is not None:
            self._unregister()
        if self.task is not None:
            self.task.publisher_lost(self._generation, at_once=self._fatal)


_WS = "/" + TASK_WS_PREFIX
_PUBLISH = "/" + PUBLISH_WS_PREFIX
default_handlers: list[tuple[str, type[WebSocketHandler]]] = [
    (rf"{_WS}{TASK_ID}", TaskStreamHandler),
    (rf"{_PUBLISH}{TASK_ID}", PublishHandler),
]
