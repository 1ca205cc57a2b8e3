"""Bounds on what one user can start or hold: running tasks, creations per minute, and
connections to one task. Each answers with its own code, and other users are not hurt."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError
from websockets.asyncio.client import connect

KEY = "other-user-key-0123456789"
OTHER = {"X-AgentKit-Api-Key": KEY}  # a second user: the API key "other"
KEYS = {"other": {"scope": "write", "key": KEY}}
BODY = {"agent": "hang-llm", "input": "q"}


async def create(jp_fetch: Any, agent: str = "hang-llm", path: str = "tasks", **kw: Any) -> Any:
    """(status, body, headers) of a creation."""
    try:
        response = await jp_fetch(
            "agentkit", "api", path, method="POST", body=json.dumps({**BODY, "agent": agent}), **kw
        )
    except HTTPClientError as exc:
        assert exc.response is not None
        return exc.code, json.loads(exc.response.body), exc.response.headers
    return response.code, json.loads(response.body), response.headers


async def until_finished(api: Any, task_id: str) -> None:
    async with asyncio.timeout(10):
        while True:
            _, task = await api("GET", "tasks", task_id, params={"limit": "0"})
            if task["status"] not in ("queued", "running"):
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "agentkit_config", [{"max_running_tasks": 2, "max_creations_per_minute": 0}]
)
async def test_running_tasks_are_capped_with_a_clear_429(api: Any, jp_fetch: Any) -> None:
    first = await create(jp_fetch)
    second = await create(jp_fetch, path="kernel-tasks")  # kernel tasks count too
    assert first[0] == second[0] == 201
    for path in ("tasks", "kernel-tasks"):
        status, body, headers = await create(jp_fetch, path=path)
        assert status == 429
        assert body["error"]["code"] == "too_many_running_tasks"
        assert "max_running_tasks" in body["error"]["message"]
        assert int(headers["Retry-After"]) > 0
    _, listed = await api("GET", "tasks")
    assert len(listed["tasks"]) == 2  # nothing was queued or half-created
    # Once one has ended, there is room again.
    assert (await api("POST", "tasks", first[1]["task_id"], "cancel"))[0] == 202
    await until_finished(api, first[1]["task_id"])
    assert (await create(jp_fetch))[0] == 201


@pytest.mark.parametrize("agentkit_config", [{"max_creations_per_minute": 3, "api_keys": KEYS}])
async def test_creations_are_rate_limited_per_user(api: Any, jp_fetch: Any) -> None:
    for _ in range(3):
        assert (await create(jp_fetch, "echo"))[0] == 201
    status, body, headers = await create(jp_fetch, "echo")
    assert status == 429
    assert body["error"]["code"] == "too_many_creations"
    assert int(headers["Retry-After"]) >= 1
    status, _, _ = await create(jp_fetch, "echo", path="kernel-tasks")
    assert status == 429
    # A typo is not counted against anyone; another user has a budget of their own.
    assert (await create(jp_fetch, "no-such-agent"))[0] == 404
    no_token = {"Authorization": "", **OTHER}
    for _ in range(3):
        assert (await create(jp_fetch, "echo", headers=no_token))[0] == 201
    assert (await create(jp_fetch, "echo", headers=no_token))[0] == 429
    _, listed = await api("GET", "tasks")
    assert len(listed["tasks"]) == 6


@pytest.mark.parametrize("agentkit_config", [{"max_connections_per_user": 2, "api_keys": KEYS}])
async def test_one_user_cannot_take_every_viewer_slot(
    api: Any, ws_connect: Any, ws_url: Any
) -> None:
    _, task = await api("POST", "tasks", body=BODY)
    task_id = task["task_id"]
    mine = [await ws_connect(task_id) for _ in range(2)]
    for ws in mine:
        assert json.loads(await ws.recv())["type"] == "connected"
    third = await ws_connect(task_id)
    message = json.loads(await third.recv())
    assert message["data"]["code"] == "too_many_connections"
    assert "2 connections" in message["data"]["message"]
    await third.wait_closed()
    assert third.close_code == 4009
    assert third.close_reason == "Too many connections from you"
    # Another user still gets in; and a slot freed is a slot again.
    async with connect(ws_url(task_id), additional_headers=OTHER) as other:
        assert json.loads(await other.recv())["type"] == "connected"
    await mine[0].close()
    async with asyncio.timeout(5):
        while (await api("GET", "tasks", task_id, params={"limit": "0"}))[1]["subscribers"] > 1:
            await asyncio.sleep(0.05)
    again = await ws_connect(task_id)
    assert json.loads(await again.recv())["type"] == "connected"
    await again.close()
    await mine[1].close()
