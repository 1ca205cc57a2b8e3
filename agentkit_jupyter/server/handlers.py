"""REST and WebSocket handlers: thin adapters from HTTP to the task hub."""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import struct
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pydantic
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import (
    WebSocketClosedError,
    WebSocketHandler,
    WebSocketProtocol,
    WebSocketProtocol13,
    _WebSocketParams,
)

from ..core import UnknownAgentError
from ..tasks import (
    PublishError,
    Subscription,
    Task,
    TaskFinishedError,
    TaskHub,
    TooManySubscribersError,
    UnknownTaskError,
)
from ..tasks.protocol import (
    PONG,
    CancelMessage,
    ClientMessageError,
    CloseCode,
    ErrorCode,
    connected_message,
    dumps,
    error_message,
    parse_client_message,
)

if TYPE_CHECKING:
    from .app import AgentKitExtension

AUTH_RESOURCE = "agentkit"
MAX_INPUT_CHARS = 100_000


class ApiError(web.HTTPError):
    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.message = message


class CreateTaskBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", strict=True)

    agent: str = pydantic.Field(min_length=1, max_length=200)
    input: str = pydantic.Field(max_length=MAX_INPUT_CHARS)


class CreateKernelTaskBody(CreateTaskBody):
    description: str = pydantic.Field(default="", max_length=2000)


PUBLISH_SECRET_HEADER = "X-AgentKit-Publish-Token"
INTERNAL_ERROR_TEXT = "Internal server error; the details are in the server log."

# Tornado's "Invalid unicode in token: b'...'" quotes (part of) the value it could not decode.
_QUOTED_VALUE = re.compile(r"^(Invalid unicode in [^:]+):.*$", re.DOTALL)


def header_bytes(value: str) -> bytes:
    """The bytes a client sent in a header (Tornado decodes header lines as latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


class _AgentKitMixin(ExtensionHandlerMixin):
    auth_resource = AUTH_RESOURCE

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Log without the query string: it may hold ``?token=`` or ``?api_key=``.

        Tornado's own version logs the request's full URI (and, for an undecodable
        argument, part of its value); Jupyter scrubs only its access log lines.
        """
        request = self.request  # type: ignore[attr-defined]
        where = f"{request.method} {request.path} ({request.remote_ip})"
        log = self.log
        if isinstance(value, web.HTTPError):
            message = value.get_message()
            if message:
                message = _QUOTED_VALUE.sub(r"\1", message)
                log.warning("%d %s: %s", value.status_code, where, message)
        else:
            log.error("Uncaught exception %s", where, exc_info=value)

    def raw_query_argument(self, name: str) -> bytes | None:
        """The last ``?name=`` value as raw bytes (no decoding, so no decoding error)."""
        values = self.request.query_arguments.get(name)  # type: ignore[attr-defined]
        return values[-1] if values else None

    @property
    def agentkit(self) -> AgentKitExtension:
        return self.settings["agentkit"]  # type: ignore[no-any-return]

    @property
    def hub(self) -> TaskHub:
        return self.agentkit.hub

    def ws_path(self, task_id: str) -> str:
        return url_path_join(self.base_url, "agentkit/ws/tasks", task_id)  # type: ignore[no-any-return]

    def task_json(self, task: Task) -> dict[str, Any]:
        return {**task.to_dict(), "ws_url": self.ws_path(task.task_id)}


class _APIBase(_AgentKitMixin, APIHandler):
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code.value, exc.message
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            code = {403: ErrorCode.FORBIDDEN, 404: ErrorCode.NOT_FOUND}.get(
                status_code, ErrorCode.BAD_REQUEST
            ).value
            # log_message is for the log: it can quote request data (e.g. a token).
            message = f"{self._reason}."
        else:  # never send an internal exception's text
            code, message = ErrorCode.INTERNAL_ERROR.value, INTERNAL_ERROR_TEXT
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"code": code, "message": message}}))

    def find_task(self, task_id: str) -> Task:
        try:
            return self.hub.get(task_id)
        except UnknownTaskError:
            raise ApiError(404, ErrorCode.UNKNOWN_TASK, "No task with that id.") from None

    def parse_after(self) -> int | None:
        raw = self.raw_query_argument("after")
        if raw is None:
            return None
        try:
            return parse_after_value(raw)
        except ValueError:
            raise ApiError(
                400, ErrorCode.INVALID_AFTER, "'after' must be an integer >= 0."
            ) from None


