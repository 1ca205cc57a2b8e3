"""One huge event no longer erases the visible history (issue 20, item 3).

A tool returns 16 MiB, or the model answers 16 MiB: the log, the stream and the pages
carry a copy cut to ``max_event_bytes`` with a ``truncated`` marker; every earlier step
stays visible; ``GET tasks/{id}/events/{seq}`` answers the whole message, also after a
restart, with or without a task history.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import read_until_result
from hardening_support import extension
from huge_agents import HUGE, table_text
from server_process import ServerProcess
from test_store import create, get_task, replay_frames

import agentkit_jupyter.protocol as protocol
from agentkit_jupyter.core import AgentPool, CancellationToken, EventType, StepEvent
from agentkit_jupyter.kernel.static_html import render_static_html
from agentkit_jupyter.protocol import MAX_EVENT_BYTES, TRUNCATED_KEY, event_href
from agentkit_jupyter.tasks import EventNotKeptError, HubLimits, TaskHub
from agentkit_jupyter.tasks.bounds import bounded

READ_KEY = "reader-" + secrets.token_hex(12)
HUGE_AGENTS = "--AgentKitExtension.agents=huge_agents:agents"


def _log_messages(frames: list[str]) -> list[dict[str, Any]]:
    messages = [json.loads(frame) for frame in frames]
    assert not [m for m in messages if m["type"] == "error"], messages[:3]
    return [m for m in messages if m["type"] in ("step", "result")]


def _observations(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "step" and m["data"]["event_type"] == "observation"]


def _check_history(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Every step of the huge-output run is there, in order; the 16 MiB observation is
    cut with its marker. Returns that observation's message."""
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    kinds = [m["data"]["event_type"] for m in messages if m["type"] == "step"]
    assert kinds.count("thought") == 2 and kinds.count("tool_call") == 2
    assert kinds[-1] == "final_answer" and messages[-1]["type"] == "result"
    small, huge = _observations(messages)
    assert small["data"]["data"]["output"] == "7"  # the step before is still shown
    assert small["seq"] < huge["seq"]
    data = huge["data"]["data"]
    marker = data[TRUNCATED_KEY]
    cut = marker["fields"]["output"]
    assert cut["chars"] == HUGE and 0 < cut["shown"] < HUGE
    assert data["output"] == table_text()[: cut["shown"]]
    assert marker["href"] == event_href(huge["task_id"], huge["seq"])
    assert marker["bytes"] > HUGE
    assert data["name"] == "dump_table" and data["is_error"] is False
    assert messages[-1]["data"]["output"] == "The table has many rows."
    return huge


