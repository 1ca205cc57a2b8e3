"""Kernel agents with the server's tasks on a real Redis: a kernel's run publishes to
its server as on the default hub, and the server writes it through to Redis, so
another server lists it, replays it, and cancels or approves it through the task's
control stream (here a second Redis client stands in for that server, reading and
writing exactly what a server does)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import read_until_result
from redis_support import RedisServer
from test_kernel_agents import (  # noqa: F401 - collected again, on Redis
    kernel,
    test_a_killed_kernel_fails_its_task,
    test_a_notebook_agent_streams_kernel_data_to_any_viewer,
    test_agent_run_in_a_cell_shows_the_widget_of_a_shared_task,
    test_agent_run_in_an_async_cell_and_cancel_from_a_viewer,
    test_cancel_from_a_websocket_client_stops_the_run_in_the_kernel,
    test_only_the_creating_kernel_may_publish,
)
from test_kernel_approvals import *  # noqa: F403
from test_kernel_fork import *  # noqa: F403

from agentkit_jupyter.protocol import ApproveMessage, CancelMessage
from agentkit_jupyter.tasks.redis_backend import RedisBackend

PREFIX = f"agentkit-test-{secrets.token_hex(4)}:"


@pytest.fixture
def agentkit_config(redis_server: RedisServer) -> dict[str, Any]:
    return {"backend_url": redis_server.url, "backend_prefix": PREFIX, "lease_seconds": 5.0}


@pytest.fixture
def other_server(
    redis_server: RedisServer, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Iterator[RedisBackend]:
    backend = RedisBackend.from_url(redis_server.url, PREFIX)
    yield backend
    jp_asyncio_loop.run_until_complete(backend.close())


async def until(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_kernel_run_is_on_redis_and_a_cancel_from_another_server_stops_it(
    kernel: Any,  # noqa: F811
    ws_connect: Any,
    other_server: RedisBackend,
) -> None:
    _, _, execute = await kernel()
    task_id = (await execute("run = LocalRun(slow, 'scan'); print(run.task_id)")).strip()
    record = await until(lambda: other_server.get(task_id))
    assert record["origin"] == "kernel" and record["agent"] == "scanner"

    async def tool_running() -> bool:
        messages = [json.loads(e.data) for e in await other_server.read_after(task_id, 0)]
        return any(m.get("data", {}).get("event_type") == "tool_call" for m in messages)

    await until(tool_running)
    await other_server.send(task_id, CancelMessage(type="cancel", reason="from B"), by="bob")
    ws = await ws_connect(task_id)
    on_a = [m for m in await read_until_result(ws, timeout=10) if "seq" in m]
    assert on_a[-1]["data"]["status"] == "cancelled"
    out = await execute("run.wait(5); print(run.status, interrupted)")
    assert out.strip() == "cancelled ['slow_scan']"

    async def ended() -> dict[str, Any] | None:
        found = await other_server.get(task_id)
        return found if found and found["status"] == "cancelled" else None

    assert (await until(ended))["result"]["reason"] == "from B"
    # The other server's copy is the same log, seq for seq.
    on_b = [json.loads(e.data) for e in await other_server.read_after(task_id, 0)]
    assert on_b == on_a


async def test_a_kernel_run_waiting_for_approval_is_approved_from_another_server(
    kernel: Any,  # noqa: F811
    ws_connect: Any,
    other_server: RedisBackend,
) -> None:
    _, _, execute = await kernel()
    await execute(APPROVAL_CODE)
    task_id = (await execute("run = LocalRun(careful, 'go'); print(run.task_id)")).strip()

    async def waiting() -> dict[str, Any] | None:
        found = await other_server.get(task_id)
        return found if found and found.get("pending_approvals") else None

    call_id = (await until(waiting))["pending_approvals"][0]["call_id"]
    approve = ApproveMessage(type="approve", call_id=call_id)
    await other_server.send(task_id, approve, by="bob")
    ws = await ws_connect(task_id)
    messages = [m for m in await read_until_result(ws, timeout=15) if "seq" in m]
    kinds = [m["data"].get("event_type") for m in messages if m["type"] == "step"]
    assert kinds.count("approval_decided") == 1 and kinds.count("observation") == 1
    assert messages[-1]["data"]["status"] == "succeeded"
    out = await execute("run.wait(5); print(run.status, deleted)")
    assert out.strip() == "succeeded ['q3.csv']"


APPROVAL_CODE = '''
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn, tool
deleted = []

@tool(requires_approval=True)
def delete_file(path: str) -> str:
    """Delete a file.

    Args:
        path: which.
    """
    deleted.append(path)
    return f"deleted {path}"

careful = Agent("careful", ScriptedGateway([
    ScriptedTurn("Deleting.", [("delete_file", {"path": "q3.csv"})]),
    ScriptedTurn("done"),
]), tools=[delete_file])
'''
