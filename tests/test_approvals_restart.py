"""A task that waits for a person when the server stops is restored ``interrupted``,
with the call that waited in its record, whether the server stopped cleanly or was
killed."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_process import ServerProcess
from test_store import create, get_task


def _wait_status(server: ServerProcess, task_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        record = httpx.get(
            server.api(f"tasks/{task_id}"), params={"limit": "0"}, headers=server.headers
        ).json()
        if record["status"] == status:
            return dict(record)
        assert time.monotonic() < deadline, record["status"]
        time.sleep(0.05)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_waiting_task_is_interrupted_with_its_pending_call(
    tmp_path: Path, stop: signal.Signals
) -> None:
    db = tmp_path / "tasks.sqlite3"
    first = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task_id = create(first, "approve-me", "ledger")
        waiting = _wait_status(first, task_id, "waiting")
        call_id = waiting["pending_approvals"][0]["call_id"]
    finally:
        first.stop(stop)
    second = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task = get_task(second, task_id)
        assert task["status"] == "interrupted"
        assert "waiting for a decision" in task["result"]["error"]["message"]
        pending = task["result"]["pending_approvals"]
        assert [(p["call_id"], p["tool"]) for p in pending] == [(call_id, "guarded_write")]
        assert pending[0]["arguments"] == {"label": "ledger", "value": 1}
        kinds = [e["data"]["event_type"] for e in task["events"] if e["type"] == "step"]
        assert "approval_requested" in kinds and "approval_decided" not in kinds
        late = httpx.post(
            second.api(f"tasks/{task_id}/approvals/{call_id}"),
            json={"decision": "approve"},
            headers=second.headers,
        )
        assert late.status_code == 409 and late.json()["error"]["code"] == "task_finished"
    finally:
        second.stop()


def test_a_paused_task_is_interrupted_by_a_clean_stop(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    first = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task_id = create(first, "steps")
        httpx.post(first.api(f"tasks/{task_id}/pause"), headers=first.headers)
        _wait_status(first, task_id, "paused")
    finally:
        first.stop()
    second = ServerProcess(tmp_path, f"--AgentKitExtension.db_path={db}").start()
    try:
        task = get_task(second, task_id)
        assert task["status"] == "interrupted"
        assert "paused" in task["result"]["error"]["message"]
    finally:
        second.stop()
