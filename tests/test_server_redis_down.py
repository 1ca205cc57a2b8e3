"""A server whose Redis (``backend_url``) is not there: clear 503s and error frames,
never a hang or a 500; the default install is not involved."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis_support import free_port


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    # A loopback port nothing listens on: every connection is refused at once.
    return {"backend_url": f"redis://127.0.0.1:{free_port()}/0"}


async def test_rest_calls_that_need_redis_answer_503(api: Any) -> None:
    status, body = await api("POST", "tasks", body={"agent": "echo", "input": "hi"})
    assert status == 503 and body["error"]["code"] == "backend_unavailable"
    status, body = await api("GET", "tasks")
    assert status == 503 and body["error"]["code"] == "backend_unavailable"
    status, body = await api("GET", "tasks", "some-task")
    assert status == 503 and body["error"]["code"] == "backend_unavailable"
    status, body = await api("GET", "agents")  # what needs no Redis still works
    assert status == 200 and body["agents"]


async def test_a_websocket_gets_an_error_frame_and_a_close(ws_connect: Any) -> None:
    ws = await ws_connect("some-task")
    message = json.loads(await ws.recv())
    assert message["type"] == "error" and message["data"]["code"] == "backend_unavailable"
    await ws.wait_closed()
    assert ws.close_code == 1001
