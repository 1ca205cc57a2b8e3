"""A WebSocket client on a bare TCP socket, for what well-behaved libraries refuse to do:
send raw (non-ASCII) header bytes, never answer pings, never read, never close."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from dataclasses import dataclass
from typing import Any


@dataclass
class RawSocket:
    status: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next frame from the server (never masked): (opcode, payload)."""
        async with asyncio.timeout(timeout):
            head = await self.reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", await self.reader.readexactly(8))
            return head[0] & 0x0F, await self.reader.readexactly(length)

    async def message(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next text message, skipping pings (which this client never answers)."""
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == 0x1:
                return json.loads(payload)  # type: ignore[no-any-return]
            if opcode == 0x8:
                raise ConnectionError(f"closed: {close_code(payload)}")

    async def closed_by_server(self, timeout: float) -> bool:
        """Wait (without ever answering anything) until the server cuts the TCP connection."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def abort(self) -> None:
        self.writer.transport.abort()


def close_code(payload: bytes) -> int | None:
    return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None


async def raw_connect(
    port: int, path: str, headers: dict[str, str | bytes], host: str | None = None
) -> RawSocket:
    """Handshake with raw header bytes; returns the socket whatever the status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [
        f"GET {path} HTTP/1.1".encode(),
        f"Host: {host or f'127.0.0.1:{port}'}".encode(),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)),
        b"Sec-WebSocket-Version: 13",
    ]
    for name, value in headers.items():
        raw = value if isinstance(value, bytes) else value.encode()
        lines.append(name.encode() + b": " + raw)
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(5):
        status_line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
    return RawSocket(int(status_line.split()[1]), reader, writer)


async def raw_http(
    port: int, method: str, path: str, headers: dict[str, str], host: str | None = None
) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the path sent exactly as given; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Length: 0", "Connection: close"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    async with asyncio.timeout(5):
        response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
