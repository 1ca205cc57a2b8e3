"""Shared pieces of the benchmarks: servers, stream readers, statistics, tables.

- ``bench_server()``: a real ``jupyter server`` subprocess (tests/server_process.py)
  with the extension and the ``bench-firehose`` agent; ``server_rss``/``server_cpu``.
- ``BareServer``: the practical ceiling, a bare Tornado WebSocket handler in its own
  process writing the same messages in a loop (run this file as
  ``_harness.py bare-server PORT``).
- ``read_stream()`` / ``connect_many()``: ``websockets`` clients that check every
  ``seq`` (no gap, no duplicate) and time each message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# tests/ for server_process and llm_server; the package last, so that PYTHONPATH
# (another version of it, to compare) wins over this checkout.
sys.path.insert(0, str(ROOT / "tests"))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from server_process import ServerProcess, free_port  # noqa: E402

__all__ = [
    "BareServer",
    "ServerProcess",
    "StreamStats",
    "add_server_args",
    "bench_server",
    "connect_many",
    "create_task",
    "firehose_input",
    "firehose_messages",
    "machine",
    "machine_info",
    "median",
    "percentile",
    "raise_fd_limit",
    "read_stream",
    "firehose_rate",
    "stream_rate",
    "server_cpu",
    "server_rss",
    "table",
]

STEP_PREFIX = '{"type":"step","seq":'
RESULT_PREFIX = '{"type":"result","seq":'


# -- the machine --------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """What a result depends on: cores, CPU, RAM, versions, date, load."""
    import tornado
    import websockets

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": platform.python_version(),
        "tornado": tornado.version,
        "websockets": websockets.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load at start": load,
    }


def machine() -> str:
    info = machine_info()
    return (
        f"{info['nproc']} cores ({info['cpu']}), {info['ram']} RAM, Python {info['python']}, "
        f"tornado {info['tornado']}, websockets {info['websockets']}; {info['date']}; "
        f"load average at start {info['load at start']}"
    )


def raise_fd_limit(needed: int = 8192) -> None:
    """Thousands of sockets need thousands of descriptors (server processes inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


# -- statistics and tables ----------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, rule, *body])


# -- the server under test ----------------------------------------------------------


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """``--server-arg``: extra command-line options for the servers under test, e.g.
    ``--server-arg=--AgentKitExtension.freeze_startup_objects=False``."""
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="OPTION",
        help="an extra option for the jupyter server under test (repeatable)",
    )


def bench_server(home: Path, *extra_args: str, history: bool = True) -> ServerProcess:
    """A started ``jupyter server`` with ``load_bench_agents``; history in ``home`` or off.

    All of a benchmark's clients are one user: the per-user caps (connections to one
    task, creations per minute) are lifted, the per-task ones stay.
    """
    args = [
        "--AgentKitExtension.load_bench_agents=True",
        "--AgentKitExtension.max_connections_per_user=100000",
        "--AgentKitExtension.max_creations_per_minute=100000",
    ]
    if not history:
        args.append("--AgentKitExtension.db_path=")
    return ServerProcess(home, *args, *extra_args).start()


def _process(server: ServerProcess) -> psutil.Process:
    assert server.proc is not None, "the server is not running"
    return psutil.Process(server.proc.pid)


def server_rss(server: ServerProcess) -> int:
    """Resident memory of the server process, in bytes."""
    return int(_process(server).memory_info().rss)


def server_cpu(server: ServerProcess) -> float:
    """CPU seconds (user + system) the server process has used so far."""
    times = _process(server).cpu_times()
    return float(times.user + times.system)


def firehose_input(count: int, rate: float | None = None, delay: float = 0) -> str:
    """The input of ``bench-firehose``: N events, optionally paced and delayed."""
    text = str(count)
    if rate is not None:
        text += f" rate={rate:g}"
    if delay:
        text += f" delay={delay:g}"
    return text


def firehose_messages(count: int) -> int:
    """The messages of a ``bench-firehose`` run of ``count`` tokens: a step per token,
    the ``usage`` step, the ``final_answer`` step and the ``result``."""
    return count + 3


def create_task(server: ServerProcess, text: str, agent: str = "bench-firehose") -> str:
    response = httpx.post(
        server.api("tasks"), json={"agent": agent, "input": text}, headers=server.headers
    )
    response.raise_for_status()
    return str(response.json()["task_id"])


async def acreate_task(
    client: httpx.AsyncClient, server: ServerProcess, text: str, agent: str = "bench-firehose"
) -> str:
    response = await client.post(
        server.api("tasks"), json={"agent": agent, "input": text}, headers=server.headers
    )
    response.raise_for_status()
    return str(response.json()["task_id"])


# -- stream readers -----------------------------------------------------------------


