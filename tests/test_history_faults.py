"""The task history under faults and poison: a full disk, a read-only file, bad rows,
lone surrogates, file permissions (issue 13 item 2; issue 20 items 1 and 8)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
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
from test_store import create, get_task, replay_frames

from agentkit_jupyter.server.app import AgentKitExtension
from agentkit_jupyter.tasks import TaskStore


async def _read_all(
    ws_connect: Callable[..., Awaitable[Any]], task_id: str, **kwargs: Any
) -> list[dict[str, Any]]:
    """A task's stream to its result, on a connection closed afterwards."""
    ws = await ws_connect(task_id, **kwargs)
    try:
        return await read_until_result(ws)
    finally:
        await ws.close()


@pytest.fixture
def agentkit_config(tmp_path: Path) -> dict[str, Any]:
    return {"db_path": str(tmp_path / "history.sqlite3")}


def _stored(db: Path, task_id: str) -> list[tuple[int, str]]:
    """The events of a task as they are in the file, read by another connection."""
    connection = sqlite3.connect(db)
    try:
        return list(
            connection.execute(
                "SELECT seq, message FROM events WHERE task_id = ? ORDER BY seq", (task_id,)
            )
        )
    finally:
        connection.close()


async def _status(api: Any) -> dict[str, Any]:
    code, body = await api("GET", "status")
    assert code == 200
    return dict(body)


