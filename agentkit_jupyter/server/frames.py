"""The one place that relies on Tornado's private WebSocket protocol class.

A task's log goes to each subscriber as batches of ready-made text frames, one
socket write per batch (``write_message`` costs a future, a task and a ``send()``
per message). That needs Tornado's ``WebSocketProtocol13`` and ``_WebSocketParams``
and a few of the protocol object's attributes; :func:`check_tornado_internals`
says loudly when a Tornado release changes any of them (a test calls it), and
pyproject pins Tornado below its next major version.
"""

from __future__ import annotations

import asyncio
import inspect
import struct
from collections.abc import Sequence
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import (
    WebSocketClosedError,
    WebSocketHandler,
    WebSocketProtocol,
    WebSocketProtocol13,
    _WebSocketParams,
)

from ..protocol import CloseCode, ErrorCode, dumps, error_message

# FIN + text opcode, then the payload length (unmasked) when it fits in 7 bits.
_SMALL_TEXT_HEADERS = [bytes((0x81, length)) for length in range(126)]

# What of Tornado's protocol object the batched writer touches.
_USED_ATTRIBUTES = ("stream", "_compressor", "_message_bytes_out", "_wire_bytes_out")
_USED_PARAMS = ("ping_interval", "ping_timeout", "max_message_size", "compression_options")


class TextFrameProtocol(WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, plus batched text frames and a clear 1007.

    Tornado drops a text frame of invalid UTF-8 by cutting the TCP connection. RFC
    6455 does require failing the connection, but the client deserves to know why:
    send an ``error`` (``invalid_utf8``) and a proper close (1007) first. The client
    can reconnect with ``?after=``; nothing of the run is lost.
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

        The connection is never compressed (the handler's
        ``get_compression_options`` is None) and a server never masks, so a frame is
        its header and the payload as is.
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


def text_frame_protocol(handler: WebSocketHandler, max_message_size: int) -> TextFrameProtocol:
    """The protocol object for one connection: no compression, no Tornado pings
    (Jupyter's ``WebSocketMixin`` pings, its interval in ms where Tornado's is in s)."""
    params = _WebSocketParams(
        ping_interval=None,
        ping_timeout=None,
        max_message_size=max_message_size,
        compression_options=None,
    )
    return TextFrameProtocol(handler, False, params)


def cut(connection: WebSocketProtocol) -> None:
    """Drop the TCP connection (Tornado then runs the handler's on_close)."""
    if connection.stream is not None and not connection.stream.closed():
        connection.stream.close()


def check_tornado_internals() -> list[str]:
    """What the batched writer needs of Tornado and this Tornado lacks (empty: all there)."""
    missing: list[str] = []
    params = inspect.signature(_WebSocketParams).parameters
    missing += [f"_WebSocketParams({name}=)" for name in _USED_PARAMS if name not in params]
    init = inspect.signature(WebSocketProtocol13.__init__).parameters
    if list(init)[1:4] != ["handler", "mask_outgoing", "params"]:
        missing.append("WebSocketProtocol13(handler, mask_outgoing, params)")
    if not callable(getattr(WebSocketProtocol13, "_handle_message", None)):
        missing.append("WebSocketProtocol13._handle_message")
    source = inspect.getsource(WebSocketProtocol13) + inspect.getsource(WebSocketProtocol)
    missing += [
        f"WebSocketProtocol13.{name}" for name in _USED_ATTRIBUTES if f"self.{name}" not in source
    ]
    return missing
