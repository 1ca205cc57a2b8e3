"""Output of a tool call while it runs: ``tool_output`` and ``tool_progress`` events.

Inside a tool call, ``emit(text)`` streams a piece of output and ``progress(done,
total, message)`` its progress; a generator tool's yielded pieces and what a tool
prints go the same way. Each call has a :class:`ToolStream`, found through a context
variable (so it follows the call into its worker thread and into the tasks it starts)
and thread-safe: pieces written from a worker thread are handed to the run's loop.

Pieces written close together become one event (every ``COALESCE_SECONDS``), and a
call streams at most ``MAX_TOOL_OUTPUT_CHARS`` (then one ``cut`` piece): a tool that
prints in a tight loop costs a few events, not one per line.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from ..protocol import MAX_TOOL_OUTPUT_CHARS
from .events import EventType, StepEvent

COALESCE_SECONDS = 0.05

_current: contextvars.ContextVar[ToolStream | None] = contextvars.ContextVar(
    "agentkit_tool_stream", default=None
)


class ToolStream:
    """Where one running call's output goes: events for the run, in order."""

    def __init__(
        self,
        call_id: str,
        name: str,
        step: int,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[StepEvent], None],
    ) -> None:
        self.call_id = call_id
        self.name = name
        self.step = step
        self._loop = loop
        self._deliver = deliver  # called on the loop
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._scheduled = False
        self._streamed = 0
        self._cut = False
        self.closed = False
        # All the text written, for a generator tool's observation.
        self.text_parts: list[str] = []

    # -- from any thread ------------------------------------------------------------

    def write(self, text: str) -> int:
        if not text or self.closed:
            return len(text)
        with self._lock:
            self._buffer.append(text)
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self._on_loop(lambda: self._loop.call_later(COALESCE_SECONDS, self.flush))
        return len(text)

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        if self.closed:
            return
        data = {
            "call_id": self.call_id,
            "name": self.name,
            "progress": float(done),
            "total": None if total is None else float(total),
            "message": None if message is None else str(message),
        }

        def send() -> None:
            self.flush()  # what was written before the progress comes before it
            self._deliver(StepEvent(EventType.TOOL_PROGRESS, self.step, data))

        self._on_loop(send)

    # -- on the loop ---------------------------------------------------------------------

    def flush(self) -> None:
        with self._lock:
            pieces, self._buffer = self._buffer, []
            self._scheduled = False
        if not pieces or self._cut:
            return
        text = "".join(pieces)
        room = MAX_TOOL_OUTPUT_CHARS - self._streamed
        data: dict[str, Any] = {"call_id": self.call_id, "name": self.name}
        if len(text) > room:
            text, self._cut = text[:room], True
            data["cut"] = True
        self._streamed += len(text)
        data["text"] = text
        self._deliver(StepEvent(EventType.TOOL_OUTPUT, self.step, data))

    def close(self) -> None:
        """The call ended: what is buffered goes out now (before its observation)."""
        self.flush()
        self.closed = True

    def _on_loop(self, func: Callable[[], Any]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            func()
        else:
            try:
                self._loop.call_soon_threadsafe(func)
            except RuntimeError:
                pass  # the run's loop is gone: nobody reads this output


def current_stream() -> ToolStream | None:
    """The running tool call's stream (None outside a tool call)."""
    return _current.get()


def bind(stream: ToolStream | None) -> contextvars.Token[ToolStream | None]:
    return _current.set(stream)


def unbind(token: contextvars.Token[ToolStream | None]) -> None:
    _current.reset(token)


def emit(text: Any) -> bool:
    """Stream ``text`` as the running tool call's output (a ``tool_output`` event);
    False outside a tool call (nothing is sent)."""
    stream = _current.get()
    if stream is None:
        return False
    stream.write(text if isinstance(text, str) else str(text))
    return True


def progress(done: float, total: float | None = None, message: str | None = None) -> bool:
    """Say how far the running tool call is (a ``tool_progress`` event: ``done`` of
    ``total``, with an optional ``message``); False outside a tool call."""
    stream = _current.get()
    if stream is None:
        return False
    stream.progress(done, total, message)
    return True


class _PrintsOfToolCalls:
    """``sys.stdout`` that sends what a tool call prints to its stream and everything
    else (the notebook's own prints) where it went before."""

    def __init__(self, original: IO[str]) -> None:
        self._original = original

    def write(self, text: str) -> int:
        stream = _current.get()
        if stream is not None and not stream.closed:
            return stream.write(text)
        return self._original.write(text)

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def capture_prints() -> None:
    """Route tool calls' prints to their streams (idempotent; done again when
    something else replaced ``sys.stdout`` since, as a notebook or a test runner does)."""
    if not isinstance(sys.stdout, _PrintsOfToolCalls) and sys.stdout is not None:
        sys.stdout = _PrintsOfToolCalls(sys.stdout)