@dataclass
class StreamStats:
    """What one subscriber saw."""

    joined_at: int = -1  # last_seq in its ``connected`` message
    received: int = 0  # step and result messages
    last_seq: int = 0
    gaps: int = 0  # a seq other than last + 1
    first_at: float = 0.0  # time.time() of the first step
    last_at: float = 0.0  # time.time() of the result
    latencies: list[float] = field(default_factory=list)  # seconds, creation -> arrival
    errors: list[str] = field(default_factory=list)
    result: bool = False
    resumes: int = 0  # reconnections with ?after= after a 4008 (too far behind)
    # time.time() at which the source started producing (the firehose's answer says
    # it): the clock starts there, so events queued before the first arrival count.
    source_started: float | None = None

    @property
    def seconds(self) -> float:
        start = self.source_started if self.source_started is not None else self.first_at
        return self.last_at - start

    @property
    def rate(self) -> float:
        return (self.received - 1) / self.seconds if self.seconds > 0 else float("nan")


def parse_seq(text: str) -> int | None:
    """The ``seq`` of a step or result message without parsing all of it."""
    if text.startswith(STEP_PREFIX):
        start = len(STEP_PREFIX)
    elif text.startswith(RESULT_PREFIX):
        start = len(RESULT_PREFIX)
    else:
        return None
    return int(text[start : text.index(",", start)])


async def open_ws(url: str, headers: dict[str, str], **kwargs: Any) -> ClientConnection:
    return await connect(
        url,
        additional_headers=headers,
        max_size=None,
        compression=None,
        ping_interval=None,
        open_timeout=60,
        **kwargs,
    )