def parse_after_value(raw: bytes) -> int:
    """``?after=`` as an integer >= 0 (ASCII digits only), or ValueError."""
    raw = raw.strip()
    if not raw.isdigit():  # bytes.isdigit: ASCII digits only, so no sign, no blanks
        raise ValueError("not a non-negative integer")
    return int(raw)  # ValueError beyond Python's digit limit


class AgentsHandler(_APIBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish({"agents": [agent.summary() for agent in self.hub.agents]})


class TasksHandler(_APIBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish({"tasks": [self.task_json(task) for task in self.hub.all()]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            body = CreateTaskBody.model_validate_json(self.request.body or b"")
        except pydantic.ValidationError as exc:
            fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
            raise ApiError(
                400,
                ErrorCode.INVALID_BODY,
                "Expected a JSON object {'agent': str, 'input': str}; problem with: "
                + ", ".join(fields),
            ) from None
        try:
            task = self.hub.create_task(body.agent, body.input)
        except UnknownAgentError as exc:
            raise ApiError(404, ErrorCode.UNKNOWN_AGENT, exc.message) from None
        self.set_status(201)
        self.set_header("Location", url_path_join(self.request.path, task.task_id))
        self.finish(self.task_json(task))


class KernelTasksHandler(_APIBase):
    """``POST kernel-tasks``: a kernel registers a run it will publish itself."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            body = CreateKernelTaskBody.model_validate_json(self.request.body or b"")
        except pydantic.ValidationError as exc:
            fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
            raise ApiError(
                400,
                ErrorCode.INVALID_BODY,
                "Expected a JSON object {'agent': str, 'input': str, 'description'?: str}; "
                "problem with: " + ", ".join(fields),
            ) from None
        task = self.hub.create_external_task(body.agent, body.input, origin="kernel")
        self.set_status(201)
        self.finish(
            {
                **self.task_json(task),
                "publish_url": url_path_join(self.base_url, "agentkit/ws/publish", task.task_id),
                "publish_token": task.publish_secret,
            }
        )


class TaskHandler(_APIBase):
    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        task = self.find_task(task_id)
        after = self.parse_after() or 0
        body = self.task_json(task)
        body["events"] = [json.loads(e.data) for e in task.log.read_after(after, limit=1 << 30)]
        self.finish(body)

    @web.authenticated
    @authorized
    async def delete(self, task_id: str) -> None:
        self.find_task(task_id)
        self.hub.delete(task_id)
        self.set_status(204)
        self.finish()


class TaskCancelHandler(_APIBase):
    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        task = self.find_task(task_id)
        try:
            self.hub.cancel(task_id, reason="cancelled through the REST API")
        except TaskFinishedError:
            raise ApiError(
                409, ErrorCode.TASK_FINISHED, f"The task already ended ({task.status.value})."
            ) from None
        self.set_status(202)
        self.finish(self.task_json(task))


class _ExplainingProtocol(WebSocketProtocol13):
    """Tornado drops a text frame of invalid UTF-8 by cutting the TCP connection.

    RFC 6455 does require failing the connection, but the client deserves to know
    why: send an ``error`` (``invalid_utf8``) and a proper close (1007) first. The
    client can reconnect with ``?after=``; nothing of the run is lost.
    """

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if opcode == 0x1 and not self.client_terminated:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.write_message(
                    dumps(error_message(ErrorCode.INVALID_UTF8, "Text frames must be UTF-8."))
                )
                self.close(CloseCode.INVALID_DATA, "Invalid UTF-8")
                return None
        return super()._handle_message(opcode, data)

    def write_text_frames(self, payloads: Sequence[bytes]) -> asyncio.Future[None]:
        """Send each UTF-8 payload as one text frame, all in one write to the socket.

        ``write_message`` costs a future, a task and a ``send()`` per message; a batch
        of the task's log goes out here at once, as the same frames. The connection
        is never compressed (``get_compression_options`` is None) and a server never
        masks, so a frame is its header and the payload as is.
        """
        if self.is_closing() or self._compressor is not None:
            raise WebSocketClosedError()
        parts: list[bytes] = []
        size = 0
        for payload in payloads:
            length = len(payload)
            size += length
            if length < 126:
                parts.append(_SMALL_TEXT_HEADERS[length])
            elif length <= 0xFFFF:
                parts.append(struct.pack("!BBH", 0x81, 126, length))
            else:
                parts.append(struct.pack("!BBQ", 0x81, 127, length))
            parts.append(payload)
        frames = b"".join(parts)
        self._message_bytes_out += size
        self._wire_bytes_out += len(frames)
        try:
            return self.stream.write(frames)
        except StreamClosedError:
            raise WebSocketClosedError() from None


# FIN + text opcode, then the payload length (unmasked) when it fits in 7 bits.
_SMALL_TEXT_HEADERS = [bytes((0x81, length)) for length in range(126)]


def _cut(connection: WebSocketProtocol) -> None:
    """Drop the TCP connection (Tornado then runs the handler's on_close)."""
    if connection.stream is not None and not connection.stream.closed():
        connection.stream.close()


class _SocketBase(_AgentKitMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    """What both WebSockets share: closing for sure, and failing without leaking."""

    def get_compression_options(self) -> dict[str, Any] | None:
        return None  # per-message deflate costs about 10x the memory per connection

    def _send_text(self, text: str) -> None:
        try:
            self.write_message(text)
        except WebSocketClosedError:
            pass

    def _send(self, message: dict[str, Any]) -> None:
        self._send_text(dumps(message))

    def _close(self, code: int, reason: str) -> None:
        """Close, and cut the TCP connection a second later if the client never answers
        (Tornado would wait five seconds for a client that does not read)."""
        connection = self.ws_connection  # close() forgets it
        self.close(code, reason[:120])
        if connection is not None:
            asyncio.get_running_loop().call_later(1.0, _cut, connection)

    def _internal_error(self, doing: str) -> None:
        """An unexpected exception: its traceback goes to the log, never to the client."""
        self.log.exception("agentkit: unexpected error while %s %s", doing, self.request.path)
        self._send(error_message(ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_TEXT))
        self._close(CloseCode.INTERNAL_ERROR, "Internal server error")

    async def open(self, task_id: str) -> None:  # type: ignore[override]
        super().open()  # type: ignore[no-untyped-call]  # starts WebSocket pings
        try:
            self._start(task_id)
        except WebSocketClosedError:
            pass
        except Exception:
            self._internal_error("opening")

    def _start(self, task_id: str) -> None:
        """Set up the connection to ``task_id`` (each socket its own way)."""
        raise NotImplementedError

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
        params = _WebSocketParams(
            # Jupyter's WebSocketMixin pings (its ping_interval is in ms, Tornado's in s).
            ping_interval=None,
            ping_timeout=None,
            max_message_size=self.max_message_size,
            compression_options=self.get_compression_options(),
        )
        return _ExplainingProtocol(self, False, params)

    subscription: Subscription | None = None
    _writer: asyncio.Task[None] | None = None
    _heartbeat: asyncio.Task[None] | None = None

    @ws_authenticated
    async def get(self, task_id: str) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403)
        await super().get(task_id)  # type: ignore[no-untyped-call]

    # -- connection lifecycle ---------------------------------------------------------

    def _start(self, task_id: str) -> None:
        # Each write is a whole batch of messages: send it now, do not let Nagle hold
        # it back until the client's (delayed, up to 40 ms) ACK of the previous one.
        self.set_nodelay(True)
        self._last_message_at = time.monotonic()
        self._allowance = self._burst = 2 * self.agentkit.client_message_rate
        self._allowance_at = time.monotonic()
        if not self._api_key_ok():
            self._send(error_message(ErrorCode.UNAUTHENTICATED, "Missing or wrong api_key."))
            self.close(CloseCode.UNAUTHENTICATED, "Unauthenticated")
            return
        try:
            after = self._parse_after()
        except ValueError:
            self._send(error_message(ErrorCode.INVALID_AFTER, "'after' must be an integer >= 0."))
            self.close(CloseCode.NORMAL, "Invalid after")
            return
        try:
            task = self.hub.get(task_id)
        except UnknownTaskError:
            self._send(error_message(ErrorCode.UNKNOWN_TASK, "No task with that id."))
            self.close(CloseCode.UNKNOWN_TASK, "Unknown task")
            return
        last = task.log.last_seq
        notice = None
        if after > last:
            notice = error_message(
                ErrorCode.AFTER_BEYOND_LOG,
                f"'after' is beyond the last event ({last}); streaming from there.",
                last_seq=last,
            )
            after = last
        elif after + 1 < task.log.first_seq:
            first = task.log.first_seq
            notice = error_message(
                ErrorCode.EVENTS_TRUNCATED,
                f"Events before {first} are no longer held; replaying from {first}.",
                first_seq=first,
            )
        try:
            self.subscription = task.subscribe(after)
        except TooManySubscribersError as exc:
            self._send(error_message(ErrorCode.TOO_MANY_SUBSCRIBERS, str(exc)))
            self.close(CloseCode.TOO_MANY_SUBSCRIBERS, "Too many subscribers")
            return
        self.subscription.on_drop(self._on_dropped)
        self._send(connected_message(task.task_id, task.agent, task.status.value, last, after))
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
        if not isinstance(connection, _ExplainingProtocol):
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
        try:
            await self._on_message(message)
        except WebSocketClosedError:
            pass
        except Exception:
            self._internal_error("handling a message from")

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
        if isinstance(parsed, CancelMessage):
            await self._cancel(parsed)
        else:
            self._send_text(PONG)

    async def _cancel(self, message: CancelMessage) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE)
        )
        if not allowed:
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
        return 0 if raw is None else parse_after_value(raw)

    def _presented_api_key(self) -> bytes | None:
        """The key as the client sent it, in bytes: header, ``ApiKey`` scheme, or query."""
        headers = self.request.headers
        value = headers.get("X-AgentKit-Api-Key")
        if value is None:
            scheme, _, rest = headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "apikey":
                value = rest.strip()
        if value is not None:
            return header_bytes(value)
        return self.raw_query_argument("api_key")  # percent-decoded, not UTF-8-decoded

    def _api_key_ok(self) -> bool:
        expected = self.agentkit.api_key
        if not expected:
            return True
        presented = self._presented_api_key()
        if presented is None:
            return False
        # Constant time on bytes: a non-ASCII key is its UTF-8 bytes; undecodable input
        # is simply a wrong key. The key (right or wrong) is never logged nor echoed.
        return hmac.compare_digest(presented, expected.encode("utf-8"))


class PublishHandler(_SocketBase):
    """``agentkit/ws/publish/{task_id}``: the kernel that created a task sends its events.

    Kernel -> server: ``{"type": "event", "event": StepEvent.to_dict()}``.
    Server -> kernel: ``{"type": "cancel", "reason": ...}`` when a viewer cancels, and
    ``error`` messages for refused events. A publisher that goes away before the
    run's end fails the task (``kernel_disconnected``).
    """

    task: Task | None = None
    _unregister: Any = None

    @ws_authenticated
    async def get(self, task_id: str) -> None:
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403)
        await super().get(task_id)  # type: ignore[no-untyped-call]

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
        if not task.check_publish_secret(self.request.headers.get(PUBLISH_SECRET_HEADER)):
            self._refuse(
                ErrorCode.FORBIDDEN,
                "Only the kernel that created this task may publish to it.",
                CloseCode.FORBIDDEN,
            )
            return
        try:
            task.attach_publisher()
        except (PublishError, TaskFinishedError) as exc:
            self._refuse(ErrorCode.FORBIDDEN, str(exc), CloseCode.FORBIDDEN)
            return
        self.task = task
        loop = asyncio.get_running_loop()

        def forward_cancel(reason: str | None) -> None:
            message = dumps({"type": "cancel", "reason": reason})
            loop.call_soon_threadsafe(self._send_text, message)

        self._unregister = task.token.add_callback(forward_cancel)

    def on_message(self, message: str | bytes) -> None:
        try:
            self._on_message(message)
        except WebSocketClosedError:
            pass
        except Exception:
            self._internal_error("handling an event from")

    def _on_message(self, message: str | bytes) -> None:
        if self.task is None:
            return
        try:
            raw = json.loads(message)
            if not isinstance(raw, dict) or raw.get("type") != "event":
                raise PublishError(
                    ErrorCode.INVALID_MESSAGE, "Expected {'type': 'event', 'event': {...}}."
                )
            self.task.publish_external(raw.get("event"))
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
            self.task.publisher_lost()
