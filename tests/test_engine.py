"""The ReAct engine: every event type, every failure, real cancellation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from agentkit_jupyter.core import (
    Agent,
    AgentPool,
    CancellationToken,
    EventType,
    LLMError,
    LLMGateway,
    ModelRequest,
    ModelTurn,
    ReActEngine,
    ScriptedGateway,
    ScriptedTurn,
    StepEvent,
    TokenDelta,
    UnknownAgentError,
    demo_agents,
    tool,
)


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: First.
        b: Second.
    """
    return a + b


@tool
def explode() -> str:
    """Always fails."""
    raise RuntimeError("disk on fire")


@tool(timeout=0.1)
async def too_slow() -> str:
    """Takes too long."""
    await asyncio.sleep(10)
    return "late"


async def run(
    script: list[Any],
    tools: list[Any] | None = None,
    token: CancellationToken | None = None,
    max_steps: int = 10,
    **gateway_kwargs: Any,
) -> list[StepEvent]:
    engine = ReActEngine(ScriptedGateway(script, **gateway_kwargs))
    events = []
    async for event in engine.execute_stream(
        [{"role": "user", "content": "question"}],
        tools or [],
        model="scripted",
        agent_name="tester",
        system_prompt="be brief",
        cancellation_token=token,
        max_steps=max_steps,
    ):
        events.append(event)
    return events


def kinds(events: list[StepEvent], skip_tokens: bool = True) -> list[str]:
    """The steps a viewer follows: without tokens (unless asked) and the ``usage``
    accounting after each model call (tests/test_costs.py checks those)."""
    return [
        e.event_type.value
        for e in events
        if e.event_type != "usage" and not (skip_tokens and e.event_type == "token")
    ]


async def test_a_run_streams_thought_tool_call_observation_and_answer() -> None:
    events = await run(
        [
            ScriptedTurn("I will add.", [("add", {"a": 2, "b": 3})]),
            lambda ctx: ScriptedTurn(f"The sum is {ctx.observations[-1]}."),
        ],
        tools=[add],
    )
    assert kinds(events) == ["thought", "tool_call", "observation", "final_answer"]
    thought, call, observation, answer = [
        e for e in events if e.event_type not in ("token", "usage")
    ]
    assert thought.data["text"] == "I will add." and thought.step == 1
    assert call.data == {"call_id": "call_0_0", "name": "add", "arguments": {"a": 2, "b": 3}}
    assert observation.data["output"] == "5" and observation.data["is_error"] is False
    assert observation.data["call_id"] == "call_0_0" and observation.data["duration_ms"] >= 0
    assert answer.data["output"] == "The sum is 5."
    assert answer.data["total_steps"] == 2 and answer.step == 2
    # Tokens are summed over both model calls.
    assert answer.data["total_tokens"] == answer.data["usage"]["total_tokens"] > 0
    assert answer.data["total_tokens"] > thought.data["usage"]["total_tokens"]
    # The text streamed as token deltas before each turn completed.
    deltas = "".join(e.data["delta"] for e in events if e.event_type == "token")
    assert deltas == "I will add.The sum is 5."
    # Every event serialises to JSON.
    json.dumps([e.to_dict() for e in events])
    assert StepEvent.from_dict(answer.to_dict()) == answer


async def test_tool_calls_of_one_turn_run_concurrently() -> None:
    @tool
    async def wait(seconds: float) -> float:
        """Wait."""
        await asyncio.sleep(seconds)
        return seconds

    started = time.perf_counter()
    events = await run(
        [
            ScriptedTurn("", [("wait", {"seconds": 0.4}), ("wait", {"seconds": 0.4})]),
            ScriptedTurn("done"),
        ],
        tools=[wait],
    )
    assert time.perf_counter() - started < 0.75
    assert kinds(events) == ["tool_call", "tool_call", "observation", "observation", "final_answer"]


async def test_failing_tools_become_error_observations_and_the_loop_goes_on() -> None:
    events = await run(
        [
            ScriptedTurn(
                "Trying everything.",
                [
                    ("explode", {}),
                    ("too_slow", {}),
                    ("add", {"a": "x", "b": 1}),
                    ("add", "{not json"),
                    ("no_such_tool", {}),
                ],
            ),
            ScriptedTurn("Recovered."),
        ],
        tools=[add, explode, too_slow],
    )
    observations = {
        e.data["call_id"]: e.data for e in events if e.event_type == EventType.OBSERVATION
    }
    assert all(o["is_error"] for o in observations.values())
    codes = [observations[f"call_0_{i}"]["error_code"] for i in range(5)]
    assert codes == [
        "tool_error",
        "tool_timeout",
        "invalid_arguments",
        "invalid_arguments",
        "unknown_tool",
    ]
    assert "disk on fire" in observations["call_0_0"]["output"]
    assert "Available tools" in observations["call_0_4"]["output"]
    assert events[-1].event_type == EventType.FINAL_ANSWER
    assert events[-1].data["output"] == "Recovered."


async def test_empty_model_turn_ends_with_error() -> None:
    events = await run([ScriptedTurn("")])
    assert kinds(events) == ["error"]
    assert events[-1].data["code"] == "empty_response"