async def connect_many(
    url: str, headers: dict[str, str], count: int, concurrency: int = 50
) -> list[ClientConnection]:
    """``count`` connections to ``url``, ``concurrency`` handshakes at a time; each has
    read its ``connected`` message (returned in ``.connected``)."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> ClientConnection:
        async with gate:
            ws = await open_ws(url, headers)
            hello = json.loads(await ws.recv())
            if hello.get("type") != "connected":
                raise RuntimeError(f"expected 'connected', got {hello}")
            ws.connected = hello  # type: ignore[attr-defined]
            return ws

    return list(await asyncio.gather(*(one() for _ in range(count))))


Reconnect = Callable[[int], Awaitable[ClientConnection]]
TOO_SLOW = 4008


async def read_stream(
    ws: ClientConnection,
    *,
    latency: bool = False,
    on_message: Callable[[str], None] | None = None,
    reconnect: Reconnect | None = None,
) -> StreamStats:
    """Read one task stream to its ``result``; count, check seq, optionally time.

    ``latency``: parse each step and record arrival minus the event's ``timestamp``
    (its creation in the server). ``on_message`` sees every other message (pong...).
    ``reconnect(after)``: when the server drops this reader for being too far behind
    (4008), resume as a real client does, with ``?after=`` the last seq it got.
    """
    stats = StreamStats()
    hello = getattr(ws, "connected", None)
    if hello is not None:
        stats.joined_at = hello["last_seq"]
    current = ws
    while not stats.result:
        try:
            async for text in current:
                assert isinstance(text, str)
                now = time.time()
                seq = parse_seq(text)
                if seq is None:
                    # Not at the start: the message may begin with another key
                    # (can_write comes first since the read-only views).
                    if '"type":"connected"' in text[:64]:
                        if stats.joined_at < 0:
                            stats.joined_at = json.loads(text)["last_seq"]
                    elif reconnect is not None and "subscriber_too_slow" in text:
                        pass  # the notice before a 4008 close: resumed below
                    elif on_message is not None:
                        on_message(text)
                    else:
                        stats.errors.append(text[:200])
                    continue
                if seq != stats.last_seq + 1:
                    stats.gaps += 1
                stats.last_seq = seq
                stats.received += 1
                if stats.received == 1:
                    stats.first_at = now
                if text.startswith(RESULT_PREFIX):
                    stats.result = True
                    stats.last_at = now
                    stats.source_started = _source_started(text)
                    break
                if latency:
                    stats.latencies.append(now - json.loads(text)["data"]["timestamp"])
        except ConnectionClosed:
            pass
        if stats.result:
            break
        if reconnect is None or current.close_code != TOO_SLOW:
            stats.errors.append(f"closed with {current.close_code} before the result")
            break
        if current is not ws:
            await current.close()
        stats.resumes += 1
        current = await reconnect(stats.last_seq)
    if current is not ws:
        await current.close()
    return stats


_STARTED = re.compile(r"started (\d+\.\d+)")


def _source_started(result_text: str) -> float | None:
    output = json.loads(result_text)["data"].get("output")
    match = _STARTED.search(output) if isinstance(output, str) else None
    return float(match.group(1)) if match else None


def check_streams(streams: Sequence[StreamStats], expected: int) -> str:
    """'ok', or what went wrong: loss, gaps, late joiners, errors. (Resumes after a
    4008 are no error: a reader that fell behind came back with ``?after=``.)"""
    problems = []
    lost = sum(expected - s.received for s in streams)
    if lost:
        problems.append(f"{lost} messages lost")
    gaps = sum(s.gaps for s in streams)
    if gaps:
        problems.append(f"{gaps} seq gaps")
    if not all(s.result for s in streams):
        problems.append(f"{sum(not s.result for s in streams)} without result")
    late = sum(s.joined_at > 0 for s in streams)
    if late:
        problems.append(f"{late} joined after the start (replayed)")
    errors = sum(len(s.errors) for s in streams)
    if errors:
        problems.append(
            f"{errors} error messages, e.g. {next(e for s in streams for e in s.errors)}"
        )
    return "; ".join(problems) or "ok"


# -- throughput of one stream to one client ------------------------------------------


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def stream_rate(
    url: str, headers: dict[str, str], pid: int, expected: int
) -> tuple[float, float, float]:
    """Read one stream to its result on one client: (messages per second from the
    first step to the result, CPU share of process ``pid``, CPU share of this one).
    Raises if a message is missing or out of order."""
    ws = await open_ws(url, headers)
    before, client_before = _cpu_seconds(pid), time.process_time()
    stats = await read_stream(ws)
    cpu, client = _cpu_seconds(pid) - before, time.process_time() - client_before
    await ws.close()
    status = check_streams([stats], expected)
    if status != "ok":
        raise RuntimeError(status)
    return stats.rate, cpu / stats.seconds, client / stats.seconds


def firehose_rate(server: ServerProcess, events: int) -> tuple[float, float, float]:
    """``stream_rate`` of a ``bench-firehose`` run of ``events`` events (the client
    connects during a short delay, so it reads the whole run live)."""
    task_id = create_task(server, firehose_input(events, delay=0.3))
    assert server.proc is not None
    expected = firehose_messages(events)
    return asyncio.run(stream_rate(server.ws(task_id), server.headers, server.proc.pid, expected))


# -- the ceiling: a bare Tornado WebSocket handler ------------------------------------


class BareServer:
    """A plain Tornado WebSocketHandler in its own process that sends ``connected``, N
    step messages shaped exactly like the extension's (built and serialised in the
    loop by the same protocol functions), and a ``result``, then closes.

    - ``ws://127.0.0.1:PORT/firehose/N``: one ``write_message`` per message, awaiting
      the write every 500 messages;
    - ``ws://127.0.0.1:PORT/firehose-batched/N``: the same frames, 500 at a time in
      one socket write through the extension's own frame writer
      (``server/frames.py``), awaiting each write, as the extension's writer does.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, count: int, batched: bool = False) -> str:
        path = "firehose-batched" if batched else "firehose"
        return f"ws://127.0.0.1:{self.port}/{path}/{count}"

    def start(self) -> BareServer:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), "bare-server", str(self.port)]
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the bare Tornado server did not start")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _serve_bare(port: int) -> None:
    import tornado.web
    import tornado.websocket

    from agentkit_jupyter.protocol import (
        connected_message,
        dumps,
        result_message,
        step_message,
    )
    from agentkit_jupyter.server.frames import TextFrameProtocol, text_frame_protocol

    def step(task_id: str, seq: int) -> str:
        event = {
            "event_type": "token",
            "step": 1,
            "data": {"delta": "tok "},
            "timestamp": time.time(),
        }
        return dumps(step_message(task_id, seq, event))  # type: ignore[arg-type]

    def result(task_id: str, seq: int, started: str) -> str:
        data = {"status": "succeeded", "task_id": task_id, "output": f"done; {started}"}
        return dumps(result_message(task_id, seq, data))  # type: ignore[arg-type]

    class Firehose(tornado.websocket.WebSocketHandler):
        async def open(self, count: str) -> None:  # type: ignore[override]
            self._job = asyncio.create_task(self.stream(int(count)))

        async def stream(self, count: int) -> None:
            task_id = secrets.token_hex(8)
            self.write_message(dumps(connected_message(task_id, "bare", "running", 0, 0)))
            started = f"started {time.time():.6f}"
            for seq in range(1, count + 1):
                written = self.write_message(step(task_id, seq))
                if seq % 500 == 0:
                    await written
            await self.write_message(result(task_id, count + 1, started))
            self.close(1000, "Task finished")

    class BatchedFirehose(Firehose):
        def get_websocket_protocol(self) -> TextFrameProtocol:  # type: ignore[override]
            return text_frame_protocol(self, 64 * 1024)

        async def stream(self, count: int) -> None:
            task_id = secrets.token_hex(8)
            self.write_message(dumps(connected_message(task_id, "bare", "running", 0, 0)))
            protocol = self.ws_connection
            assert isinstance(protocol, TextFrameProtocol)
            started = f"started {time.time():.6f}"
            batch: list[bytes] = []
            for seq in range(1, count + 2):
                text = step(task_id, seq) if seq <= count else result(task_id, seq, started)
                batch.append(text.encode())
                if len(batch) == 500 or seq == count + 1:
                    await protocol.write_text_frames(batch)
                    batch = []
            self.close(1000, "Task finished")

    async def main() -> None:
        app = tornado.web.Application(
            [(r"/firehose/(\d+)", Firehose), (r"/firehose-batched/(\d+)", BatchedFirehose)]
        )
        app.listen(port, address="127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:2] == ["bare-server"]:
    _serve_bare(int(sys.argv[2]))
