"""Heartbeat and the seed api_key, on a server configured with both."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import pytest
from websockets.exceptions import ConnectionClosed

API_KEY = "s3cret-key-42"


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {
        "heartbeat_timeout": 0.6,
        "api_key": API_KEY,
    }


def key_header(key: str = API_KEY) -> dict[str, str]:
    return {"X-AgentKit-Api-Key": key}


async def create(api: Any, agent: str) -> str:
    _, body = await api("POST", "tasks", body={"agent": agent, "input": "q"})
    return str(body["task_id"])


async def test_a_presented_api_key_must_be_right_and_jupyter_auth_needs_none(
    api: Any, ws_connect: Any, ws_url: Any, jp_auth_header: dict[str, str]
) -> None:
    from websockets.asyncio.client import connect

    task_id = await create(api, "hang-llm")
    # The built-in views send Jupyter's auth and no key: they keep working with a key on.
    async with await connect(ws_url(task_id), additional_headers=jp_auth_header) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
    refused = [
        ws_url(task_id, api_key="guess"),
        ws_url(task_id, api_key=quote("s3cret-ключ")),  # non-ASCII guess: refused, no 500
        ws_url(task_id, api_key=quote(API_KEY[:-1])),
    ]
    for url in refused:
        ws = await connect(url, additional_headers=jp_auth_header)
        message = json.loads(await ws.recv())
        assert message["data"] == {
            "code": "unauthenticated",
            "message": "Missing or wrong api_key.",
        }
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4001
    ws = await ws_connect(task_id, headers=key_header("wrong"))
    assert json.loads(await ws.recv())["data"]["code"] == "unauthenticated"

    # Accepted: the header, "Authorization: ApiKey" (with or without Jupyter's token),
    # and the seed's query parameter.
    async with await connect(
        ws_url(task_id), additional_headers={"Authorization": f"ApiKey {API_KEY}"}
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
    async with await ws_connect(task_id, headers=key_header()) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
    token = jp_auth_header["Authorization"].split()[1]
    async with await connect(
        ws_url(task_id, token=token), additional_headers={"Authorization": f"ApiKey {API_KEY}"}
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
    async with await connect(
        ws_url(task_id, api_key=API_KEY), additional_headers=jp_auth_header
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"


async def test_heartbeat_timeout_closes_the_socket_not_the_run(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "hang-llm")
    ws = await ws_connect(task_id, headers=key_header())
    assert json.loads(await ws.recv())["type"] == "connected"
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1000 and ws.close_reason == "Heartbeat timeout"
    assert 0.5 < time.monotonic() - started < 3
    _, task = await api("GET", "tasks", task_id)
    assert task["status"] == "running"

    # A client that keeps pinging stays connected past the timeout.
    ws = await ws_connect(task_id, headers=key_header())
    await ws.recv()
    for _ in range(6):
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv())["type"] == "pong"
        await asyncio.sleep(0.2)
    await ws.close()
