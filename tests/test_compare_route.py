"""``GET agentkit/api/compare?a=<id>&b=<id>`` on a real Jupyter server: two runs of the
demo agent, a fork against its parent, a run with itself, a log longer than one page and
older than memory holds, and the errors."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from agentkit_jupyter import protocol

READ_KEY = "read-" + secrets.token_hex(12)


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {
        # A small window: most of a long log is read back from the task history.
        "max_events_in_memory": 100,
        "api_keys": {"dashboard": {"scope": "read", "key": READ_KEY}},
    }


async def finished(api: Any, task_id: str, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, record = await api("GET", "tasks", task_id, params={"limit": "0"})
            assert status == 200, record
            if protocol.is_final(record["status"]):
                return dict(record)
            await asyncio.sleep(0.05)


async def run(api: Any, agent: str, text: str, timeout: float = 30) -> dict[str, Any]:
    status, record = await api("POST", "tasks", body={"agent": agent, "input": text})
    assert status == 201, record
    return await finished(api, record["task_id"], timeout)


async def compare(api: Any, a: str, b: str) -> protocol.Comparison:
    status, body = await api("GET", "compare", params={"a": a, "b": b})
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def rows_by_key(comparison: protocol.Comparison) -> dict[tuple[int, str], protocol.CompareRow]:
    return {(r["step"], r["key"]): r for r in comparison["rows"]}


async def test_two_runs_of_the_demo_agent_side_by_side(api: Any) -> None:
    rome = await run(api, "demo", "Compare Paris and Rome")
    berlin = await run(api, "demo", "Compare Paris and Berlin")
    comparison = await compare(api, rome["task_id"], berlin["task_id"])

    a, b = comparison["a"], comparison["b"]
    assert (a["task_id"], b["task_id"]) == (rome["task_id"], berlin["task_id"])
    assert a["agent"] == b["agent"] == "demo"
    assert a["status"] == b["status"] == "succeeded"
    assert a["input"] == "Compare Paris and Rome"
    assert a["output"] == rome["result"]["output"] and "Rome" in (a["output"] or "")
    assert a["steps"] == b["steps"] == 3
    assert a["tokens_in"] == rome["tokens_in"] > 0 and a["tokens_out"] == rome["tokens_out"]
    assert a["cost"] is None  # the scripted model has no price
    assert a["duration_s"] is not None and a["duration_s"] > 0

    rows = rows_by_key(comparison)
    assert list(rows) == [
        (1, "thought"),
        (1, "tool:lookup_city:1"),
        (1, "tool:lookup_city:2"),
        (2, "thought"),
        (2, "tool:calculator:1"),
        (3, "answer"),
    ]
    # Both look Paris up first: the same call and the same observation.
    paris = rows[(1, "tool:lookup_city:1")]
    assert paris["same"] is True and paris["diffs"] == {}
    assert paris["a"] is not None and paris["a"]["arguments"] == {"city": "Paris"}
    # The second lookup differs in its arguments and its observation.
    second = rows[(1, "tool:lookup_city:2")]
    assert second["same"] is False and set(second["diffs"]) == {"arguments", "observation"}
    changed = [s for s in second["diffs"]["arguments"] if s["op"] != "equal"]
    assert changed == [{"op": "delete", "text": "Rome"}, {"op": "insert", "text": "Berlin"}]
    answer = rows[(3, "answer")]
    assert answer["same"] is False and "text" in answer["diffs"]
    assert comparison["deltas"]["steps"] == 0
    assert comparison["deltas"]["cost"] is None
    assert comparison["deltas"]["tokens_in"] == berlin["tokens_in"] - rome["tokens_in"]


async def test_a_run_with_itself_is_the_same_everywhere(api: Any) -> None:
    task = await run(api, "demo", "What is 17 * 23?")
    comparison = await compare(api, task["task_id"], task["task_id"])
    assert comparison["rows"] and all(r["same"] and not r["diffs"] for r in comparison["rows"])
    assert all(v == 0 for v in comparison["deltas"].values() if v is not None)


async def test_a_fork_with_an_edited_observation_against_its_parent(api: Any) -> None:
    parent = await run(api, "demo", "What is 17 * 23?")
    _, page = await api("GET", "tasks", parent["task_id"])
    observation = next(
        m
        for m in page["events"]
        if m["type"] == "step" and m["data"]["event_type"] == "observation"
    )
    status, fork = await api(
        "POST",
        "tasks",
        parent["task_id"],
        "fork",
        body={"at_seq": observation["seq"], "edit": {"observation": "400"}},
    )
    assert status == 201, fork
    await finished(api, fork["task_id"])
    comparison = await compare(api, parent["task_id"], fork["task_id"])

    assert comparison["b"]["parent_id"] == parent["task_id"]
    rows = rows_by_key(comparison)
    thought = rows[(1, "thought")]
    assert thought["same"] is True
    assert thought["b"] is not None and thought["b"].get("copied") is True
    call = rows[(1, "tool:calculator:1")]
    assert call["same"] is False and set(call["diffs"]) == {"observation"}
    assert call["a"] is not None and call["a"]["observation"] == "391"
    assert call["b"] is not None and call["b"]["observation"] == "400"
    assert [s for s in call["diffs"]["observation"] if s["op"] != "equal"] == [
        {"op": "delete", "text": "391"},
        {"op": "insert", "text": "400"},
    ]


async def test_a_long_log_read_back_from_the_history(api: Any, jp_serverapp: Any) -> None:
    # Thousands of messages (tokens included): several pages, most of them on disk only.
    task = await run(api, "firehose", "go", timeout=60)
    assert task["last_seq"] > protocol.GET_PAGE_MAX_EVENTS
    hub = jp_serverapp.web_app.settings["agentkit"].hub
    assert hub.get(task["task_id"]).log.first_seq > 1
    comparison = await compare(api, task["task_id"], task["task_id"])
    tools = [r for r in comparison["rows"] if r["key"] == "tool:count:1"]
    assert len(tools) == 200 and all(r["same"] for r in tools)
    assert tools[0]["a"] is not None and tools[0]["a"]["observation"] == "0"
    assert comparison["rows"][-1]["key"] == "answer"
    assert comparison["a"]["steps"] == 201


async def test_errors(api: Any) -> None:
    task = await run(api, "echo", "ping")
    status, body = await api("GET", "compare", params={"a": task["task_id"]})
    assert status == 400 and body["error"]["code"] == protocol.ErrorCode.BAD_REQUEST
    assert "?a=" in body["error"]["message"]
    status, body = await api("GET", "compare")
    assert status == 400 and body["error"]["code"] == protocol.ErrorCode.BAD_REQUEST
    status, body = await api("GET", "compare", params={"a": task["task_id"], "b": ""})
    assert status == 400 and body["error"]["code"] == protocol.ErrorCode.BAD_REQUEST
    status, body = await api("GET", "compare", params={"a": task["task_id"], "b": "nope"})
    assert status == 404 and body["error"]["code"] == protocol.ErrorCode.UNKNOWN_TASK
    status, body = await api("GET", "compare", params={"a": "nope", "b": task["task_id"]})
    assert status == 404 and body["error"]["code"] == protocol.ErrorCode.UNKNOWN_TASK


async def test_a_read_key_may_compare_and_a_wrong_key_may_not(
    api: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> None:
    task = await run(api, "echo", "ping")
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}agentkit/api/compare"
    params = {"a": task["task_id"], "b": task["task_id"]}
    async with httpx.AsyncClient() as client:
        ok = await client.get(url, params=params, headers={"X-AgentKit-Api-Key": READ_KEY})
        wrong = await client.get(url, params=params, headers={"X-AgentKit-Api-Key": "wrong"})
        anonymous = await client.get(url, params=params)
    assert ok.status_code == 200 and ok.json()["rows"][0]["key"] == "answer"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == protocol.ErrorCode.UNAUTHENTICATED
    assert anonymous.status_code == 403
