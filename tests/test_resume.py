"""Resume after a real restart: an interrupted task goes on in its continuation, and a
tool call that had started (no result recorded) is never re-run unasked."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from server_process import ServerProcess
from test_store import create, get_task
from websockets.sync.client import connect


def _wait(predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _next_step(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(ws.recv(timeout=20))
        if message["type"] == "result":
            raise AssertionError(f"the run ended before a {kind}: {message}")
        if message["type"] == "step" and message["data"]["event_type"] == kind:
            return dict(message)


def _until_result(ws: Any) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = json.loads(ws.recv(timeout=20))
        messages.append(message)
        if message["type"] == "result":
            return messages


def test_a_started_call_is_asked_again_not_re_run_after_a_kill(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    marks = tmp_path / "marks.txt"
    first = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task_id = create(first, "mark-slow", str(marks))
        _wait(lambda: marks.exists(), "the tool to start")
        time.sleep(0.3)  # the tool_call event reaches the disk (the writer batches)
    finally:
        first.stop(signal.SIGKILL)  # mid tool call: no result recorded
    assert marks.read_text() == "ran\n"

    second = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        assert get_task(second, task_id)["status"] == "interrupted"
        answer = httpx.post(second.api(f"tasks/{task_id}/resume"), headers=second.headers)
        assert answer.status_code == 201, answer.text
        child = answer.json()
        assert child["parent_id"] == task_id and child["fork_kind"] == "resume"
        with connect(second.ws(child["task_id"]), additional_headers=second.headers) as ws:
            asked = _next_step(ws, "approval_requested")
            assert asked["data"]["data"]["policy"] == "interrupted"
            assert asked["data"]["data"]["tool"] == "marked_slow_write"
            time.sleep(0.3)
            assert marks.read_text() == "ran\n"  # not re-run while it waits
            call_id = asked["data"]["data"]["call_id"]
            decided = httpx.post(
                second.api(f"tasks/{child['task_id']}/approvals/{call_id}"),
                json={"decision": "reject", "reason": "it already ran"},
                headers=second.headers,
            )
            assert decided.status_code == 200, decided.text
            rest = _until_result(ws)
        assert rest[-1]["data"]["status"] == "succeeded"
        assert "it already ran" in rest[-1]["data"]["output"]
        assert marks.read_text() == "ran\n"
        copied = [e for e in get_task(second, child["task_id"])["events"] if e["type"] == "step"]
        assert any(e["data"].get("copied") for e in copied)
        # The parent names its continuation, and is resumed once.
        parent = get_task(second, task_id)
        assert parent["resumed_by"] == child["task_id"]
        again = httpx.post(second.api(f"tasks/{task_id}/resume"), headers=second.headers)
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_resumed"
        done = httpx.post(second.api(f"tasks/{child['task_id']}/resume"), headers=second.headers)
        assert done.status_code == 409 and done.json()["error"]["code"] == "not_resumable"
    finally:
        second.stop()


def test_a_task_waiting_for_approval_is_asked_again_after_a_clean_stop(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    first = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task_id = create(first, "approve-me", "ledger")
        _wait(
            lambda: (
                httpx.get(
                    first.api(f"tasks/{task_id}"), params={"limit": "0"}, headers=first.headers
                ).json()["status"]
                == "waiting"
            ),
            "the call to wait",
        )
    finally:
        first.stop()
    second = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        answer = httpx.post(second.api(f"tasks/{task_id}/resume"), headers=second.headers)
        assert answer.status_code == 201, answer.text
        child = answer.json()["task_id"]
        with connect(second.ws(child), additional_headers=second.headers) as ws:
            asked = _next_step(ws, "approval_requested")
            assert asked["data"]["data"]["policy"] == "tool"  # it never ran: asked as before
            ws.send(json.dumps({"type": "approve", "call_id": asked["data"]["data"]["call_id"]}))
            rest = _until_result(ws)
        assert rest[-1]["data"]["output"] == "The tool said: wrote 1 to ledger"
    finally:
        second.stop()
