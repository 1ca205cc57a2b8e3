"""``GET agentkit/api/tasks``: bounded summaries, and changes since a cursor (issue 20.6).

The side panel polls the list every 2 s; it used to carry every task's whole input and
output (40 MB a poll with 400 large tasks). The list now carries summaries whose size
does not depend on the tasks' texts, and ``?since=<cursor>`` answers only what changed,
deletions included.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agentkit_jupyter import protocol
from agentkit_jupyter.tasks.listing import TaskListJournal, task_summary

BIG = "x" * 90_000
CUT = protocol.LIST_TEXT_MAX_CHARS


async def _finished(api: Any, *task_ids: str) -> None:
    async with asyncio.timeout(20):
        for task_id in task_ids:
            while not protocol.is_final((await api("GET", "tasks", task_id))[1]["status"]):
                await asyncio.sleep(0.05)


async def test_the_list_is_small_whatever_the_inputs(api: Any, jp_fetch: Any) -> None:
    ids = []
    for i in range(20):
        status, task = await api("POST", "tasks", body={"agent": "echo", "input": f"{i} {BIG}"})
        assert status == 201
        ids.append(task["task_id"])
    await _finished(api, *ids)

    response = await jp_fetch("agentkit", "api", "tasks", method="GET")
    # 20 inputs of 90 KB: 1.8 MB before; now well under a kilobyte and a half per task.
    assert len(response.body) < 20 * 1500, len(response.body)
    body = json.loads(response.body)
    assert body["full"] is True and body["deleted"] == [] and body["cursor"]
    listed = {t["task_id"]: t for t in body["tasks"]}
    assert set(ids) <= set(listed)
    first = listed[ids[0]]
    # The documented fields are kept; the input is cut, and says so.
    assert first["agent"] == "echo" and first["status"] == "succeeded"
    assert first["input"] == f"0 {BIG}"[:CUT]
    assert first["input_chars"] == len(BIG) + 2
    assert first["truncated"] is True
    assert first["result"]["status"] == "succeeded" and first["result"]["output"] == "pong"
    assert first["output_chars"] == 4
    assert first["started_at"] and first["created_at"]
    # The whole record is one GET away.
    _, record = await api("GET", "tasks", ids[0], params={"limit": "0"})
    assert record["input"] == f"0 {BIG}"


async def test_since_answers_only_changes_and_deletions(api: Any) -> None:
    _, first = await api("POST", "tasks", body={"agent": "echo", "input": "one"})
    _, second = await api("POST", "tasks", body={"agent": "echo", "input": "two"})
    await _finished(api, first["task_id"], second["task_id"])
    _, full = await api("GET", "tasks")
    cursor = full["cursor"]

    # Nothing changed: nothing but a new cursor.
    _, quiet = await api("GET", "tasks", params={"since": cursor})
    assert quiet == {"tasks": [], "deleted": [], "cursor": cursor, "full": False}

    # A new task, a deleted one: exactly those.
    _, third = await api("POST", "tasks", body={"agent": "hang-llm", "input": "three"})
    status, _ = await api("DELETE", "tasks", first["task_id"])
    assert status == 204
    _, changes = await api("GET", "tasks", params={"since": cursor})
    assert changes["full"] is False
    assert [t["task_id"] for t in changes["tasks"]] == [third["task_id"]]
    assert changes["deleted"] == [first["task_id"]]
    assert changes["cursor"] != cursor

    # A status change of a listed task is a change; the older cursor still sees all of it.
    await api("POST", "tasks", third["task_id"], "cancel")
    await _finished(api, third["task_id"])
    _, after_cancel = await api("GET", "tasks", params={"since": changes["cursor"]})
    assert [(t["task_id"], t["status"]) for t in after_cancel["tasks"]] == [
        (third["task_id"], "cancelled")
    ]
    assert after_cancel["deleted"] == []
    _, since_start = await api("GET", "tasks", params={"since": cursor})
    assert [t["task_id"] for t in since_start["tasks"]] == [third["task_id"]]
    assert since_start["deleted"] == [first["task_id"]]


async def test_a_foreign_or_bad_cursor(api: Any) -> None:
    # A cursor from another server run (another epoch): the full list, said so.
    _, other = await api("GET", "tasks", params={"since": "0000beef.3"})
    assert other["full"] is True
    for bad in ("nonsense", "abc.", "abc.-1", "abc.1e3"):
        status, body = await api("GET", "tasks", params={"since": bad})
        assert status == 400, bad
        assert body["error"]["code"] == "invalid_since"


def test_a_summary_cuts_every_long_text() -> None:
    record = {
        "task_id": "t1",
        "agent": "a",
        "status": "failed",
        "input": "i" * 10_000,
        "result": {
            "status": "failed",
            "task_id": "t1",
            "output": "o" * 16_000_000,
            "reason": "r" * 5000,
            "error": {"code": "tool_error", "message": "m" * 50_000},
            "total_steps": 3,
        },
    }
    summary = task_summary(record)
    assert len(protocol.dumps(summary)) < 4 * CUT + 500
    assert summary["truncated"] is True
    assert summary["input_chars"] == 10_000 and summary["output_chars"] == 16_000_000
    result = summary["result"]
    assert result["output"] == "o" * CUT and result["reason"] == "r" * CUT
    assert result["error"] == {"code": "tool_error", "message": "m" * CUT}
    assert result["total_steps"] == 3
    assert record["result"]["output"] == "o" * 16_000_000  # the record is not changed
    short = task_summary({"task_id": "t2", "input": "hi", "result": None})
    assert short["truncated"] is False and short["input"] == "hi" and short["result"] is None


def test_forgotten_deletions_give_a_full_answer() -> None:
    journal = TaskListJournal(max_deletions=2)
    tasks = [{"task_id": str(i)} for i in range(5)]
    cursor = journal.answer(tasks, None)["cursor"]
    journal.answer(tasks[:2], None)  # three deleted, one more than remembered
    answer = journal.answer(tasks[:2], cursor)
    assert answer["full"] is True and [t["task_id"] for t in answer["tasks"]] == ["0", "1"]
    recent = journal.answer(tasks[:1], journal.answer(tasks[:2], None)["cursor"])
    assert recent["full"] is False and recent["deleted"] == ["1"]
