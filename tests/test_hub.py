"""The task hub on its own: one run, one result, replay without gaps, cancel races."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from agentkit_jupyter.core import (
    Agent,
    AgentPool,
    CancellationToken,
    EventType,
    ScriptedGateway,
    ScriptedTurn,
    StepEvent,
)
from agentkit_jupyter.tasks import EventLog, HubLimits, TaskHub, TaskStatus


def hub_with(*agents: Agent, **limits: int | float) -> TaskHub:
    return TaskHub(AgentPool(agents), HubLimits(**limits))  # type: ignore[arg-type]


async def collect(task_hub: TaskHub, task_id: str, after: int = 0) -> list[dict]:
    sub = task_hub.get(task_id).subscribe(after)
    return [json.loads(e.text) async for batch in sub.batches() for e in batch]


async def test_subscribers_from_any_seq_see_the_log_then_live_events() -> None:
    agent = Agent(
        "a",
        ScriptedGateway([ScriptedTurn("thinking hard about it")], token_delay=0.01),
    )
    hub = hub_with(agent)
    task = hub.create_task("a", "q")
    early, mid = await asyncio.gather(collect(hub, task.task_id), _collect_later(hub, task.task_id))
    assert [m["seq"] for m in early] == list(range(1, task.log.last_seq + 1))
    assert early[mid[0]["seq"] - 1 :] == mid  # same messages, no gap, no duplicate
    assert early[-1]["type"] == "result" and early[-1]["data"]["status"] == "succeeded"
    assert task.status is TaskStatus.SUCCEEDED


async def _collect_later(hub: TaskHub, task_id: str) -> list[dict]:
    await asyncio.sleep(0.03)
    return await collect(hub, task_id, after=2)


async def test_cancel_racing_the_final_answer_gives_exactly_one_result() -> None:
    for delay in (0.0, 0.001, 0.005, 0.02):
        hub = hub_with(Agent("a", ScriptedGateway([ScriptedTurn("quick")], token_delay=0.002)))
        task = hub.create_task("a", "q")
        await asyncio.sleep(delay)
        if not task.finished:
            task.cancel("race")
            task.cancel("twice")  # a second cancel is a no-op
        await asyncio.wait_for(task.wait(), 3)
        messages = await collect(hub, task.task_id)
        results = [m for m in messages if m["type"] == "result"]
        assert len(results) == 1
        terminal = [
            m
            for m in messages
            if m["type"] == "step"
            and m["data"]["event_type"] in ("final_answer", "cancelled", "error")
        ]
        assert len(terminal) == 1
        assert results[0]["data"]["status"] in ("succeeded", "cancelled")


async def test_a_run_that_ignores_cancel_is_stopped_after_the_grace_period() -> None:
    async def stubborn(token: CancellationToken) -> AsyncIterator[StepEvent]:
        yield StepEvent(EventType.THOUGHT, 1, {"text": "ignoring tokens"})
        await asyncio.shield(asyncio.sleep(30))

    hub = hub_with(cancel_grace_seconds=0.2)
    task = hub.run_source("x", "q", stubborn)
    await asyncio.sleep(0.05)
    task.cancel()
    result = await asyncio.wait_for(task.wait(), 2)
    assert result["status"] == "cancelled"


async def test_a_crashing_source_fails_the_task_with_a_generic_message() -> None:
    async def crashing(token: CancellationToken) -> AsyncIterator[StepEvent]:
        yield StepEvent(EventType.THOUGHT, 1, {"text": "about to crash"})
        raise RuntimeError("secret stack details")

    hub = hub_with()
    task = hub.run_source("x", "q", crashing)
    result = await asyncio.wait_for(task.wait(), 2)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "internal_error"
    assert "secret" not in json.dumps(await collect(hub, task.task_id))


async def test_shutdown_cancels_runs_and_tells_subscribers() -> None:
    hub = hub_with(Agent("slow", ScriptedGateway([ScriptedTurn("x")], latency=30)))
    tasks = [hub.create_task("slow", "q") for _ in range(3)]
    await asyncio.sleep(0.05)
    await asyncio.wait_for(hub.shutdown(), 3)
    for task in tasks:
        assert task.status is TaskStatus.CANCELLED
        assert task._runner is not None and task._runner.done()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("agentkit-task")]


def test_event_log_window_is_bounded_and_reports_what_it_still_holds() -> None:
    log = EventLog(max_entries=100, max_bytes=10_000)
    for i in range(5000):
        log.append(json.dumps({"i": i}))
    assert len(log) == 100 and log.last_seq == 5000 and log.first_seq == 4901
    assert [e.seq for e in log.read_after(0, limit=3)] == [4901, 4902, 4903]
    assert [e.seq for e in log.read_after(4998)] == [4999, 5000]
    assert log.lag_bytes(4998) == len(log.read_after(4998)[0].text) * 2
    big = EventLog(max_entries=1000, max_bytes=1000)
    for _ in range(20):
        big.append("x" * 100)
    assert big.held_bytes <= 1000 and big.last_seq == 20
