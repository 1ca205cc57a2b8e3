"""The runtime's side of human in the loop, without a server: who needs approval,
what runs after which decision, and how pause and steps are counted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentkit_jupyter.core import (
    Agent,
    CancellationToken,
    ScriptedGateway,
    ScriptedTurn,
    StepEvent,
    tool,
)
from agentkit_jupyter.core.control import (
    AlreadyDecidedError,
    InvalidEditError,
    NotPausedError,
    RunControl,
    UnknownCallError,
)

ran: list[str] = []


@tool(requires_approval=lambda args: args["rows"] > 100)
def delete(rows: int) -> str:
    """Delete rows.

    Args:
        rows: How many.
    """
    ran.append(f"delete {rows}")
    return f"deleted {rows}"


@tool
def read(rows: int) -> str:
    """Read rows.

    Args:
        rows: How many.
    """
    ran.append(f"read {rows}")
    return f"read {rows}"


@tool(requires_approval=lambda args: 1 / 0)  # a broken rule
def fragile(rows: int) -> str:
    """Fragile.

    Args:
        rows: How many.
    """
    ran.append(f"fragile {rows}")
    return "ok"


def agent(calls: list[tuple[str, dict[str, Any]]], **options: Any) -> Agent:
    return Agent(
        "t",
        ScriptedGateway(
            [ScriptedTurn("Go.", calls), lambda ctx: ScriptedTurn(" | ".join(ctx.observations))]
        ),
        tools=[delete, read, fragile],
        **options,
    )


async def run(
    the_agent: Agent,
    on_event: Callable[[StepEvent, RunControl], None] | None = None,
    token: CancellationToken | None = None,
) -> list[StepEvent]:
    control = RunControl()
    seen = []
    async with asyncio.timeout(10):
        async for event in the_agent.stream("q", token or CancellationToken(), control=control):
            if event.event_type.value != "token":
                seen.append(event)
            if on_event is not None:
                on_event(event, control)
    return seen


def kinds(events: list[StepEvent]) -> list[str]:
    return [e.event_type.value for e in events]


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()


async def test_only_the_calls_the_rule_picks_wait_and_the_others_run() -> None:
    asked: list[dict[str, Any]] = []

    def decide(event: StepEvent, control: RunControl) -> None:
        if event.event_type.value == "approval_requested":
            asked.append(event.data)
            assert ran == ["read 5"] or ran == []  # the guarded call has not run
            control.approve(event.data["call_id"], by="ann")

    events = await run(agent([("read", {"rows": 5}), ("delete", {"rows": 500})]), decide)
    assert [a["arguments"] for a in asked] == [{"rows": 500}]
    assert asked[0]["policy"] == "tool_rule"
    assert sorted(ran) == ["delete 500", "read 5"]
    assert kinds(events)[-1] == "final_answer"


async def test_a_broken_rule_asks_a_person() -> None:
    def reject(event: StepEvent, control: RunControl) -> None:
        if event.event_type.value == "approval_requested":
            control.reject(event.data["call_id"], "no", by="ann")

    events = await run(agent([("fragile", {"rows": 1})]), reject)
    assert "approval_requested" in kinds(events)
    assert ran == []


@pytest.mark.parametrize(
    ("approval", "asked"),
    [
        ("never", []),
        ("always", ["read", "delete"]),
        (lambda name, args: name == "read", ["read"]),
    ],
)
async def test_the_agent_policy_overrides_the_tools(approval: Any, asked: list[str]) -> None:
    seen: list[str] = []

    def approve(event: StepEvent, control: RunControl) -> None:
        if event.event_type.value == "approval_requested":
            seen.append(event.data["tool"])
            control.approve(event.data["call_id"])

    calls = [("read", {"rows": 1}), ("delete", {"rows": 500})]
    await run(agent(calls, approval=approval), approve)
    assert seen == asked
    assert len(ran) == 2


async def test_decisions_are_first_wins_and_checked() -> None:
    problems: list[type[Exception]] = []

    def decide(event: StepEvent, control: RunControl) -> None:
        if event.event_type.value != "approval_requested":
            return
        call_id = event.data["call_id"]
        for bad in (
            lambda: control.approve("nope"),
            lambda: control.approve(call_id, {"rows": "many"}),
            lambda: control.resume(),
        ):
            try:
                bad()
            except (UnknownCallError, InvalidEditError, NotPausedError) as exc:
                problems.append(type(exc))
        control.approve(call_id, {"rows": 150}, by="ann")
        with pytest.raises(AlreadyDecidedError):
            control.reject(call_id, "late", by="bob")

    events = await run(agent([("delete", {"rows": 500})]), decide)
    assert problems == [UnknownCallError, InvalidEditError, NotPausedError]
    decided = [e.data for e in events if e.event_type.value == "approval_decided"]
    assert [(d["decision"], d["arguments"], d["by"]) for d in decided] == [
        ("edited", {"rows": 150}, "ann")
    ]
    assert ran == ["delete 150"]
    # The model learns the arguments were changed.
    assert "edited by ann" in events[-1].data["output"]


async def test_a_timeout_decides_timed_out_and_nothing_runs() -> None:
    events = await run(agent([("delete", {"rows": 500})], approval_timeout=0.05))
    decided = [e.data for e in events if e.event_type.value == "approval_decided"]
    assert decided[0]["decision"] == "timed_out"
    assert ran == []
    assert "nobody approved" in events[-1].data["output"]


async def test_cancel_while_waiting_decides_cancelled_and_ends_the_run() -> None:
    token = CancellationToken()

    def cancel(event: StepEvent, control: RunControl) -> None:
        if event.event_type.value == "approval_requested":
            asyncio.get_running_loop().call_later(0.05, token.cancel, "stop")

    events = await run(agent([("delete", {"rows": 500})]), cancel, token)
    assert kinds(events)[-2:] == ["approval_decided", "cancelled"]
    assert events[-2].data["decision"] == "cancelled"
    assert events[-1].data["interrupted"] == "approval"
    assert ran == []


async def test_resume_with_steps_counts_model_and_tool_calls() -> None:
    steps_agent = Agent(
        "s",
        ScriptedGateway(
            [ScriptedTurn(f"t{i}", [("read", {"rows": i})]) for i in range(4)]
            + [ScriptedTurn("end")]
        ),
        tools=[read],
        max_steps=5,
    )
    log: list[str] = []
    pauses = 0

    def drive(event: StepEvent, control: RunControl) -> None:
        nonlocal pauses
        kind = event.event_type.value
        if kind in ("thought", "observation"):
            log.append(kind)
        if kind == "thought" and not pauses and event.data["text"] == "t0":
            control.pause(by="ann", reason="look")
        if kind == "paused":
            pauses += 1
            log.append("paused")
            # First two pauses: step one call; then let it run to the end.
            loop = asyncio.get_running_loop()
            loop.call_soon(control.resume, "ann", 1 if pauses <= 2 else None)

    events = await run(steps_agent, drive)
    assert kinds(events)[-1] == "final_answer"
    # Paused before t0's tool call; one step (the tool call), paused; one step (the
    # next model call), paused; then on to the end.
    assert log[:6] == ["thought", "paused", "observation", "paused", "thought", "paused"]
    assert pauses == 3
    assert ran == ["read 0", "read 1", "read 2", "read 3"]
