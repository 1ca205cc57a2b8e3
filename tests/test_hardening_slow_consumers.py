"""Slow consumers: a subscriber over its cap (messages or bytes) is closed with 4008 within
a second; the others' latency does not even double; the server's memory grows by no more
than the caps allow."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import read_until_result
from hardening_support import ONLY_AGENTKIT, big_tokens, extension
from server_process import ServerProcess
from support import blob
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn
from agentkit_jupyter.server.websocket import TaskStreamHandler

LAG_MESSAGES = 300
LAG_BYTES = 16 * 1024 * 1024  # here the message cap is what trips
MEMORY_LAG_BYTES = 1024 * 1024  # the memory test's byte cap


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {"subscriber_max_lag_messages": LAG_MESSAGES, "subscriber_max_lag_bytes": LAG_BYTES}


def paced_bulky(steps: int = 30, size: int = 64 * 1024) -> Agent:
    """Big messages at a steady pace: the run's own rhythm sets the timing, not the CPU."""
    turns = [ScriptedTurn("working " * 8, [("blob", {"size": size})]) for _ in range(steps)]
    return Agent(
        "paced-bulky",
        ScriptedGateway([*turns, ScriptedTurn("done")], token_delay=0.002),
        tools=[blob],
        max_steps=steps + 1,
    )


async def stuck_client(ws_url: Any, task_id: str, headers: dict[str, str], port: int) -> Any:
    """A client that stops reading: its library queues one frame, its kernel a few KiB."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return await connect(ws_url(task_id), additional_headers=headers, sock=sock, max_queue=1)


async def read_all(ws: ClientConnection, timeout: float = 10) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            async for raw in ws:
                messages.append(json.loads(raw))
    except ConnectionClosed:
        pass
    return messages


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if "seq" in m]


async def test_over_the_message_cap_a_subscriber_is_closed_with_4008_within_a_second(
    api: Any,
    ws_connect: Any,
    ws_url: Any,
    jp_auth_header: dict[str, str],
    jp_http_port: int,
    jp_serverapp: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeline: dict[TaskStreamHandler, dict[str, float]] = {}
    dropped, closed = TaskStreamHandler._on_dropped, TaskStreamHandler.on_close

    def on_dropped(self: TaskStreamHandler, reason: Any) -> None:
        assert self.subscription is not None
        lag_bytes = self.subscription.task.log.lag_bytes(self.subscription.cursor)
        timeline.setdefault(self, {}).update(
            dropped=time.monotonic(), lag=self.subscription.lag, lag_bytes=lag_bytes
        )
        dropped(self, reason)

    def on_close(self: TaskStreamHandler) -> None:
        timeline.setdefault(self, {})["closed"] = time.monotonic()
        closed(self)

    monkeypatch.setattr(TaskStreamHandler, "_on_dropped", on_dropped)
    monkeypatch.setattr(TaskStreamHandler, "on_close", on_close)

    # Many 2 KiB messages, fast.
    # (a pause every 20 messages, so that a reader that does read keeps up).
    extension(jp_serverapp).hub.agents.register(big_tokens("chatty", 5000, 2048, pause_every=20))
    _, body = await api("POST", "tasks", body={"agent": "chatty", "input": "q"})
    task_id = body["task_id"]
    silent = await stuck_client(ws_url, task_id, jp_auth_header, jp_http_port)  # never reads
    waking = await stuck_client(ws_url, task_id, jp_auth_header, jp_http_port)  # reads later
    healthy = await ws_connect(task_id)
    watching = asyncio.ensure_future(read_all(healthy, timeout=60))

    async with asyncio.timeout(20):
        while sum("dropped" in t for t in timeline.values()) < 2:
            await asyncio.sleep(0.01)
    drops = [t["dropped"] for t in timeline.values() if "dropped" in t]
    # The one that wakes up finds every message it missed, then the reason and 4008.
    received = await read_all(waking, timeout=5)
    assert received[-1] == {
        "type": "error",
        "data": {
            "code": "subscriber_too_slow",
            "message": "Too far behind the stream; reconnect with ?after=<last seq>.",
        },
    }
    assert waking.close_code == 4008
    got = seqs(received)
    assert got == list(range(1, len(got) + 1))
    # Both were closed within a second of crossing the cap (the silent one by cutting its
    # TCP connection, as it never answers the close).
    async with asyncio.timeout(5):
        while sum("closed" in t for t in timeline.values() if "dropped" in t) < 2:
            await asyncio.sleep(0.01)
    for moments in timeline.values():
        if "dropped" in moments:
            assert moments["closed"] - moments["dropped"] < 1.3
            # It was the message cap that tripped, not the byte cap.
            assert moments["lag"] > LAG_MESSAGES and moments["lag_bytes"] <= LAG_BYTES
    assert len(drops) == 2

    # It resumes exactly where it stopped; the healthy client saw everything.
    rest = await read_until_result(await ws_connect(task_id, after=got[-1]), timeout=30)
    messages = await watching
    assert messages[-1]["data"]["status"] == "succeeded"
    assert seqs(messages) == list(range(1, seqs(messages)[-1] + 1))
    assert got + seqs(rest) == seqs(messages)
    silent.transport.abort()


async def run_and_time(
    api: Any, ws_connect: Any, stuck: int, connect_stuck: Any
) -> tuple[float, float, list[int]]:
    """Start paced-bulky with ``stuck`` clients that never read; return the healthy
    client's (median latency, seconds to the result, seqs)."""
    _, body = await api("POST", "tasks", body={"agent": "paced-bulky", "input": "q"})
    task_id = body["task_id"]
    stuck_clients = [await connect_stuck(task_id) for _ in range(stuck)]
    healthy = await ws_connect(task_id, max_size=None)
    started = time.monotonic()
    latencies: list[float] = []
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        async for raw in healthy:
            message = json.loads(raw)
            messages.append(message)
            if message["type"] == "step":
                latencies.append(time.time() - message["data"]["timestamp"])
            if message["type"] == "result":
                break
    duration = time.monotonic() - started
    for client in stuck_clients:
        client.transport.abort()
    await healthy.close()
    assert messages[-1]["data"]["status"] == "succeeded"
    return statistics.median(latencies), duration, seqs(messages)


