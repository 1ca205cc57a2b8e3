"""A real chat-completions HTTP server on 127.0.0.1, for tests and benchmarks.

It speaks enough of the OpenAI API for any client: ``POST /v1/chat/completions``
answered with server-sent events (``stream: true``) or one JSON body. Each test queues
:class:`Reply` objects, which the server plays in order, one per request (retries
included), and reads back :attr:`FakeLLMServer.requests` to see what arrived::

    with FakeLLMServer() as server:
        server.enqueue(Reply.failure(429), Reply(text="Hello there"))
        ...  # point a client at server.url
        assert len(server.requests) == 2

A reply can stream text in several chunks, stream tool calls in pieces (several in
one turn, even interleaved), end with a usage chunk, fail with any status, wait
before answering or before its first chunk, and drop the connection mid-stream.
Every request records whether the client hung up while it was being answered.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeLLMServer", "FakeToolCall", "RecordedRequest", "Reply"]

_WORDS = re.compile(r"\S+\s*|\s+")
_POLL = 0.01


@dataclass(frozen=True)
class FakeToolCall:
    """A tool call the fake model makes; ``arguments`` streams in ``pieces`` parts."""

    name: str
    arguments: str | dict[str, Any] = "{}"
    id: str | None = None
    pieces: int = 3

    @property
    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """What the server answers to one request.

    ``text`` streams word by word unless ``chunks`` gives the pieces. ``usage`` is
    ``(prompt_tokens, completion_tokens)``, sent in a final chunk when the client asks
    for it (``stream_options.include_usage``) and always in a JSON answer; ``None``
    sends none. A ``status`` other than 200 answers an OpenAI-style error JSON with
    ``error`` as its message. ``delay`` waits before the status line,
    ``first_chunk_delay`` after the headers, ``chunk_delay`` between chunks.
    ``close_after`` drops the connection after that many SSE events (without the end
    of the chunked body); ``drop`` hangs up before answering at all; ``end_early``
    ends the stream cleanly but without the finishing chunk. ``interleave`` streams
    several tool calls' pieces in turn.
    """

    text: str = ""
    tool_calls: Sequence[FakeToolCall] = ()
    chunks: Sequence[str] | None = None
    usage: tuple[int, int] | None = (12, 7)
    status: int = 200
    error: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0
    close_after: int | None = None
    interleave: bool = False
    finish_reason: str | None = None
    drop: bool = False
    end_early: bool = False

    @classmethod
    def failure(
        cls,
        status: int = 500,
        error: str = "scripted failure",
        *,
        retry_after_ms: int | None = 10,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """An error answer; ``retry_after_ms`` keeps the client's retries fast."""
        extra = dict(headers or {})
        if retry_after_ms is not None:
            extra.setdefault("retry-after-ms", str(retry_after_ms))
        return cls(status=status, error=error, headers=extra)

    def text_pieces(self) -> list[str]:
        return list(self.chunks) if self.chunks is not None else _WORDS.findall(self.text)


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw_body: bytes
    reply: Reply | None = None
    disconnected: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    events_sent: int = 0

    @property
    def body(self) -> Any:
        try:
            return json.loads(self.raw_body or b"null")
        except json.JSONDecodeError:
            return None

    @property
    def messages(self) -> list[dict[str, Any]]:
        body = self.body
        return list(body.get("messages", [])) if isinstance(body, dict) else []


class _Disconnected(Exception):
    """The client hung up while we were answering."""


class _Stopping(Exception):
    """The server is shutting down."""


