"""Faults on the client's side of the wire: a client that goes silent and never answers
anything (not a ping, not the close), and a network stall followed by a resume."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from conftest import read_until_result
from raw_ws import raw_connect
from websockets.exceptions import ConnectionClosed

HEARTBEAT = 1.0


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {"heartbeat_timeout": HEARTBEAT}


async def create(api: Any, agent: str) -> str:
    _, body = await api("POST", "tasks", body={"agent": agent, "input": "q"})
    return str(body["task_id"])


async def test_a_client_that_never_answers_anything_is_cut_and_forgotten(
    api: Any, ws_connect: Any, jp_http_port: int, jp_base_url: str, jp_auth_header: dict[str, str]
) -> None:
    task_id = await create(api, "hang-llm")
    path = f"{jp_base_url}agentkit/ws/tasks/{task_id}"
    mute = await raw_connect(jp_http_port, path, dict(jp_auth_header))
    assert mute.status == 101
    assert (await mute.message())["type"] == "connected"
    started = time.monotonic()
    # From now on it reads nothing and sends nothing: no message, no pong, no close.
    await asyncio.sleep(HEARTBEAT + 1.5)
    # The heartbeat closed it after 1 s of silence, and as it never answered the close,
    # its TCP connection was cut a second later (not Tornado's five).
    assert await mute.closed_by_server(timeout=0.5)
    assert time.monotonic() - started < HEARTBEAT + 2.5
    _, task = await api("GET", "tasks", task_id)
    assert task["subscribers"] == 0
    assert task["status"] == "running"  # the run is not affected
    mute.abort()


async def test_a_network_stall_then_a_resume_with_after_loses_nothing(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "demo-slow")  # streams for half a minute
    # max_queue=2: when this client stops reading, its TCP window soon closes too.
    ws = await ws_connect(task_id, max_queue=2)
    seen: list[int] = []

    async def read(count: int) -> None:
        for _ in range(count):
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if "seq" in message:
                seen.append(message["seq"])

    await read(5)
    await asyncio.sleep(HEARTBEAT / 2)  # a short stall: the stream just carries on
    await ws.send('{"type": "ping"}')
    await read(5)
    # A long stall: nothing in either direction for longer than the heartbeat allows.
    await asyncio.sleep(HEARTBEAT + 1.5)
    with pytest.raises(ConnectionClosed):
        while True:  # what arrived before the server gave up on us, then the close
            await read(1)
    assert (ws.close_code, ws.close_reason) == (1000, "Heartbeat timeout")
    assert seen == list(range(1, len(seen) + 1))  # in order, no gap, no duplicate
    # Back on the network: resume after the last seq seen.
    ws = await ws_connect(task_id, after=seen[-1])
    connected = json.loads(await ws.recv())
    assert connected["type"] == "connected" and connected["after"] == seen[-1]
    await read(5)
    await ws.send('{"type": "cancel"}')
    rest = [m["seq"] for m in await read_until_result(ws) if "seq" in m]
    assert seen + rest == list(range(1, rest[-1] + 1))
    _, task = await api("GET", "tasks", task_id)
    assert task["status"] == "cancelled" and task["last_seq"] == rest[-1]