def _check_fetch(server: ServerProcess, huge: dict[str, Any], first: dict[str, Any]) -> None:
    href = huge["data"]["data"][TRUNCATED_KEY]["href"]
    response = httpx.get(server.url + href, headers=server.headers, timeout=60)
    assert response.status_code == 200, response.text
    whole = response.json()
    assert whole["type"] == "step" and whole["seq"] == huge["seq"]
    assert whole["data"]["data"]["output"] == table_text()
    assert TRUNCATED_KEY not in whole["data"]["data"]
    # A message that was never cut is answered as it was logged.
    task_id = huge["task_id"]
    response = httpx.get(server.api(f"tasks/{task_id}/events/1"), headers=server.headers)
    assert response.json() == first
    for seq in ("0", "9999", "x"):
        response = httpx.get(server.api(f"tasks/{task_id}/events/{seq}"), headers=server.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_event"
    response = httpx.get(server.api("tasks/nope/events/1"), headers=server.headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_task"


def test_a_16_mib_tool_output_leaves_the_history_visible_also_after_a_restart(
    tmp_path: Path,
) -> None:
    args = (f"--AgentKitExtension.db_path={tmp_path / 'tasks.sqlite3'}", HUGE_AGENTS)
    server = ServerProcess(tmp_path, *args).start()
    try:
        task_id = create(server, "huge-output", "dump the table")
        live = _log_messages(replay_frames(server, task_id))  # (a client's 1 MiB frame limit)
        huge = _check_history(live)
        frames = replay_frames(server, task_id)  # the finished task, replayed
        assert _log_messages(frames) == live
        assert max(len(frame.encode()) for frame in frames) <= MAX_EVENT_BYTES
        task = get_task(server, task_id)
        assert task["first_seq"] == 1 and task["events"] == live
        _check_fetch(server, huge, live[0])
    finally:
        server.stop()
    again = ServerProcess(tmp_path, *args).start()
    try:
        assert _log_messages(replay_frames(again, task_id)) == live
        assert get_task(again, task_id)["events"] == live
        _check_fetch(again, huge, live[0])
    finally:
        again.stop()


# -- in the test server: a 16 MiB answer, read keys, no history -----------------------------


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {
        "agents": ["support:test_agents", "huge_agents:agents"],
        "api_keys": {"dashboard": {"scope": "read", "key": READ_KEY}},
    }


async def _run(
    api: Callable[..., Awaitable[Any]],
    ws_connect: Callable[..., Awaitable[Any]],
    agent: str,
) -> tuple[str, list[dict[str, Any]]]:
    status, created = await api("POST", "tasks", body={"agent": agent, "input": "go"})
    assert status == 201
    ws = await ws_connect(created["task_id"])
    try:
        await read_until_result(ws, timeout=120)  # to its end
    finally:
        await ws.close()
    ws = await ws_connect(created["task_id"])  # and a replay of the finished task
    try:
        messages = await read_until_result(ws)
    finally:
        await ws.close()
    assert messages[0]["type"] == "connected" and messages[0]["status"] == "succeeded"
    return created["task_id"], _log_messages([json.dumps(m) for m in messages])


async def test_a_16_mib_answer_is_cut_in_the_log_the_record_and_the_list(
    api: Callable[..., Awaitable[Any]], ws_connect: Callable[..., Awaitable[Any]]
) -> None:
    task_id, messages = await _run(api, ws_connect, "huge-answer")
    assert _observations(messages)[0]["data"]["data"]["output"] == "1"
    result = messages[-1]
    assert result["type"] == "result"
    cut = result["data"][TRUNCATED_KEY]["fields"]["output"]
    assert cut["chars"] == HUGE and len(result["data"]["output"]) == cut["shown"] < HUGE
    final = messages[-2]["data"]
    assert final["event_type"] == "final_answer"
    assert final["data"][TRUNCATED_KEY]["fields"]["output"]["chars"] == HUGE
    # The record (GET tasks/{id}, and so the history) holds the result as the log does.
    status, record = await api("GET", "tasks", task_id, params={"limit": 0})
    assert status == 200 and record["result"] == result["data"]
    status, listing = await api("GET", "tasks")
    summary = next(t for t in listing["tasks"] if t["task_id"] == task_id)
    assert summary["output_chars"] == HUGE and summary["truncated"] is True
    # The result holds the answer as its step does, and points at the step's whole copy.
    assert result["data"]["output"] == final["data"]["output"]
    href = result["data"][TRUNCATED_KEY]["href"]
    assert href == final["data"][TRUNCATED_KEY]["href"]
    assert href == f"agentkit/api/tasks/{task_id}/events/{messages[-2]['seq']}"
    for headers in ({}, {"X-AgentKit-Api-Key": READ_KEY}):  # a read-only key too
        status, whole = await api("GET", *href.split("/")[2:], headers=headers)
        assert status == 200
        assert whole["data"]["event_type"] == "final_answer"
        assert whole["data"]["data"]["output"] == "z" * HUGE
        assert TRUNCATED_KEY not in whole["data"]["data"]
    status, body = await api(
        "GET", "tasks", task_id, "events", "1", headers={"X-AgentKit-Api-Key": "wrong-key-123"}
    )
    assert status == 401


async def _many_then_huge(token: CancellationToken) -> AsyncIterator[StepEvent]:
    for index in range(50):
        yield StepEvent(EventType.TOKEN, 1, {"delta": f"word{index} "})
    yield StepEvent(
        EventType.OBSERVATION,
        1,
        {"call_id": "c1", "name": "dump", "output": table_text(), "is_error": False},
    )
    yield StepEvent(EventType.FINAL_ANSWER, 2, {"output": "done", "total_steps": 2})


class TestWithoutAHistory:
    @pytest.fixture
    def agentkit_config(self) -> dict[str, Any]:
        return {"db_path": ""}

    async def test_the_history_stays_in_memory_and_the_whole_text_is_served(
        self,
        jp_serverapp: Any,
        api: Callable[..., Awaitable[Any]],
        ws_connect: Callable[..., Awaitable[Any]],
    ) -> None:
        hub = extension(jp_serverapp).hub
        assert hub.store is None
        task = hub.run_source("burst", "q", _many_then_huge)
        await task.wait()
        ws = await ws_connect(task.task_id)
        try:
            messages = await read_until_result(ws)
        finally:
            await ws.close()
        assert messages[0]["type"] == "connected"
        logged = _log_messages([json.dumps(m) for m in messages])  # no events_truncated
        assert [m["seq"] for m in logged] == list(range(1, 54))
        status, page = await api("GET", "tasks", task.task_id)
        assert page["first_seq"] == 1 and page["events"] == logged
        huge = _observations(logged)[0]
        assert huge["data"]["data"][TRUNCATED_KEY]["fields"]["output"]["chars"] == HUGE
        status, whole = await api("GET", "tasks", task.task_id, "events", str(huge["seq"]))
        assert status == 200 and whole["data"]["data"]["output"] == table_text()


async def test_whole_texts_beyond_the_memory_budget_are_said_to_be_unavailable() -> None:
    hub = TaskHub(AgentPool(), HubLimits(max_event_bytes=2048, max_whole_bytes_in_memory=20_000))

    async def source(token: CancellationToken) -> AsyncIterator[StepEvent]:
        yield StepEvent(EventType.OBSERVATION, 1, {"output": "a" * 5_000})
        yield StepEvent(EventType.OBSERVATION, 1, {"output": "b" * 50_000})  # beyond it
        yield StepEvent(EventType.FINAL_ANSWER, 1, {"output": "ok"})

    task = hub.run_source("budget", "q", source)
    await task.wait()
    assert all(entry.size <= 2048 for entry in task.log.read_after(0))
    first = json.loads(await task.read_event(1))
    assert first["data"]["data"]["output"] == "a" * 5_000
    with pytest.raises(EventNotKeptError, match="not kept"):
        await task.read_event(2)


def test_the_static_copy_says_a_step_was_shortened() -> None:
    event: protocol.StepEventData = {
        "event_type": "observation",
        "step": 1,
        "data": {"call_id": "c", "name": "dump_table", "output": table_text()},
        "timestamp": 1.0,
    }
    text = protocol.dumps(protocol.step_message("t1", 3, event))
    cut = bounded(text, MAX_EVENT_BYTES, "t1", 3)
    assert cut is not None and len(cut) <= MAX_EVENT_BYTES
    html = render_static_html(
        {"task_id": "t1", "agent": "a", "status": "succeeded"}, [json.loads(cut)]
    )
    assert "Shortened by the server: showing " in html
    assert f"of {HUGE:,} characters. The whole text: agentkit/api/tasks/t1/events/3" in html
