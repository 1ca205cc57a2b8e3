"""The REST API under {base_url}agentkit/api/, against a real Jupyter server."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_status(api: Any, task_id: str, *statuses: str, timeout: float = 15) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            _, task = await api("GET", "tasks", task_id)
            if task["status"] in statuses:
                return task
            await asyncio.sleep(0.05)


async def test_list_agents(api: Any) -> None:
    status, body = await api("GET", "agents")
    assert status == 200
    names = [a["name"] for a in body["agents"]]
    assert {"demo", "demo-slow", "echo"} <= set(names)
    demo = next(a for a in body["agents"] if a["name"] == "demo")
    assert [t["name"] for t in demo["tools"]] == ["lookup_city", "calculator"]
    assert demo["description"]


async def test_create_run_and_read_a_task(api: Any, jp_base_url: str) -> None:
    status, created = await api("POST", "tasks", body={"agent": "demo", "input": "Paris vs Rome"})
    assert status == 201
    task_id = created["task_id"]
    assert created["status"] in ("queued", "running")
    assert created["ws_url"] == f"{jp_base_url}agentkit/ws/tasks/{task_id}"

    task = await wait_status(api, task_id, "succeeded")
    assert task["result"]["output"].startswith("Paris")
    assert task["result"]["total_steps"] == 3
    events = task["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "result"
    assert {e["data"]["event_type"] for e in events[:-1]} >= {
        "token",
        "thought",
        "tool_call",
        "observation",
        "final_answer",
    }
    _, tail = await api("GET", "tasks", task_id, params={"after": len(events) - 2})
    assert [e["seq"] for e in tail["events"]] == [len(events) - 1, len(events)]

    _, listing = await api("GET", "tasks")
    assert task_id in [t["task_id"] for t in listing["tasks"]]


async def test_cancel_then_409_then_delete(api: Any) -> None:
    _, created = await api("POST", "tasks", body={"agent": "hang-llm", "input": "x"})
    task_id = created["task_id"]
    status, body = await api("POST", "tasks", task_id, "cancel")
    assert status == 202
    task = await wait_status(api, task_id, "cancelled", timeout=3)
    assert task["result"]["status"] == "cancelled"
    assert task["events"][-2]["data"]["event_type"] == "cancelled"

    status, body = await api("POST", "tasks", task_id, "cancel")
    assert status == 409 and body["error"]["code"] == "task_finished"

    status, _ = await api("DELETE", "tasks", task_id)
    assert status == 204
    status, body = await api("GET", "tasks", task_id)
    assert status == 404 and body["error"]["code"] == "unknown_task"


async def test_bad_requests_get_json_errors(api: Any) -> None:
    cases = [
        ("not json", "invalid_body"),
        ("[1, 2]", "invalid_body"),
        ({"agent": "demo"}, "invalid_body"),
        ({"agent": 3, "input": "x"}, "invalid_body"),
        ({"agent": "demo", "input": None}, "invalid_body"),
    ]
    for body, code in cases:
        status, answer = await api("POST", "tasks", body=body)
        assert status == 400, body
        assert answer["error"]["code"] == code and answer["error"]["message"]

    status, answer = await api("POST", "tasks", body={"agent": "nope", "input": "x"})
    assert status == 404
    assert answer["error"]["code"] == "unknown_agent"
    assert "demo" in answer["error"]["message"]  # lists what exists, never falls back

    for method, path in [
        ("GET", ("tasks", "0123456789abcdef")),
        ("POST", ("tasks", "missing", "cancel")),
        ("DELETE", ("tasks", "missing")),
        ("GET", ("tasks", "..%2F..%2Fetc")),
    ]:
        status, answer = await api(method, *path)
        assert status == 404 and answer["error"]["code"] == "unknown_task", path

    _, created = await api("POST", "tasks", body={"agent": "echo", "input": "x"})
    for after in ("-1", "abc", "1.5"):
        status, answer = await api("GET", "tasks", created["task_id"], params={"after": after})
        assert status == 400 and answer["error"]["code"] == "invalid_after"


async def test_requests_without_credentials_are_refused(jp_fetch: Any) -> None:
    from tornado.httpclient import HTTPClientError

    for headers in ({"Authorization": ""}, {"Authorization": "token wrong"}):
        try:
            await jp_fetch("agentkit", "api", "tasks", headers=headers)
        except HTTPClientError as exc:
            assert exc.code == 403
        else:
            raise AssertionError("unauthenticated request accepted")
