"""Runs as data in the runtime: the conversation rebuilt from recorded events is the one
the model saw, fork plans copy and change what they say, and a recorded run replays
offline to the same events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentkit_jupyter.core import ReActEngine, StepEvent, tool
from agentkit_jupyter.core.events import EventType
from agentkit_jupyter.core.llm import LLMGateway, Message, ModelRequest, ModelTurn, TokenDelta
from agentkit_jupyter.core.replay import (
    ForkError,
    RecordedGateway,
    plan_fork,
    plan_resume,
    rebuild,
)
from agentkit_jupyter.core.scripted import ScriptedGateway, ScriptedTurn

QUESTION = "What is 2 + 3, doubled?"


@tool
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


@tool
def double(x: int) -> int:
    """Double a number.

    Args:
        x: the number.
    """
    return 2 * x


@tool(name="double")
def broken_double(x: int) -> int:
    """Double a number, wrongly.

    Args:
        x: the number.
    """
    return 3 * x


SCRIPT = [
    ScriptedTurn("First I add.", [("add", {"a": 2, "b": 3})]),
    ScriptedTurn("", [("double", {"x": 5}), ("add", {"a": 0, "b": 0})]),
    ScriptedTurn("It is 10."),
]


class Recording(LLMGateway):
    """Any gateway, with the requests it was sent kept."""

    def __init__(self, inner: LLMGateway) -> None:
        self.inner = inner
        self.requests: list[list[Message]] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        self.requests.append([dict(m) for m in request.messages])
        async for item in self.inner.stream(request):
            yield item


async def run(gateway: LLMGateway, tools: list[Any], **kwargs: Any) -> list[StepEvent]:
    engine = ReActEngine(gateway)
    stream = engine.execute_stream(
        [{"role": "user", "content": QUESTION}], tools, "scripted", "a", None, **kwargs
    )
    return [event async for event in stream]


def comparable(events: list[StepEvent]) -> list[tuple[str, int, dict[str, Any]]]:
    """Events without what differs between two runs of the same thing: times."""
    skip = {"duration_ms"}
    return [
        (e.event_type.value, e.step, {k: v for k, v in e.data.items() if k not in skip})
        for e in events
    ]


def test_rebuild_gives_back_each_conversation_the_model_saw() -> None:
    gateway = Recording(ScriptedGateway(SCRIPT))
    events = asyncio.run(run(gateway, [add, double]))
    assert events[-1].event_type is EventType.FINAL_ANSWER
    # Before model call k, the events so far rebuild the conversation it was sent.
    for k, request in enumerate(gateway.requests):
        before = [e for e in events if e.step <= k]
        assert rebuild(QUESTION, before).messages == request, k
    snapshot = rebuild(QUESTION, [e for e in events if e.step <= 2])
    assert snapshot.step == 2 and snapshot.unfinished == []


def test_rebuild_of_a_half_done_turn_names_its_unfinished_calls() -> None:
    events = asyncio.run(run(ScriptedGateway(SCRIPT), [add, double]))
    # Step 2's tool calls and its first observation only: the run stopped there.
    first_obs = next(
        i for i, e in enumerate(events) if e.step == 2 and e.event_type is EventType.OBSERVATION
    )
    snapshot = rebuild(QUESTION, events[: first_obs + 1])
    assert snapshot.step == 2
    assert [c.name for c in snapshot.unfinished] == ["add"]
    assert [c.name for c in snapshot.interrupted] == ["add"]  # it had started


def test_a_replay_reproduces_the_same_events_offline() -> None:
    original = asyncio.run(run(ScriptedGateway(SCRIPT, token_delay=0.001), [add, double]))
    replayed = asyncio.run(run(RecordedGateway.from_events(original), [add, double]))
    assert comparable(replayed) == comparable(original)


def test_a_replay_with_a_changed_tool_shows_what_changed() -> None:
    original = asyncio.run(run(ScriptedGateway(SCRIPT), [add, double]))
    replayed = asyncio.run(run(RecordedGateway.from_events(original), [add, broken_double]))
    before = [e.data["output"] for e in original if e.event_type is EventType.OBSERVATION]
    after = [e.data["output"] for e in replayed if e.event_type is EventType.OBSERVATION]
    assert before == ["5", "10", "0"] and after == ["5", "15", "0"]
    # The model's turns are the recorded ones: the answer does not change by itself.
    assert replayed[-1].data["output"] == "It is 10."


def test_a_replay_beyond_its_recording_fails_clearly() -> None:
    original = asyncio.run(run(ScriptedGateway(SCRIPT[2:]), []))
    gateway = RecordedGateway.from_events(original)
    # A run that needs a second model turn: the recording has one.
    events = asyncio.run(run(RecordedGateway.from_events(original[:0]), []))
    assert events[-1].event_type is EventType.ERROR
    assert "0 model turns" in events[-1].data["message"]
    assert len(gateway.turns) == 1


def numbered(events: list[StepEvent]) -> list[tuple[int, StepEvent]]:
    return list(enumerate(events, start=1))


def test_plan_fork_copies_a_turn_whole_and_cuts_before_an_edit() -> None:
    events = numbered(asyncio.run(run(ScriptedGateway(SCRIPT), [add, double])))
    thought = next(s for s, e in events if e.event_type is EventType.THOUGHT)
    plan = plan_fork(QUESTION, events, thought)
    copied_kinds = [e.event_type.value for s, e in events if s in plan.copied]
    assert copied_kinds[-1] == "tool_call"  # the thought's turn came with its call
    assert [c.name for c in plan.snapshot.unfinished] == ["add"]

    step2_calls = [s for s, e in events if e.step == 2 and e.event_type is EventType.TOOL_CALL]
    plan = plan_fork(QUESTION, events, step2_calls[1], arguments={"a": 1, "b": 1})
    assert max(plan.copied) < step2_calls[1]
    assert [c.name for c in plan.snapshot.unannounced] == ["add"]
    assert [c.name for c in plan.snapshot.unfinished] == ["double", "add"]
    assert plan.snapshot.unfinished[1].arguments == '{"a": 1, "b": 1}'


def test_plan_fork_refuses_what_does_not_fit() -> None:
    events = numbered(asyncio.run(run(ScriptedGateway(SCRIPT, token_delay=0.0), [add, double])))
    thought = next(s for s, e in events if e.event_type is EventType.THOUGHT)
    token = next(s for s, e in events if e.event_type is EventType.TOKEN)
    with pytest.raises(ForkError, match="no step event"):
        plan_fork(QUESTION, events, 10_000)
    with pytest.raises(ForkError, match="streamed piece"):
        plan_fork(QUESTION, events, token)
    with pytest.raises(ForkError, match="replace an observation"):
        plan_fork(QUESTION, events, thought, observation="x")
    with pytest.raises(ForkError, match="at_seq must be 0"):
        plan_fork(QUESTION, events, thought, new_input="x")
    assert plan_fork(QUESTION, events, 0, new_input="Other?").snapshot.messages == [
        {"role": "user", "content": "Other?"}
    ]


def test_plan_resume_asks_again_for_a_call_that_had_started() -> None:
    events = asyncio.run(run(ScriptedGateway(SCRIPT), [add, double]))
    # The run "died" right after step 2's calls were announced.
    last_call = max(
        i for i, e in enumerate(events) if e.step == 2 and e.event_type is EventType.TOOL_CALL
    )
    plan = plan_resume(QUESTION, numbered(events[: last_call + 1]))
    assert [c.name for c in plan.snapshot.interrupted] == ["double", "add"]


def test_plan_resume_of_a_run_paused_before_a_call_runs_it_without_asking() -> None:
    """Paused between two calls of a turn (the first done), then stopped: the second
    had not started, so the continuation runs it; nothing is asked again."""
    events = asyncio.run(run(ScriptedGateway(SCRIPT), [add, double]))
    first_obs = next(
        i for i, e in enumerate(events) if e.step == 2 and e.event_type is EventType.OBSERVATION
    )
    paused = StepEvent(EventType.PAUSED, 2, {"reason": "worker shutting down", "by": None})
    plan = plan_resume(QUESTION, numbered([*events[: first_obs + 1], paused]))
    assert [c.name for c in plan.snapshot.unfinished] == ["add"]
    assert plan.snapshot.interrupted == []
    # Resumed after the pause, then stopped: it may have started, so it is asked.
    resumed = StepEvent(EventType.RESUMED, 2, {"by": None})
    plan = plan_resume(QUESTION, numbered([*events[: first_obs + 1], paused, resumed]))
    assert [c.name for c in plan.snapshot.interrupted] == ["add"]


def test_a_fork_at_the_final_answer_asks_that_step_again() -> None:
    events = numbered(asyncio.run(run(ScriptedGateway(SCRIPT, token_delay=0.0), [add, double])))
    answer = next(s for s, e in events if e.event_type is EventType.FINAL_ANSWER)
    plan = plan_fork(QUESTION, events, answer)
    kept = {e.event_type for s, e in events if s in plan.copied and e.step == 3}
    assert kept == set()  # the answer's tokens and usage are made again
    assert plan.snapshot.step == 2