async def _until_written(api: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = await _status(api)
        history = body["history"]
        if history["state"] == "ok" and history["pending"] == 0:
            return body
        assert time.monotonic() < deadline, history
        await asyncio.sleep(0.2)


async def _a_fault_is_survived(
    api: Any,
    ws_connect: Callable[..., Awaitable[Any]],
    db: Path,
    fault: Callable[[], Any],
    expected_error: str,
) -> None:
    """With ``fault`` on, a run streams to its end and the status says the history
    fails; once it is cleared, every event reaches the file, in order."""
    history = (await _status(api))["history"]
    assert history["state"] == "ok" and history["error"] is None
    with fault():
        _, created = await api("POST", "tasks", body={"agent": "firehose", "input": "q"})
        task_id = created["task_id"]
        messages = await _read_all(ws_connect, task_id)  # the stream goes on
        assert messages[-1]["data"]["status"] == "succeeded"
        await asyncio.sleep(0.5)  # a retry or two
        history = (await _status(api))["history"]
        assert history["state"] == "failing"
        assert expected_error in history["error"]["message"]
        assert history["error"]["failures"] >= 1 and history["pending"] > 0
        logged = [m for m in messages if "seq" in m]
        assert len(_stored(db, task_id)) < len(logged)  # not on disk (yet)
    await _until_written(api)
    rows = _stored(db, task_id)
    assert [seq for seq, _ in rows] == list(range(1, len(logged) + 1))
    assert [json.loads(text) for _, text in rows] == logged
    connection = sqlite3.connect(db)
    try:
        (status,) = connection.execute(
            "SELECT status FROM tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
    finally:
        connection.close()
    assert status == "succeeded"


async def test_a_full_disk_is_reported_and_everything_is_written_once_it_clears(
    jp_serverapp: Any, api: Any, ws_connect: Callable[..., Awaitable[Any]]
) -> None:
    store = extension(jp_serverapp).hub.store
    assert store is not None

    def max_pages(count: int | None) -> None:
        with store._lock:  # the writer's own connection: a full disk for it alone
            connection = store._connection
            if count is None:
                count = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {count}")

    @contextmanager
    def full_disk() -> Iterator[None]:
        max_pages(None)
        try:
            yield
        finally:
            max_pages(1 << 30)

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    store_log = logging.getLogger("agentkit_jupyter.tasks.store")
    store_log.addHandler(handler)
    try:
        await _a_fault_is_survived(api, ws_connect, Path(store.path), full_disk, "full")
    finally:
        store_log.removeHandler(handler)
    said = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    # One line when the failures begin and one when they end, not one per retry.
    assert [m for m in said if "writing the task history" in m and "full" in m] == said[:1]
    assert len(said) == 2 and "takes writes again" in said[1]


async def test_a_read_only_file_is_reported_and_everything_is_written_once_it_clears(
    jp_serverapp: Any, api: Any, ws_connect: Callable[..., Awaitable[Any]]
) -> None:
    store = extension(jp_serverapp).hub.store
    assert store is not None
    db = Path(store.path)
    files = [str(db), f"{db}-wal"]  # not -shm: SQLite maps it, and it is no one's data
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("making a file read-only for its own open descriptor needs chattr +i (root)")

    @contextmanager
    def read_only() -> Iterator[None]:
        subprocess.run(["chattr", "+i", *files], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)

    await _a_fault_is_survived(api, ws_connect, db, read_only, "I/O")


# -- poisoned records ---------------------------------------------------------------------


def _step(task_id: str, seq: int, delta: str) -> str:
    return json.dumps(
        {
            "type": "step",
            "seq": seq,
            "task_id": task_id,
            "data": {"event_type": "token", "step": 1, "data": {"delta": delta}, "timestamp": 1.0},
        },
        separators=(",", ":"),
    )


def _result(task_id: str, seq: int) -> str:
    data = {"status": "succeeded", "task_id": task_id, "output": "ok"}
    return json.dumps(
        {"type": "result", "seq": seq, "task_id": task_id, "data": data}, separators=(",", ":")
    )


def _poison(db: Path) -> None:
    TaskStore(db).close()  # the schema
    connection = sqlite3.connect(db)
    result = '{"status":"succeeded","task_id":"%s","output":"ok"}'
    task = "INSERT INTO tasks VALUES (?, 'echo', ?, 'succeeded', 'server', ?, 1, 2, ?)"
    now = time.time()  # (older ones would go to retention)
    connection.execute(task, ("good", "hello", now, result % "good"))
    connection.execute(
        "INSERT INTO tasks VALUES ('badinput', 'echo', CAST(? AS TEXT), 'succeeded', "
        "'server', ?, 1, 2, ?)",
        (b"caf\xc3 \xff\xfe", now + 1, result % "badinput"),
    )
    connection.execute(task, ("badresult", "hi", now + 2, "{not json"))
    connection.execute(task, ("badevents", "hi", now + 3, result % "badevents"))
    connection.execute(task, (None, "no id at all", now + 4, None))  # nothing usable: skipped
    event = "INSERT INTO events VALUES (?, ?, ?)"
    connection.execute(event, ("good", 1, _step("good", 1, "fine")))
    connection.execute(event, ("good", 2, _result("good", 2)))
    broken = _step("badevents", 1, "x_").encode().replace(b"x_", b"x\xff")
    connection.execute("INSERT INTO events VALUES ('badevents', 1, CAST(? AS TEXT))", (broken,))
    connection.execute(event, ("badevents", 2, "{this is not json"))
    connection.execute(event, ("badevents", 3, _result("badevents", 3)))
    connection.commit()
    connection.close()


def test_bad_rows_never_stop_a_start_are_reported_and_sigterm_stops_the_server(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.sqlite3"
    _poison(db)
    server = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start(timeout=30)
    try:
        assert httpx.get(server.api("agents"), headers=server.headers).status_code == 200
        tasks = {
            t["task_id"]: t
            for t in httpx.get(server.api("tasks"), headers=server.headers).json()["tasks"]
        }
        assert {"good", "badinput", "badresult", "badevents"} <= set(tasks)
        assert tasks["good"]["damaged"] is None
        assert tasks["badinput"]["damaged"] and tasks["badresult"]["damaged"]
        assert tasks["badinput"]["input"].startswith("caf\ufffd")
        assert tasks["badresult"]["result"]["error"]["code"] == "damaged_record"
        # The damaged events are repaired or replaced, never dropped: no gap in seq.
        events = get_task(server, "badevents")["events"]
        assert [e["seq"] for e in events] == [1, 2, 3]
        assert events[0]["data"]["data"]["delta"] == "x\ufffd"
        assert events[1]["data"]["event_type"] == "error"
        assert events[1]["data"]["data"]["code"] == "damaged_record"
        assert events[2]["type"] == "result"
        frames = replay_frames(server, "badevents")
        assert [json.loads(f).get("seq") for f in frames] == [None, 1, 2, 3]
        assert [json.loads(f)["type"] for f in replay_frames(server, "good")] == [
            "connected",
            "step",
            "result",
        ]
        status = httpx.get(server.api("status"), headers=server.headers).json()
        history = status["history"]
        assert {"badinput", "badresult", "badevents"} <= set(history["damaged_tasks"])
        assert "good" not in history["damaged_tasks"]
        assert history["skipped_records"] == 1
        assert history["state"] == "ok"
        # And the server still works as usual.
        fresh = create(server, "echo")
        assert json.loads(replay_frames(server, fresh)[-1])["data"]["status"] == "succeeded"
    finally:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(20)
        except subprocess.TimeoutExpired:
            server.stop(signal.SIGKILL)
            raise AssertionError("SIGTERM did not stop the server") from None
        server.stop()
    assert "could not be read; skipped" in server.log()


async def test_an_extension_that_never_started_still_stops() -> None:
    # A failed start leaves no hub; stopping it (SIGTERM, ^C) must not raise, or the
    # server never exits.
    await AgentKitExtension().stop_extension()


def test_a_lone_surrogate_from_a_tool_survives_a_restart_replaced(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    first = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task_id = create(first, "surrogate", "look at this")
        replay_frames(first, task_id)
        before = replay_frames(first, task_id)
        observation = next(
            json.loads(f)["data"]["data"]
            for f in before
            if '"observation"' in f and json.loads(f)["type"] == "step"
        )
        assert "report-\ufffd.txt and \ufffd" in json.dumps(observation, ensure_ascii=False)
    finally:
        first.stop()
    second = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        assert replay_frames(second, task_id) == before
        task = get_task(second, task_id)
        assert task["result"]["output"] == "Found report-\ufffd.txt \ufffd"
        assert task["damaged"] is None
    finally:
        second.stop()


# -- who may read the history ------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_history_is_created_private_and_a_readable_one_is_warned_about(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path).start()  # the default place, in the Jupyter data dir
    folder = tmp_path / "data" / "agentkit"
    db = folder / "tasks.sqlite3"
    try:
        replay_frames(server, create(server, "echo"))
        assert _mode(folder) == 0o700
        files = [Path(f"{db}{suffix}") for suffix in ("", "-wal", "-shm")]
        assert files[0].exists() and files[1].exists()
        for path in files:
            if path.exists():
                assert _mode(path) == 0o600, path
        status = httpx.get(server.api("status"), headers=server.headers).json()
        assert status["history"]["warnings"] == []
    finally:
        server.stop()
    os.chmod(db, 0o644)
    again = ServerProcess(tmp_path).start()
    try:
        status = httpx.get(again.api("status"), headers=again.headers).json()
        warnings = status["history"]["warnings"]
        assert any(str(db) in w and "read by other users" in w for w in warnings), warnings
    finally:
        again.stop()
    assert "can be read by other users" in again.log()
