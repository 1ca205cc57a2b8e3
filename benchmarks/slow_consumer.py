"""Slow consumer: one subscriber that reads nothing next to nine that read normally.

    .venv/bin/python benchmarks/slow_consumer.py [--runs 3]

The stalled subscriber is a raw TCP socket (32 KiB receive buffer) that completes
the WebSocket handshake and then never reads a byte, so the kernel's buffers fill
and the server's writes to it back up. On a real ``jupyter server`` (extension,
default configuration: ``subscriber_max_lag_messages`` 5,000,
``subscriber_max_lag_bytes`` 4 MiB), each scenario runs with and without the
stalled subscriber, interleaved:

- firehose: ``bench-firehose`` with 50,000 events as fast as possible; the nine's
  events per second (each; median over them);
- paced: 10,000 events at 1,000 per second; the nine's creation -> arrival
  latency, p50 and p99 over all their samples.

Also the server's resident memory, sampled every 50 ms: its peak growth above the
level before the run, and what became of the stalled socket once it reads again:
``dropped`` (the server cut it short: it was 5,000 messages or 4 MiB behind, on
top of what the kernel's socket buffers absorbed), ``complete`` (it all fitted in
those buffers, up to the ``result``: never behind) or ``open``.
The nine resume with ``?after=`` if they are dropped themselves (as the widget
does; on this machine one client process reading nine fast streams can fall
5,000 messages behind a firehose); resumes are counted, loss and gaps checked.
Targets: the nine keep their throughput and at most double their p99; memory
stays within the caps.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from _harness import (
    ServerProcess,
    add_server_args,
    bench_server,
    check_streams,
    connect_many,
    create_task,
    firehose_input,
    firehose_messages,
    machine,
    median,
    open_ws,
    percentile,
    read_stream,
    server_rss,
    table,
)
from websockets.asyncio.client import ClientConnection

READERS = 9
RECEIVE_BUFFER = 32 * 1024
MiB = 2**20


class StalledReader:
    """A WebSocket client that shakes hands and then never reads."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None

    async def connect(self) -> None:
        parts = urlsplit(self.url)
        # A small receive buffer (which also turns off its autotuning): otherwise the
        # kernel alone would absorb megabytes of a stream of small messages.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {parts.path}?{parts.query} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = await reader.readline()
        if b" 101 " not in status:
            raise RuntimeError(f"handshake refused: {status!r}")
        await reader.readuntil(b"\r\n\r\n")
        # From here on, nothing is read: the transport's buffer and the kernel's fill up.
        writer.transport.pause_reading()
        self.reader, self.writer = reader, writer

    async def fate(self, timeout: float = 15) -> str:
        """Read everything the server sent: 'complete' if it ends with the result
        (everything fitted in the socket buffers: never too far behind), 'dropped' if
        the server cut the stream short (too slow; its last words, the error, were
        queued behind what it could not send), 'open' if it is still connected."""
        assert self.reader is not None and self.writer is not None
        self.writer.transport.resume_reading()
        deadline = time.monotonic() + timeout
        tail = b""
        complete = False
        try:
            while (left := deadline - time.monotonic()) > 0:
                chunk = await asyncio.wait_for(self.reader.read(1 << 20), left)
                if not chunk:
                    break
                complete = complete or b'{"type":"result"' in tail[-64:] + chunk
                tail = chunk
            else:
                return "open"
        except TimeoutError:
            return "open"
        except ConnectionError:
            pass
        finally:
            self.writer.close()
        return "complete" if complete else "dropped"


async def sample_rss(server: ServerProcess, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], server_rss(server))
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except TimeoutError:
            pass


async def one_run(server: ServerProcess, paced: bool, stalled: bool) -> dict[str, float | str]:
    events = 10_000 if paced else 50_000
    task_id = create_task(server, firehose_input(events, rate=1000 if paced else None, delay=1.0))
    url = server.ws(task_id)
    slow = StalledReader(url, server.headers)
    if stalled:
        await slow.connect()
    sockets = await connect_many(url, server.headers, READERS)
    before = server_rss(server)
    peak = [before]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(server, stop, peak))

    async def resume(after: int) -> ClientConnection:
        return await open_ws(server.ws(task_id, after), server.headers)

    streams = await asyncio.gather(
        *(read_stream(ws, latency=paced, reconnect=resume) for ws in sockets)
    )
    stop.set()
    await sampler
    await asyncio.gather(*(ws.close() for ws in sockets))
    fate = await slow.fate() if stalled else "-"
    latencies = [x for s in streams for x in s.latencies]
    return {
        "rate": median([s.rate for s in streams]),
        "p50": percentile(latencies, 50) if paced else float("nan"),
        "p99": percentile(latencies, 99) if paced else float("nan"),
        "growth": (peak[0] - before) / MiB,
        "stalled": fate,
        "resumes": sum(s.resumes for s in streams),
        "status": check_streams(streams, firehose_messages(events)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    add_server_args(parser)
    args = parser.parse_args()
    print(machine())
    cases = [(paced, stalled) for paced in (False, True) for stalled in (False, True)]
    results: dict[tuple[bool, bool], list[dict[str, float | str]]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory() as tmp:
        server = bench_server(Path(tmp), *args.server_arg)
        try:
            asyncio.run(one_run(server, paced=False, stalled=False))  # warm up
            for run in range(args.runs):
                for paced, stalled in cases:
                    out = asyncio.run(one_run(server, paced, stalled))
                    results[(paced, stalled)].append(out)
                    print(f"run {run + 1}, paced={paced}, stalled={stalled}: {out}")
        finally:
            server.stop()

    def med(case: tuple[bool, bool], key: str) -> float:
        return median([float(r[key]) for r in results[case]])

    rows = []
    for paced, stalled in cases:
        case = (paced, stalled)
        rows.append(
            [
                "paced 1,000/s" if paced else "firehose",
                "1 stalled + 9" if stalled else "9 readers",
                f"{med(case, 'rate'):,.0f}",
                f"{med(case, 'p50') * 1000:.2f}" if paced else "-",
                f"{med(case, 'p99') * 1000:.2f}" if paced else "-",
                f"{med(case, 'growth'):.1f}",
                "/".join(str(r["stalled"]) for r in results[case]),
                "/".join(str(r["resumes"]) for r in results[case]),
                "; ".join(sorted({str(r["status"]) for r in results[case]})),
            ]
        )
    print(f"\nmedian of {args.runs} runs\n")
    print(
        table(
            [
                "stream",
                "subscribers",
                "events/s each (the 9)",
                "p50 ms",
                "p99 ms",
                "RSS growth MiB",
                "stalled one",
                "resumes of the 9",
                "the 9: loss / gaps",
            ],
            rows,
        )
    )
    rate_kept = med((False, True), "rate") >= 0.8 * med((False, False), "rate")
    p99_ok = med((True, True), "p99") <= 2 * med((True, False), "p99")
    growth = med((False, True), "growth") - med((False, False), "growth")
    print(f"\ntarget: the nine keep their throughput (>= 80%): {'met' if rate_kept else 'MISSED'}")
    print(f"target: the nine's p99 at most doubles: {'met' if p99_ok else 'MISSED'}")
    print(
        f"the stalled subscriber's extra server memory (firehose): {growth:.1f} MiB "
        f"(caps: 4 MiB of lag per subscriber, plus socket buffers)"
    )


if __name__ == "__main__":
    main()
