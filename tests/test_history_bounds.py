"""Nothing lost, nothing unbounded: deleted stays deleted, finished logs live on disk,
``GET tasks/{id}`` is paged (issue 13, items 1, 8 and 12)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import read_until_result
from hardening_support import extension
from server_process import ServerProcess
from test_store import create, get_task, replay_frames
from websockets.sync.client import connect

from agentkit_jupyter.core import CancellationToken, EventType, StepEvent
from agentkit_jupyter.kernel.client import AgentKitClient, ServerInfo
from agentkit_jupyter.protocol import GET_PAGE_MAX_EVENTS
from agentkit_jupyter.tasks import HubLimits

# -- deleted stays deleted ---------------------------------------------------------------


async def _read_all(
    ws_connect: Callable[..., Awaitable[Any]], task_id: str, **kwargs: Any
) -> list[dict[str, Any]]:
    """A task's stream to its result, on a connection closed afterwards."""
    ws = await ws_connect(task_id, **kwargs)
    try:
        return await read_until_result(ws)
    finally:
        await ws.close()


def _wait_for_events(server: ServerProcess, task_id: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = httpx.get(
            server.api(f"tasks/{task_id}"), params={"limit": 0}, headers=server.headers
        ).json()
        if record["last_seq"] >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not get {count} events")


def test_a_task_deleted_while_it_runs_stays_deleted_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    server = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        kept = create(server, "echo")
        slow = create(server, "demo-slow", "look it up")
        _wait_for_events(server, slow, 3)
        # A kernel task too: registered, publishing, deleted, then publishing on.
        registered = httpx.post(
            server.api("kernel-tasks"),
            json={"agent": "notebook", "input": "q"},
            headers=server.headers,
        ).json()
        kernel_task = registered["task_id"]
        event = {"event_type": "token", "step": 1, "data": {"delta": "a"}, "timestamp": 1.0}
        with connect(
            f"ws://127.0.0.1:{server.port}{registered['publish_url']}",
            additional_headers={
                **server.headers,
                "X-AgentKit-Publish-Token": registered["publish_token"],
            },
        ) as publisher:
            publisher.send(json.dumps({"type": "event", "event": event}))
            _wait_for_events(server, kernel_task, 1)
            for task_id in (slow, kernel_task):
                response = httpx.delete(server.api(f"tasks/{task_id}"), headers=server.headers)
                assert response.status_code == 204
            # Events published after the delete are dropped.
            for _ in range(5):
                publisher.send(json.dumps({"type": "event", "event": event}))
            time.sleep(0.5)
        # The slow run's cancellation (and its forced stop) happen after the delete.
        time.sleep(3)
        replay_frames(server, kept)
    finally:
        server.stop()
    restarted = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        listed = {
            t["task_id"]
            for t in httpx.get(restarted.api("tasks"), headers=restarted.headers).json()["tasks"]
        }
        assert kept in listed
        for task_id in (slow, kernel_task):
            assert task_id not in listed
            response = httpx.get(restarted.api(f"tasks/{task_id}"), headers=restarted.headers)
            assert response.status_code == 404
    finally:
        restarted.stop()


# -- finished logs from the history, replayed byte for byte ---------------------------------


def test_a_finished_task_longer_than_a_page_replays_identically_after_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.sqlite3"
    first = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task_id = create(first, "firehose")
        replay_frames(first, task_id)  # to its end
        live = replay_frames(first, task_id)  # the replay of the finished task, from memory
        live_get = get_task(first, task_id)["events"]
    finally:
        first.stop()
    assert len(live) > 1000  # more than one page of the history, and of a GET
    second = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        status = httpx.get(second.api("status"), headers=second.headers).json()
        assert status["tasks"]["logs_in_memory"] == 0  # nothing loaded at start-up
        again = replay_frames(second, task_id)
        assert again == live
        resumed = []
        with connect(second.ws(task_id, after=700), additional_headers=second.headers) as ws:
            while True:
                frame = ws.recv(timeout=30)
                assert isinstance(frame, str)
                if '"seq"' in frame:
                    resumed.append(frame)
                if json.loads(frame)["type"] == "result":
                    break
        assert resumed == [f for f in live if '"seq"' in f][700:]
        assert get_task(second, task_id)["events"] == live_get
        assert [json.dumps(e, separators=(",", ":"), ensure_ascii=False) for e in live_get] == [
            f for f in live if '"seq"' in f
        ]
    finally:
        second.stop()


@pytest.fixture
def agentkit_config(tmp_path: Path) -> dict[str, Any]:
    return {"db_path": str(tmp_path / "history.sqlite3"), "max_events_in_memory": 100}


async def _events(count: int, token: CancellationToken) -> AsyncIterator[StepEvent]:
    for index in range(count):
        yield StepEvent(EventType.TOKEN, 1, {"delta": f"word{index} "})
    yield StepEvent(EventType.FINAL_ANSWER, 1, {"output": "done"})


def _source(count: int) -> Callable[[CancellationToken], AsyncIterator[StepEvent]]:
    return lambda token: _events(count, token)


async def test_only_recent_finished_logs_stay_in_memory_and_replays_stay_whole(
    jp_serverapp: Any, ws_connect: Callable[..., Awaitable[Any]], api: Any
) -> None:
    hub = extension(jp_serverapp).hub
    cached = HubLimits().max_cached_logs
    tasks = [hub.run_source("burst", f"q{i}", _source(30)) for i in range(cached + 20)]
    live: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        messages = await _read_all(ws_connect, task.task_id)
        live[task.task_id] = [m for m in messages if "seq" in m]
    assert hub.store is not None
    await asyncio.to_thread(hub.store.flush)
    hub.run_source("burst", "one more", _source(1))  # a new task trims the cache
    await asyncio.sleep(0.3)
    status, body = await api("GET", "status")
    assert status == 200
    assert body["history"]["state"] == "ok" and body["history"]["error"] is None
    assert body["tasks"]["logs_in_memory"] <= cached + 1
    for task in tasks:  # the oldest are read back from disk: the same messages, whole
        messages = await _read_all(ws_connect, task.task_id)
        assert [m for m in messages if "seq" in m] == live[task.task_id]
        assert not any(m["type"] == "error" for m in messages)


async def test_a_resume_older_than_memory_is_served_from_the_history(
    jp_serverapp: Any, ws_connect: Callable[..., Awaitable[Any]]
) -> None:
    hub = extension(jp_serverapp).hub
    task = hub.run_source("burst", "q", _source(400))
    await task.wait()
    assert task.log.first_seq > 100  # memory holds the last 100 only
    messages = await _read_all(ws_connect, task.task_id, after=5)
    assert messages[0]["type"] == "connected"
    assert not any(m["type"] == "error" for m in messages)  # no events_truncated
    assert [m["seq"] for m in messages if "seq" in m] == list(range(6, task.log.last_seq + 1))


# -- GET tasks/{id}: pages of the stored bytes -------------------------------------------


async def test_get_answers_pages_and_the_kernel_client_fetches_them_all(
    jp_serverapp: Any,
    ws_connect: Callable[..., Awaitable[Any]],
    api: Any,
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
) -> None:
    hub = extension(jp_serverapp).hub
    task = hub.run_source("burst", "q", _source(2 * GET_PAGE_MAX_EVENTS + 500))
    await task.wait()  # (a live subscriber would fall behind a 100-event memory window)
    streamed = [m for m in await _read_all(ws_connect, task.task_id) if "seq" in m]
    total = len(streamed)
    status, page = await api("GET", "tasks", task.task_id)
    assert status == 200
    assert len(page["events"]) == GET_PAGE_MAX_EVENTS  # capped without a limit
    assert page["has_more"] is True and page["next_after"] == GET_PAGE_MAX_EVENTS
    status, page = await api("GET", "tasks", task.task_id, params={"limit": 10**6})
    assert len(page["events"]) == GET_PAGE_MAX_EVENTS  # and with a larger one
    collected = list(page["events"])
    while page["has_more"]:
        status, page = await api("GET", "tasks", task.task_id, params={"after": page["next_after"]})
        collected.extend(page["events"])
    assert collected == streamed
    assert page["next_after"] == total == page["last_seq"]
    status, record = await api("GET", "tasks", task.task_id, params={"limit": 0})
    assert record["events"] == [] and record["has_more"] is True

    token = jp_auth_header["Authorization"].split(" ", 1)[1]
    client = AgentKitClient(ServerInfo(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", token))
    try:
        whole = await asyncio.to_thread(client.get_task, task.task_id)
        assert whole["events"] == streamed  # widget.steps, to_dict(): every page
        tail = await asyncio.to_thread(client.get_task, task.task_id, 2000)
        assert tail["events"] == streamed[2000:]
    finally:
        client.close()