async def test_stuck_subscribers_do_not_even_double_the_others_latency(
    api: Any,
    ws_connect: Any,
    ws_url: Any,
    jp_auth_header: dict[str, str],
    jp_http_port: int,
    jp_serverapp: Any,
) -> None:
    extension(jp_serverapp).hub.agents.register(paced_bulky())

    async def connect_stuck(task_id: str) -> Any:
        return await stuck_client(ws_url, task_id, jp_auth_header, jp_http_port)

    alone = await run_and_time(api, ws_connect, 0, connect_stuck)
    crowded = await run_and_time(api, ws_connect, 4, connect_stuck)
    assert crowded[2] == alone[2]  # the same complete, gap-free stream
    assert crowded[2] == list(range(1, len(crowded[2]) + 1))
    # "At most doubles", with 20 ms of slack for a busy CI machine's scheduling noise.
    assert crowded[0] <= 2 * alone[0] + 0.020, (alone, crowded)
    assert crowded[1] <= 2 * alone[1], (alone[1], crowded[1])
    _, tasks = await api("GET", "tasks")
    assert all(t["subscribers"] == 0 for t in tasks["tasks"])


# -- memory, measured on a server in its own process ------------------------------------


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def memory_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path,
        "--AgentKitExtension.db_path=",
        f"--AgentKitExtension.subscriber_max_lag_bytes={MEMORY_LAG_BYTES}",
        "--AgentKitExtension.agents=hardening_support:hardening_agents",
        *ONLY_AGENTKIT,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def bulky_run(server: ServerProcess, stuck: int) -> None:
    """Run 'big-tokens' (20 MB of messages) with one reader and ``stuck`` non-readers."""
    task_id = httpx.post(
        server.api("tasks"), json={"agent": "big-tokens", "input": "q"}, headers=server.headers
    ).json()["task_id"]
    sockets = []
    for _ in range(stuck):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sockets.append(
            sync_connect(server.ws(task_id), sock=sock, additional_headers=server.headers)
        )
    last, done = 0, False
    while not done:  # a reader slower than this source falls behind too: it resumes
        with sync_connect(
            server.ws(task_id, after=last), additional_headers=server.headers, max_size=None
        ) as ws:
            try:
                while not done:
                    message = json.loads(ws.recv(timeout=30))
                    last = message.get("seq", last)
                    done = message["type"] == "result"
            except ConnectionClosed:
                assert ws.close_code == 4008
    for ws in sockets:
        ws.socket.close()
    httpx.delete(server.api(f"tasks/{task_id}"), headers=server.headers)


def test_memory_grows_by_no_more_than_the_caps(memory_server: ServerProcess) -> None:
    assert memory_server.proc is not None
    pid = memory_server.proc.pid
    bulky_run(memory_server, stuck=0)  # the log's own memory, and warm-up
    bulky_run(memory_server, stuck=0)
    baseline = rss_peak_mib(pid)
    stuck = 8
    bulky_run(memory_server, stuck=stuck)
    growth = rss_peak_mib(pid) - baseline
    # Each stuck subscriber may hold at most its lag cap (plus one message) in its
    # socket's buffer; without caps each would hold the whole 20 MB run.
    budget = stuck * (MEMORY_LAG_BYTES + 64 * 1024) / 2**20 * 2 + 16
    assert growth <= budget, f"peak RSS grew {growth:.1f} MiB; budget {budget:.1f} MiB"