async def test_max_steps_ends_with_error() -> None:
    loop_turn = ScriptedTurn("again", [("add", {"a": 1, "b": 1})])
    events = await run([loop_turn] * 5, tools=[add], max_steps=3)
    assert events[-1].event_type == EventType.ERROR
    assert events[-1].data["code"] == "max_steps_exceeded"
    assert "3 steps" in events[-1].data["message"]
    assert max(e.step for e in events) == 3


class FailingGateway(LLMGateway):
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        yield TokenDelta("partial ")
        raise self.error


async def _run_gateway(gateway: LLMGateway, **engine_kwargs: Any) -> list[StepEvent]:
    engine = ReActEngine(gateway, **engine_kwargs)
    return [
        e
        async for e in engine.execute_stream(
            [{"role": "user", "content": "hi"}], [], "m", "a", None
        )
    ]


async def test_llm_errors_end_the_stream_without_raising() -> None:
    events = await _run_gateway(FailingGateway(LLMError("HTTP 503 after 3 retries")))
    assert events[-1].event_type == EventType.ERROR
    assert events[-1].data["code"] == "llm_error"
    assert "503" in events[-1].data["message"]
    # A bug in a gateway is reported generically, not raised.
    events = await _run_gateway(FailingGateway(ZeroDivisionError("secret internals")))
    assert events[-1].data["code"] == "llm_error"
    assert "secret internals" not in events[-1].data["message"]
    # A model that stalls mid-stream times out.
    stalled = ScriptedGateway([ScriptedTurn("slow")], latency=5)
    events = await _run_gateway(stalled, llm_idle_timeout=0.2)
    assert events[-1].data["code"] == "llm_timeout"


async def test_cancel_interrupts_a_slow_llm_call() -> None:
    token = CancellationToken()
    loop = asyncio.get_running_loop()
    cancelled_at: list[float] = []

    def cancel() -> None:
        cancelled_at.append(time.perf_counter())
        token.cancel("user clicked Cancel")

    loop.call_later(0.2, cancel)
    events = await run([ScriptedTurn("never")], token=token, latency=30)
    elapsed = time.perf_counter() - cancelled_at[0]
    assert elapsed < 0.5
    assert kinds(events) == ["cancelled"]
    data = events[-1].data
    assert data["interrupted"] == "llm_call" and data["reason"] == "user clicked Cancel"
    assert data["background"] == [] and "Nothing is left running" in data["message"]


async def test_cancel_interrupts_a_slow_async_tool() -> None:
    stopped = asyncio.Event()

    @tool
    async def crawl() -> str:
        """Crawl for a long time."""
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()
        return "never"

    token = CancellationToken()
    asyncio.get_running_loop().call_later(0.2, token.cancel)
    started = time.perf_counter()
    events = await run([ScriptedTurn("crawling", [("crawl", {})])], tools=[crawl], token=token)
    assert time.perf_counter() - started < 0.7
    assert kinds(events) == ["thought", "tool_call", "cancelled"]
    assert events[-1].data["interrupted"] == "tool_calls"
    assert events[-1].data["tools"] == ["crawl"] and events[-1].data["background"] == []
    await asyncio.wait_for(stopped.wait(), 1)  # the coroutine really was cancelled


async def test_cancel_abandons_a_sync_tool_and_says_it_may_still_run() -> None:
    release = threading.Event()

    @tool
    def grind() -> str:
        """Blocking work."""
        release.wait(10)
        return "ground"

    token = CancellationToken()
    asyncio.get_running_loop().call_later(0.2, token.cancel)
    started = time.perf_counter()
    events = await run([ScriptedTurn("", [("grind", {})])], tools=[grind], token=token)
    assert time.perf_counter() - started < 0.7
    data = events[-1].data
    assert data["background"] == ["grind"]
    assert "may still be running in the background" in data["message"]
    release.set()


async def test_cancel_before_start_and_between_steps() -> None:
    token = CancellationToken()
    token.cancel("early")
    events = await run([ScriptedTurn("x")], token=token)
    assert kinds(events) == ["cancelled"]
    assert events[-1].data["interrupted"] == "between_steps"


async def test_agent_pool_never_falls_back_to_another_agent() -> None:
    pool = AgentPool(demo_agents())
    assert [a.name for a in pool] == ["demo", "demo-slow", "demo-approval"]
    try:
        pool.get("dmeo")
    except UnknownAgentError as exc:
        assert "Unknown agent 'dmeo'" in str(exc) and "demo-slow" in str(exc)
    else:
        raise AssertionError("expected UnknownAgentError")
    agent = Agent("x", ScriptedGateway([ScriptedTurn("hi")]), tools=[add])
    assert agent.summary()["tools"] == [
        {"name": "add", "description": agent.tool_list[0].description}
    ]


async def test_demo_agent_answers_with_tool_calls() -> None:
    demo = demo_agents()[0]
    events = [e async for e in demo.stream("How do Rome and Vienna compare?")]
    names = [e.data["name"] for e in events if e.event_type == EventType.TOOL_CALL]
    assert names == ["lookup_city", "lookup_city", "calculator"]
    answer = events[-1]
    assert answer.event_type == EventType.FINAL_ANSWER
    assert "Rome" in answer.data["output"] and "Vienna" in answer.data["output"]
    assert "1.37 times" in answer.data["output"]


def test_terminal_demo_prints_steps_as_they_arrive() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "agentkit_jupyter", "demo", "Rome or Madrid?"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "-> lookup_city" in done.stdout and "Answer: Madrid" in done.stdout
