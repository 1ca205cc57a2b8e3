"""The task history's write queue is bounded (issue 13, item 10).

While the disk refuses writes, what waits for it is capped (``max_pending_bytes``). A
task whose next event would not fit is no longer queued: its history on disk stops
there, a gap-free prefix, and the gap is recorded in the file, in ``GET status`` and
in the task's record. After a restart the task's replay says so (an ``error`` step
``history_incomplete``) and still ends with its result.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import read_until_result
from hardening_support import extension
from server_process import ServerProcess
from test_store import get_task, replay_frames

from agentkit_jupyter.tasks import TaskStore

CAP = 64 * 1024  # the firehose's ~1,000 events take several times that


@pytest.fixture
def agentkit_config(tmp_path: Path) -> dict[str, Any]:
    return {"db_path": str(tmp_path / "history.sqlite3"), "max_pending_bytes": CAP}


@contextmanager
def full_disk(store: TaskStore) -> Iterator[None]:
    """The writer's own connection may not grow the file: SQLITE_FULL for it alone."""

    def max_pages(count: int | None) -> None:
        with store._lock:
            connection = store._connection
            if count is None:
                count = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {count}")

    max_pages(None)
    try:
        yield
    finally:
        max_pages(1 << 30)


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db)
    try:
        return list(connection.execute(sql, args))
    finally:
        connection.close()


async def _history(api: Callable[..., Awaitable[Any]]) -> dict[str, Any]:
    code, body = await api("GET", "status")
    assert code == 200
    return dict(body["history"])


async def _run_to_end(
    api: Callable[..., Awaitable[Any]], ws_connect: Callable[..., Awaitable[Any]], agent: str
) -> tuple[str, list[dict[str, Any]]]:
    _, created = await api("POST", "tasks", body={"agent": agent, "input": "q"})
    ws = await ws_connect(created["task_id"])
    try:
        messages = await read_until_result(ws)
    finally:
        await ws.close()
    assert messages[-1]["data"]["status"] == "succeeded"
    return created["task_id"], [m for m in messages if "seq" in m]


async def test_a_full_disk_fills_a_bounded_queue_and_the_gap_is_recorded(
    jp_serverapp: Any,
    api: Callable[..., Awaitable[Any]],
    ws_connect: Callable[..., Awaitable[Any]],
    tmp_path: Path,
) -> None:
    store = extension(jp_serverapp).hub.store
    assert store is not None and store.max_pending_bytes == CAP
    db = Path(store.path)
    with full_disk(store):
        task_id, live = await _run_to_end(api, ws_connect, "firehose")
        history = await _history(api)
        assert history["state"] == "failing"
        assert history["max_pending_bytes"] == CAP
        # What waits is bounded by the cap (plus the task's record and its gap: small).
        assert 0 < history["pending_bytes"] <= CAP + 16 * 1024
        assert history["dropped_events"] > 0
        assert history["incomplete_tasks"] == [task_id]
        _, record = await api("GET", "tasks", task_id, params={"limit": 0})
        gap = record["history_incomplete_from"]
        assert isinstance(gap, int) and 1 < gap < len(live)
        # Memory still has the whole run: a replay now is complete, without a notice.
        ws = await ws_connect(task_id)
        try:
            again = await read_until_result(ws)
        finally:
            await ws.close()
        assert [m for m in again if "seq" in m] == live
        assert not any(m["type"] == "error" for m in again)
    # The disk takes writes again: the queue drains; the file holds a prefix and the gap.
    deadline = time.monotonic() + 20
    while (history := await _history(api))["state"] != "ok" or history["pending"]:
        assert time.monotonic() < deadline, history
        await asyncio.sleep(0.2)
    stored = _rows(db, "SELECT seq, message FROM events WHERE task_id = ? ORDER BY seq", task_id)
    assert [seq for seq, _ in stored] == list(range(1, gap))  # never 1..10 then 15..20
    assert [json.loads(text) for _, text in stored] == live[: gap - 1]
    assert _rows(db, "SELECT from_seq FROM history_gaps WHERE task_id = ?", task_id) == [(gap,)]
    assert history["incomplete_tasks"] == [task_id]  # still true of this run
    # A task after the recovery is written whole.
    other, other_live = await _run_to_end(api, ws_connect, "echo")
    await asyncio.to_thread(store.flush)
    assert len(_rows(db, "SELECT seq FROM events WHERE task_id = ?", other)) == len(other_live)
    assert other not in (await _history(api))["incomplete_tasks"]

    # A restart on the same file: the record says so, and the replay says so in the log.
    home = tmp_path / "restarted"
    server = ServerProcess(home, f"--AgentKitExtension.db_path={db}").start()
    try:
        task = get_task(server, task_id)
        assert task["history_incomplete_from"] == gap and task["status"] == "succeeded"
        events = task["events"]
        assert [e["seq"] for e in events] == list(range(1, gap + 2))
        assert events[: gap - 1] == live[: gap - 1]
        notice, result = events[gap - 1], events[gap]
        assert notice["data"]["event_type"] == "error"
        assert notice["data"]["data"]["code"] == "history_incomplete"
        assert notice["data"]["data"]["from_seq"] == gap
        assert result["type"] == "result" and result["data"] == live[-1]["data"]
        frames = [json.loads(f) for f in replay_frames(server, task_id)]
        assert [f for f in frames if "seq" in f] == events
        status = httpx.get(server.api("status"), headers=server.headers).json()["history"]
        assert status["incomplete_tasks"] == [task_id] and status["dropped_events"] == 0
    finally:
        server.stop()
    # Said once: a second restart finds the notice and adds nothing.
    server = ServerProcess(home, f"--AgentKitExtension.db_path={db}").start()
    try:
        task = get_task(server, task_id)
        assert task["events"] == events and task["first_seq"] == 1
        assert [json.loads(f) for f in replay_frames(server, task_id)][1:] == events
    finally:
        server.stop()


def test_the_store_refuses_beyond_the_cap_and_keeps_each_task_a_prefix(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "t.sqlite3", max_pending_bytes=10_000)
    try:
        with full_disk(store):
            store.save_task(
                {"task_id": "a", "agent": "x", "input": "", "status": "running", "origin": "s",
                 "created_at": 1.0, "result": None}
            )  # fmt: skip
            taken = [store.append_event("a", seq, "e" * 900) for seq in range(1, 30)]
            first_refused = taken.index(False) + 1
            assert all(taken[: first_refused - 1]) and not any(taken[first_refused - 1 :])
            # Nothing more of "a", even once there would be room: its history is a prefix.
            assert store.status()["pending_bytes"] <= 10_000 + 16 * 1024
            assert not store.save_whole_event("a", 2, "w" * 10)
        store.flush()
        assert store.append_event("a", 99, "late") is False
        assert [seq for seq, _ in store.events("a")] == list(range(1, first_refused))
        assert store.status()["pending_bytes"] == 0
        [stored] = store.load().tasks
        assert stored.history_gap == first_refused
    finally:
        store.close()
