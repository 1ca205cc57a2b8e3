"""A task restored as ``interrupted`` after a restart says so, with its reason, in the
static HTML copy and in the kernel's task object (the browser views: tests/browser)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agentkit_jupyter.core import AgentPool, EventType, StepEvent
from agentkit_jupyter.kernel.static_html import render_static_html
from agentkit_jupyter.protocol import TaskStatus, is_final
from agentkit_jupyter.tasks import TaskHub, TaskStore


def _interrupted_task(tmp_path: Path) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Run a task half-way on one hub, stop without ending it, restore it on another."""
    path = tmp_path / "tasks.sqlite3"

    async def first_life() -> str:
        hub = TaskHub(AgentPool(), store=TaskStore(path))
        task = hub.create_external_task("analyst", "Summarise sales.csv", origin="kernel")
        task.publish(StepEvent(EventType.THOUGHT, 1, {"text": "Reading the file first."}))
        task.publish(
            StepEvent(EventType.TOOL_CALL, 1, {"call_id": "c1", "name": "read", "arguments": {}})
        )
        assert hub.store is not None
        hub.store.close()  # the server dies here: no shutdown, no final result
        return task.task_id

    task_id = asyncio.run(first_life())
    hub = TaskHub(AgentPool(), store=TaskStore(path))
    try:
        task = hub.get(task_id)
        # The events before the restart are read back from the history (not memory).
        entries = asyncio.run(task.read_page(0, 100, 1 << 30))
        messages = [json.loads(e.data) for e in entries]
        return task.to_dict(), messages
    finally:
        assert hub.store is not None
        hub.store.close()


def test_interrupted_is_a_final_status() -> None:
    assert TaskStatus.INTERRUPTED.finished and is_final("interrupted")
    assert not is_final("running") and not is_final(None)


def test_the_static_copy_of_an_interrupted_task_shows_status_and_reason(tmp_path: Path) -> None:
    record, messages = _interrupted_task(tmp_path)
    assert record["status"] == "interrupted"
    html = render_static_html(record, messages)
    assert "<b>interrupted</b>" in html
    assert "Interrupted:" in html and "The server stopped while this task was running" in html
    assert "Running: this static copy" not in html
    assert "Reading the file first." in html  # the steps up to then are kept


def test_the_static_copy_uses_the_record_when_no_message_was_seen_yet(tmp_path: Path) -> None:
    record, _ = _interrupted_task(tmp_path)
    html = render_static_html(record, [])
    assert "<b>interrupted</b>" in html and "Running:" not in html


def test_a_tool_error_in_the_static_copy_is_red() -> None:
    record = {"task_id": "t", "agent": "a", "status": "succeeded"}
    event = {
        "event_type": "observation",
        "step": 1,
        "data": {"call_id": "c", "name": "x", "output": "boom", "is_error": True},
        "timestamp": 0,
    }
    html = render_static_html(record, [{"type": "step", "seq": 1, "data": event}])
    assert "font-size:12px;color:#d32f2f" in html
