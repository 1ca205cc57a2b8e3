"""Tokens, cost and budget: prices from genai-prices or the user's table (which wins),
no cost for an unknown model, and a budget that stops a run in the middle of a call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from llm_server import FakeLLMServer, FakeToolCall, Reply

from agentkit_jupyter.core import Agent, OpenAIGateway, ReActEngine, tool
from agentkit_jupyter.core.costs import Budget, Pricing, set_prices
from agentkit_jupyter.core.events import EventType
from agentkit_jupyter.core.llm import Usage
from agentkit_jupyter.core.scripted import ScriptedGateway, ScriptedTurn


@pytest.fixture(autouse=True)
def _no_user_prices() -> Iterator[None]:
    set_prices(None)
    yield
    set_prices(None)


def test_a_known_model_is_priced_by_the_library_and_an_unknown_one_is_not() -> None:
    usage = Usage(1_000_000, 1_000_000)
    assert Pricing("gpt-4o-mini").cost(usage) == pytest.approx(0.15 + 0.6)
    assert Pricing("my-local-llama").cost(usage) is None
    assert not Pricing("my-local-llama").known


def test_the_users_table_wins_over_the_library() -> None:
    mine = {"gpt-4o-mini": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    assert Pricing("gpt-4o-mini", mine).cost(Usage(1_000_000, 500_000)) == pytest.approx(2.0)
    set_prices({"my-local-llama": {"input_per_mtok": 0.5, "output_per_mtok": 0.5}})
    assert Pricing("my-local-llama").cost(Usage(2_000_000, 0)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="input_per_mtok"):
        set_prices({"x": {"input": 1}})


def test_a_budget_is_checked_for_what_it_says() -> None:
    with pytest.raises(ValueError):
        Budget(max_tokens=0)
    with pytest.raises(ValueError, match="max_tokens and max_cost"):
        Budget.parse({"tokens": 5})
    assert Budget.parse({"max_tokens": None}) is None


@tool
def add(a: int, b: int) -> int:
    """Add.

    Args:
        a: one.
        b: two.
    """
    return a + b


def run_scripted(**kwargs: Any) -> list[Any]:
    gateway = ScriptedGateway(
        [ScriptedTurn("Adding.", [("add", {"a": 1, "b": 2})]), ScriptedTurn("It is 3.")]
    )

    async def main() -> list[Any]:
        stream = ReActEngine(gateway).execute_stream(
            [{"role": "user", "content": "1 + 2?"}], [add], "scripted", "a", None, **kwargs
        )
        return [e async for e in stream]

    return asyncio.run(main())


def test_every_model_call_reports_its_tokens_and_the_runs_totals() -> None:
    events = run_scripted(prices={"scripted": {"input_per_mtok": 1e6, "output_per_mtok": 2e6}})
    usages = [e.data for e in events if e.event_type is EventType.USAGE]
    assert len(usages) == 2
    for usage in usages:
        assert usage["cost"] == pytest.approx(
            usage["prompt_tokens"] + 2 * usage["completion_tokens"]
        )
    assert usages[-1]["total_prompt_tokens"] == sum(u["prompt_tokens"] for u in usages)
    answer = events[-1].data
    assert answer["usage"]["prompt_tokens"] == usages[-1]["total_prompt_tokens"]
    assert answer["cost"] == pytest.approx(sum(u["cost"] for u in usages))


def test_an_unknown_price_is_none_never_a_guess() -> None:
    events = run_scripted()
    usages = [e.data for e in events if e.event_type is EventType.USAGE]
    assert {u["cost"] for u in usages} == {None} and events[-1].data["cost"] is None
    assert usages[0]["prompt_tokens"] > 0


# -- against a real server and a loopback LLM ---------------------------------------


@pytest.fixture
def llm(jp_serverapp: Any, jp_asyncio_loop: Any) -> Iterator[FakeLLMServer]:
    server = FakeLLMServer(model="gpt-4o-mini").start()
    hub = jp_serverapp.web_app.settings["agentkit"].hub
    gateway = OpenAIGateway(server.url, timeout=10, max_retries=0)
    hub.agents.register(Agent("priced", gateway, tools=[add], model="gpt-4o-mini"), replace=True)
    hub.agents.register(
        Agent(
            "thrifty",
            gateway,
            model="gpt-4o-mini",
            budget={"max_cost": 0.000_05},
            prices={"gpt-4o-mini": {"input_per_mtok": 10.0, "output_per_mtok": 10.0}},
        ),
        replace=True,
    )
    try:
        yield server
    finally:
        jp_asyncio_loop.run_until_complete(gateway.aclose())
        server.close()


async def follow(ws_connect: Any, task_id: str) -> list[dict[str, Any]]:
    from conftest import read_until_result

    async with await ws_connect(task_id) as ws:
        return await read_until_result(ws)


async def test_the_record_has_tokens_in_and_out_and_the_cost(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    llm.enqueue(
        Reply(text="Adding.", tool_calls=[FakeToolCall("add", {"a": 1, "b": 2})], usage=(400, 20)),
        Reply(text="It is 3.", usage=(500, 10)),
    )
    status, record = await api("POST", "tasks", body={"agent": "priced", "input": "1 + 2?"})
    assert status == 201
    messages = await follow(ws_connect, record["task_id"])
    result = messages[-1]["data"]
    expected = (900 * 0.15 + 30 * 0.6) / 1_000_000
    assert result["usage"] == {"prompt_tokens": 900, "completion_tokens": 30}
    assert result["cost"] == pytest.approx(expected)
    status, record = await api("GET", "tasks", record["task_id"], params={"limit": "0"})
    assert (record["tokens_in"], record["tokens_out"]) == (900, 30)
    assert record["cost"] == pytest.approx(expected)
    status, listing = await api("GET", "tasks")
    [summary] = [t for t in listing["tasks"] if t["task_id"] == record["task_id"]]
    assert summary["cost"] == pytest.approx(expected) and summary["tokens_out"] == 30


async def test_a_budget_stops_a_streaming_call_where_it_crosses(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    words = " ".join(f"word{i}" for i in range(400))
    llm.enqueue(Reply(text=words, chunk_delay=0.02))
    body = {"agent": "priced", "input": "talk", "budget": {"max_tokens": 60}}
    status, record = await api("POST", "tasks", body=body)
    assert status == 201 and record["budget"] == {"max_tokens": 60, "max_cost": None}
    messages = await follow(ws_connect, record["task_id"])

    steps = [m["data"] for m in messages if m["type"] == "step"]
    end = steps[-1]
    assert end["event_type"] == "cancelled" and end["data"]["code"] == "budget_exceeded"
    assert end["data"]["interrupted"] == "llm_call"
    tokens = [s for s in steps if s["event_type"] == "token"]
    assert len(tokens) <= 60  # stopped while it streamed, far before its 400 words
    # Right after the last piece within the budget: the cut call's usage, the end
    # (how soon, in time, is benchmarks/budget_stop.py's figure).
    after = steps[steps.index(tokens[-1]) + 1 :]
    assert [s["event_type"] for s in after] == ["usage", "cancelled"]
    [partial] = [s["data"] for s in steps if s["event_type"] == "usage"]
    assert partial["estimated"] is True
    result = messages[-1]["data"]
    assert result["status"] == "cancelled" and result["code"] == "budget_exceeded"
    assert result["usage"]["prompt_tokens"] + result["usage"]["completion_tokens"] > 60
    # The call itself was aborted: the endpoint saw the client hang up.
    assert llm.requests[0].disconnected.wait(5)


async def test_an_agents_cost_budget_ends_the_run_after_the_call_that_crossed_it(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    # 10 $/Mtok: 3 + 2 tokens cost 0.00005 $ per call; the second call crosses it.
    llm.enqueue(Reply(text="one", usage=(3, 2)))
    status, record = await api("POST", "tasks", body={"agent": "thrifty", "input": "hi"})
    messages = await follow(ws_connect, record["task_id"])
    assert messages[-1]["data"]["status"] == "succeeded"  # exactly at the budget: fine

    llm.enqueue(Reply(text="one two three four five six", usage=(30, 6)))
    status, record = await api("POST", "tasks", body={"agent": "thrifty", "input": "hi"})
    messages = await follow(ws_connect, record["task_id"])
    result = messages[-1]["data"]
    assert result["status"] == "cancelled" and result["code"] == "budget_exceeded", result
    assert json.dumps(result).count("budget") >= 1


def test_a_call_that_cannot_fit_is_not_made() -> None:
    # 1st call: 4 + 6 tokens. The 2nd prompt is at least 10: with 15 allowed, not sent.
    gateway = ScriptedGateway(
        [ScriptedTurn("Adding now.", [("add", {"a": 1, "b": 2})]), ScriptedTurn("It is 3.")]
    )

    async def main() -> list[Any]:
        stream = ReActEngine(gateway).execute_stream(
            [{"role": "user", "content": "1 + 2?"}],
            [add],
            "m",
            "a",
            None,
            budget=Budget(max_tokens=15),
        )
        return [e async for e in stream]

    events = asyncio.run(main())
    usages = [e for e in events if e.event_type is EventType.USAGE]
    assert len(usages) == 1  # one call made, none estimated
    end = events[-1]
    assert end.event_type is EventType.CANCELLED and end.data["code"] == "budget_exceeded"
    assert end.data["interrupted"] == "between_steps"
    assert "next model call" in end.data["message"]
    assert (
        end.data["usage"]["total_tokens"]
        == usages[0].data["prompt_tokens"] + usages[0].data["completion_tokens"]
    )
