"""Task history in SQLite: restart, crash (SIGKILL), corruption, schema, retention."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_process import ServerProcess
from websockets.sync.client import connect

from agentkit_jupyter.core import Agent, AgentPool, ScriptedGateway, ScriptedTurn
from agentkit_jupyter.tasks import StoreError, TaskHub, TaskStore


def replay_frames(server: ServerProcess, task_id: str) -> list[str]:
    """Every raw text frame of a task's stream, from the start to the result."""
    frames = []
    with connect(server.ws(task_id), additional_headers=server.headers) as ws:
        while True:
            frame = ws.recv(timeout=30)
            assert isinstance(frame, str)
            frames.append(frame)
            if json.loads(frame)["type"] == "result":
                return frames


def create(server: ServerProcess, agent: str, text: str = "q") -> str:
    response = httpx.post(
        server.api("tasks"), json={"agent": agent, "input": text}, headers=server.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


def get_task(server: ServerProcess, task_id: str) -> dict[str, Any]:
    """The task's record and all its events (GET answers them a page at a time)."""
    response = httpx.get(server.api(f"tasks/{task_id}"), headers=server.headers)
    assert response.status_code == 200, response.text
    task = dict(response.json())
    events = task["events"]
    while task["has_more"]:
        response = httpx.get(
            server.api(f"tasks/{task_id}"),
            params={"after": task["next_after"]},
            headers=server.headers,
        )
        task = dict(response.json())
        events.extend(task["events"])
    task["events"] = events
    return task


def test_finished_tasks_replay_byte_for_byte_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    first = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        ids = [
            create(first, "demo", "Rome and Vienna"),
            create(first, "echo"),
            create(first, "paced"),
        ]
        cancelled = create(first, "hang-llm")
        httpx.post(first.api(f"tasks/{cancelled}/cancel"), headers=first.headers)
        ids.append(cancelled)
        for task_id in ids:
            replay_frames(first, task_id)  # wait for the end
        before = {task_id: replay_frames(first, task_id) for task_id in ids}
    finally:
        first.stop()
    second = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        for task_id in ids:
            assert replay_frames(second, task_id) == before[task_id]
        statuses = [get_task(second, task_id)["status"] for task_id in ids]
        assert statuses == ["succeeded", "succeeded", "succeeded", "cancelled"]
    finally:
        second.stop()


def test_a_hard_kill_mid_run_leaves_a_gap_free_prefix_marked_interrupted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.sqlite3"
    server = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task_id = create(server, "long-stream")
        seen: list[dict[str, Any]] = []
        with connect(server.ws(task_id), additional_headers=server.headers) as ws:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                seen.append(json.loads(ws.recv(timeout=10)))
            server.stop(signal.SIGKILL)
    finally:
        server.stop()
    assert len(seen) > 100
    restarted = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task = get_task(restarted, task_id)
        assert task["status"] == "interrupted"
        assert task["result"]["error"]["code"] == "server_restarted"
        events = task["events"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gap
        assert events[-1]["type"] == "result"
        stored_steps = events[:-1]
        streamed = [m for m in seen if "seq" in m]
        common = min(len(stored_steps), len(streamed))
        assert common > 50
        assert stored_steps[:common] == streamed[:common]  # same order, same content
        # And it replays to subscribers like any finished task.
        frames = replay_frames(restarted, task_id)
        assert json.loads(frames[-1])["data"]["status"] == "interrupted"
    finally:
        restarted.stop()


def test_a_corrupt_database_is_moved_aside_and_the_server_starts(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    server = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task_id = create(server, "echo")
        assert get_task(server, task_id)["status"] in ("running", "succeeded")
        aside = list(tmp_path.glob("tasks.sqlite3.corrupt-*"))
        assert len(aside) == 1
        assert aside[0].read_bytes() == b"this is not a database" * 100  # nothing lost
    finally:
        server.stop()
    assert "could not be read" in server.log() and str(aside[0]) in server.log()


def test_a_newer_schema_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "future.sqlite3"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE future (x)")
    connection.execute("PRAGMA user_version = 99")
    connection.commit()
    connection.close()
    original = db.read_bytes()
    with pytest.raises(StoreError, match="newer"):
        TaskStore(db)
    assert db.read_bytes() == original
    assert not list(tmp_path.glob("*.corrupt-*"))


async def test_store_round_trip_retention_and_delete(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite3"
    agent = Agent("a", ScriptedGateway([ScriptedTurn("hello world")]))
    hub = TaskHub(AgentPool([agent]), store=TaskStore(db))
    tasks = [hub.create_task("a", f"q{i}") for i in range(5)]
    for task in tasks:
        await asyncio.wait_for(task.wait(), 5)
    tasks[0].created_at = time.time() - 40 * 86400  # very old
    tasks[0].save()
    hub.store.flush()  # type: ignore[union-attr]
    removed = hub.apply_retention(max_age_seconds=30 * 86400, max_count=3)
    assert removed == 2  # the old one, and one beyond the newest three
    await hub.shutdown()

    reopened = TaskHub(AgentPool([agent]), store=TaskStore(db))
    kept = {t.task_id for t in reopened.all()}
    assert kept == {t.task_id for t in tasks[2:]}
    for task in tasks[2:]:
        again = reopened.get(task.task_id)
        assert again.result == task.result
        # Served from the history now (finished logs are not loaded at start-up).
        stored = await again.read_page(0, 1000, 1 << 30)
        assert [e.data for e in stored] == [e.data for e in task.log.read_after(0)]
    reopened.delete(tasks[2].task_id)
    assert reopened.store is not None
    reopened.store.flush()
    assert reopened.store.events(tasks[2].task_id) == []
    await reopened.shutdown()
