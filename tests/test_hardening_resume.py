"""Resume edge cases: truncated history is said out loud; random reconnects never skip."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import read_until_result


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    # No history: what left memory is gone (with one, a resume is served from disk:
    # see test_history_bounds.py).
    return {"max_events_in_memory": 100, "db_path": ""}


async def test_a_resume_point_older_than_memory_is_announced(api: Any, ws_connect: Any) -> None:
    _, body = await api("POST", "tasks", body={"agent": "firehose", "input": "q"})
    task_id = body["task_id"]
    await read_until_result(await ws_connect(task_id, after=0), timeout=30)
    _, task = await api("GET", "tasks", task_id)
    first = task["first_seq"]
    assert first > 1 and task["last_seq"] - first + 1 == 100
    ws = await ws_connect(task_id, after=5)
    messages = await read_until_result(ws)
    assert messages[0]["type"] == "connected"
    notice = messages[1]
    assert notice["type"] == "error" and notice["data"]["code"] == "events_truncated"
    assert notice["data"]["first_seq"] == first
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == list(range(first, task["last_seq"] + 1))  # explicit, then no gap