class FakeLLMServer:
    """A threaded HTTP server on a free loopback port; see the module docstring."""

    def __init__(self, model: str = "fake-model") -> None:
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm-server"
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, hang up on every client and wait for the handler threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not running"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The API root to give a client as ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- the script -------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._replies)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until ``count`` requests arrived; returns them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.requests)} of {count} requests arrived")
                self._changed.wait(left)
            return list(self.requests)

    def _record(self, request: RecordedRequest) -> Reply | None:
        with self._changed:
            request.reply = self._replies.popleft() if self._replies else None
            self.requests.append(request)
            self._changed.notify_all()
            return request.reply

    def _pause(self, conn: socket.socket, seconds: float) -> None:
        """Wait, but notice at once when the client hangs up or the server stops."""
        deadline = time.monotonic() + seconds
        while True:
            if self._stopping.is_set():
                raise _Stopping
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                readable, _, _ = select.select([conn], [], [], min(_POLL, left))
                if readable and not conn.recv(1, socket.MSG_PEEK):
                    raise _Disconnected
            except (OSError, ValueError) as exc:
                raise _Disconnected from exc
            if readable:  # data we do not expect (a pipelined request): just wait
                time.sleep(min(_POLL, max(left, 0)))


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True
    fake: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up is a normal event here, not a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        fake = self.server.fake
        with fake._lock:
            fake._connections.add(self.connection)
        if fake._stopping.is_set():  # accepted while closing: hang up at once
            self._hang_up()

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            fake = self.server.fake
            self._send_json(
                200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]}
            )
        else:
            self._send_json(404, _error_body("not found", "invalid_request_error"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            method="POST",
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            raw_body=raw,
        )
        fake = self.server.fake
        reply = fake._record(request)
        try:
            self._answer(request, reply)
        except _Disconnected:
            request.disconnected.set()
            self.close_connection = True
        except _Stopping:
            self.close_connection = True
        except OSError:  # BrokenPipe, ConnectionReset: the client is gone
            request.disconnected.set()
            self.close_connection = True
        finally:
            request.answered.set()

    # -- answers ----------------------------------------------------------------------

    def _answer(self, request: RecordedRequest, reply: Reply | None) -> None:
        fake = self.server.fake
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, _error_body(f"no route {self.path}", "invalid_request_error"))
            return
        body = request.body
        if not isinstance(body, dict):
            self._send_json(400, _error_body("the body is not a JSON object", "invalid_json"))
            return
        if reply is None:
            self._send_json(
                400,
                _error_body("fake server: no scripted reply left", "script_exhausted"),
                {"x-should-retry": "false"},
            )
            return
        if reply.delay:
            fake._pause(self.connection, reply.delay)
        if reply.drop:
            self._hang_up()
            return
        if reply.status != 200:
            self._send_json(
                reply.status, _error_body(reply.error, _error_type(reply.status)), reply.headers
            )
            return
        model = str(body.get("model") or fake.model)
        if not body.get("stream"):
            self._send_json(200, _completion(reply, model), reply.headers)
            return

        options = body.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        if reply.first_chunk_delay:
            fake._pause(self.connection, reply.first_chunk_delay)
        for n, event in enumerate(_events(reply, model, include_usage)):
            if reply.close_after is not None and n >= reply.close_after:
                self._hang_up()
                return
            if n and reply.chunk_delay:
                fake._pause(self.connection, reply.chunk_delay)
            self._write_chunk(event)
            request.events_sent += 1
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _hang_up(self) -> None:
        """Drop the connection in the middle of the chunked body."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _error_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "invalid_api_key",
        403: "permission_denied",
        404: "not_found",
        429: "rate_limit_exceeded",
    }.get(status, "server_error")


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _finish_reason(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _call_id(call: FakeToolCall, index: int) -> str:
    return call.id or f"call_fake_{index}"


def _split(text: str, pieces: int) -> list[str]:
    if pieces <= 1 or len(text) <= 1:
        return [text]
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _events(reply: Reply, model: str, include_usage: bool) -> Iterator[bytes]:
    """The SSE events of a streamed answer, without the final ``[DONE]``."""
    created = int(time.time())

    def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    yield event(delta({"role": "assistant", "content": ""}))
    for piece in reply.text_pieces():
        yield event(delta({"content": piece}))

    streams: list[list[dict[str, Any]]] = []
    for index, call in enumerate(reply.tool_calls):
        first = {
            "index": index,
            "id": _call_id(call, index),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        rest = [
            {"index": index, "function": {"arguments": part}}
            for part in _split(call.arguments_text, call.pieces)
        ]
        streams.append([first, *rest])
    if reply.interleave:
        ordered = [
            s[i] for i in range(max(map(len, streams), default=0)) for s in streams if i < len(s)
        ]
    else:
        ordered = [piece for stream in streams for piece in stream]
    for piece in ordered:
        yield event(delta({"tool_calls": [piece]}))

    if reply.end_early:
        return
    yield event(delta({}, _finish_reason(reply)))
    if include_usage and reply.usage is not None:
        prompt, completion = reply.usage
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        yield event([], usage)


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` answer."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(call, index),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_text},
            }
            for index, call in enumerate(reply.tool_calls)
        ]
    payload: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
        ],
    }
    if reply.usage is not None:
        prompt, completion = reply.usage
        payload["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return payload
