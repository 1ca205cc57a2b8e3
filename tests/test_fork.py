"""Forks against a real server: a loopback LLM counts the model requests and the tools
count their calls, so "copied, not re-run" is measured, not assumed."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import read_until_result
from llm_server import FakeLLMServer, FakeToolCall, Reply

from agentkit_jupyter.core import Agent, OpenAIGateway, tool
from agentkit_jupyter.kernel.static_html import render_static_html

CALLS: Counter[str] = Counter()


@tool
def search(query: str) -> str:
    """Search the catalogue.

    Args:
        query: what to look for.
    """
    CALLS["search"] += 1
    return f"3 results for {query}"


@tool
def fetch(item: int) -> str:
    """Fetch one item.

    Args:
        item: its number.
    """
    CALLS["fetch"] += 1
    return f"item {item}: a blue lamp"


@pytest.fixture
def llm(jp_serverapp: Any, jp_asyncio_loop: Any) -> Iterator[FakeLLMServer]:
    """The loopback LLM, and an agent on the server that asks it."""
    server = FakeLLMServer().start()
    hub = jp_serverapp.web_app.settings["agentkit"].hub
    gateway = OpenAIGateway(server.url, timeout=10, max_retries=0)
    agent = Agent("shopper", gateway, tools=[search, fetch], model="fake-model")
    hub.agents.register(agent, replace=True)
    CALLS.clear()
    try:
        yield server
    finally:
        jp_asyncio_loop.run_until_complete(gateway.aclose())
        server.close()


def three_steps(server: FakeLLMServer) -> None:
    """search, then fetch, then the answer: three model requests."""
    server.enqueue(
        Reply(text="Let me search.", tool_calls=[FakeToolCall("search", {"query": "lamp"})]),
        Reply(text="Fetching the first.", tool_calls=[FakeToolCall("fetch", {"item": 1})]),
        Reply(text="The first lamp is blue."),
    )


async def run_to_end(api: Any, ws_connect: Any, body: dict[str, Any]) -> tuple[str, list[Any]]:
    status, record = await api("POST", "tasks", body=body)
    assert status == 201, record
    async with await ws_connect(record["task_id"]) as ws:
        return record["task_id"], await read_until_result(ws)


async def follow(ws_connect: Any, task_id: str) -> list[dict[str, Any]]:
    async with await ws_connect(task_id) as ws:
        return await read_until_result(ws)


def steps(messages: list[dict[str, Any]], kind: str | None = None) -> list[dict[str, Any]]:
    return [
        m
        for m in messages
        if m["type"] == "step" and (kind is None or m["data"]["event_type"] == kind)
    ]


def seq_of(messages: list[dict[str, Any]], kind: str, step: int) -> int:
    return next(m["seq"] for m in steps(messages, kind) if m["data"]["step"] == step)


async def test_a_fork_copies_its_steps_without_a_model_or_tool_call(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    three_steps(llm)
    parent, messages = await run_to_end(api, ws_connect, {"agent": "shopper", "input": "a lamp"})
    assert len(llm.requests) == 3 and CALLS == {"search": 1, "fetch": 1}

    # Fork after step 2's observation: steps 1-2 copied, only the answer is live.
    at = seq_of(messages, "observation", 2)
    llm.enqueue(Reply(text="A blue lamp, item 1."))
    status, fork = await api("POST", "tasks", parent, "fork", body={"at_seq": at})
    assert status == 201, fork
    assert fork["parent_id"] == parent and fork["forked_at_seq"] == at
    assert fork["fork_kind"] == "fork"
    forked = await follow(ws_connect, fork["task_id"])

    assert len(llm.requests) == 4  # one request: the answer
    assert CALLS == {"search": 1, "fetch": 1}  # no tool ran again
    copied = [m for m in steps(forked) if m["data"].get("copied")]
    live = [m for m in steps(forked) if not m["data"].get("copied")]
    parent_upto = [m for m in steps(messages) if m["seq"] <= at]
    assert [m["data"]["data"] for m in copied] == [m["data"]["data"] for m in parent_upto]
    assert all(m["data"]["step"] == 3 for m in live)
    assert forked[-1]["data"]["status"] == "succeeded"
    assert forked[-1]["data"]["output"] == "A blue lamp, item 1."
    # The model saw the whole conversation of the copied part.
    seen = llm.requests[-1].messages
    assert [m["role"] for m in seen] == ["user", "assistant", "tool", "assistant", "tool"]
    assert seen[-1]["content"] == "item 1: a blue lamp"
    # Its record: only the live call's tokens are the fork's own.
    status, record = await api("GET", "tasks", fork["task_id"], params={"limit": "0"})
    assert record["tokens_in"] == 12 and record["tokens_out"] == 7  # one call's (Reply default)
    assert record["parent_id"] == parent
    # The static copy (GitHub, nbviewer) marks the copied steps and names the parent.
    html = render_static_html(record, forked)
    assert html.count("data-copied='true'") == 2  # steps 1 and 2
    assert f"Forked from task <code>{parent}</code>" in html
    assert "12 tokens in, 7 out" in html


async def test_a_replaced_observation_reaches_the_model_and_the_tool_does_not_run(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    three_steps(llm)
    parent, messages = await run_to_end(api, ws_connect, {"agent": "shopper", "input": "a lamp"})
    at = seq_of(messages, "observation", 1)
    llm.enqueue(Reply(text="No results, so nothing to fetch."))
    edit = {"observation": "0 results for lamp"}
    status, fork = await api("POST", "tasks", parent, "fork", body={"at_seq": at, "edit": edit})
    assert status == 201, fork
    forked = await follow(ws_connect, fork["task_id"])

    assert CALLS == {"search": 1, "fetch": 1}
    [observation] = [m for m in steps(forked, "observation") if not m["data"].get("copied")]
    assert observation["data"]["data"]["output"] == "0 results for lamp"
    assert observation["data"]["data"]["edited"] is True
    assert llm.requests[-1].messages[-1]["content"] == "0 results for lamp"
    assert forked[-1]["data"]["output"] == "No results, so nothing to fetch."


async def test_edited_arguments_run_the_call_again_with_them(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    three_steps(llm)
    parent, messages = await run_to_end(api, ws_connect, {"agent": "shopper", "input": "a lamp"})
    at = seq_of(messages, "tool_call", 2)
    llm.enqueue(Reply(text="Item 7 then."))
    body = {"at_seq": at, "edit": {"arguments": {"item": 7}}}
    status, fork = await api("POST", "tasks", parent, "fork", body=body)
    assert status == 201, fork
    forked = await follow(ws_connect, fork["task_id"])

    assert CALLS == {"search": 1, "fetch": 2}  # fetch ran again, search did not
    [call] = [m for m in steps(forked, "tool_call") if not m["data"].get("copied")]
    assert call["data"]["data"]["arguments"] == {"item": 7}
    assert call["data"]["data"]["edited"] is True
    [observation] = [m for m in steps(forked, "observation") if not m["data"].get("copied")]
    assert observation["data"]["data"]["output"] == "item 7: a blue lamp"
    assert len(llm.requests) == 4
    # The model reads its own (edited) call and its result.
    sent = llm.requests[-1].messages
    assert json.loads(sent[-2]["tool_calls"][0]["function"]["arguments"]) == {"item": 7}


async def test_a_new_input_forks_at_the_start(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    three_steps(llm)
    parent, _ = await run_to_end(api, ws_connect, {"agent": "shopper", "input": "a lamp"})
    llm.enqueue(Reply(text="Chairs are out of stock."))
    body = {"at_seq": 0, "edit": {"input": "a chair"}}
    status, fork = await api("POST", "tasks", parent, "fork", body=body)
    assert status == 201, fork
    assert fork["input"] == "a chair"
    forked = await follow(ws_connect, fork["task_id"])
    assert not [m for m in steps(forked) if m["data"].get("copied")]
    assert llm.requests[-1].messages[-1] == {"role": "user", "content": "a chair"}
    assert forked[-1]["data"]["output"] == "Chairs are out of stock."


async def test_bad_forks_are_refused_with_their_codes(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    three_steps(llm)
    parent, messages = await run_to_end(api, ws_connect, {"agent": "shopper", "input": "a lamp"})
    thought = seq_of(messages, "thought", 1)
    token = steps(messages, "token")[0]["seq"]
    call = seq_of(messages, "tool_call", 2)
    cases = [
        ({"at_seq": 999}, 400, "invalid_fork"),
        ({"at_seq": token}, 400, "invalid_fork"),
        ({"at_seq": thought, "edit": {"observation": "x"}}, 400, "invalid_fork"),
        ({"at_seq": 3, "edit": {"input": "x"}}, 400, "invalid_fork"),
        ({"at_seq": call, "edit": {"arguments": {"item": "seven"}}}, 400, "invalid_arguments"),
        ({"at_seq": call, "edit": {"observation": "x", "input": "y"}}, 400, "invalid_body"),
        ({"at_seq": -1}, 400, "invalid_body"),
    ]
    for body, status, code in cases:
        got, answer = await api("POST", "tasks", parent, "fork", body=body)
        assert (got, answer["error"]["code"]) == (status, code), (body, answer)
    got, answer = await api("POST", "tasks", "nope", "fork", body={"at_seq": 1})
    assert (got, answer["error"]["code"]) == (404, "unknown_task")
    assert len(llm.requests) == 3  # nothing was run for any of them


async def test_a_running_task_forks_at_a_step_it_has_completed(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    llm.enqueue(
        Reply(text="Let me search.", tool_calls=[FakeToolCall("search", {"query": "lamp"})]),
        Reply(text="Still thinking about it.", delay=2.0),
    )
    status, record = await api("POST", "tasks", body={"agent": "shopper", "input": "a lamp"})
    parent = record["task_id"]
    async with await ws_connect(parent) as ws:
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "step" and message["data"]["event_type"] == "observation":
                    break
        at = message["seq"]
        llm.enqueue(Reply(text="From the fork."))
        status, fork = await api("POST", "tasks", parent, "fork", body={"at_seq": at})
        assert status == 201, fork
        forked = await follow(ws_connect, fork["task_id"])
        assert forked[-1]["data"]["output"] == "From the fork."
        assert CALLS == {"search": 1}
        await read_until_result(ws)


async def test_a_forks_lineage_tokens_and_budget_survive_a_restart(tmp_path: Any) -> None:
    from agentkit_jupyter.core import AgentPool, ScriptedGateway, ScriptedTurn
    from agentkit_jupyter.tasks import TaskHub, TaskStore
    from agentkit_jupyter.tasks.runs import fork_task

    db = tmp_path / "t.sqlite3"
    agent = Agent(
        "a",
        ScriptedGateway(
            [ScriptedTurn("Adding.", [("search", {"query": "x"})]), ScriptedTurn("ok")]
        ),
        tools=[search],
        prices={"scripted": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}},
    )
    hub = TaskHub(AgentPool([agent]), store=TaskStore(db))
    parent = hub.create_task("a", "q", budget={"max_tokens": 1000})
    await asyncio.wait_for(parent.wait(), 5)
    child = await fork_task(hub, parent.task_id, 0)
    await asyncio.wait_for(child.wait(), 5)
    before = child.to_dict()
    await hub.shutdown()

    reopened = TaskHub(AgentPool([agent]), store=TaskStore(db))
    again = reopened.get(child.task_id).to_dict()
    for key in ("parent_id", "forked_at_seq", "fork_kind", "tokens_in", "tokens_out", "cost"):
        assert again[key] == before[key], key
    assert again["parent_id"] == parent.task_id and again["cost"] > 0
    assert reopened.get(parent.task_id).to_dict()["budget"] == {
        "max_tokens": 1000,
        "max_cost": None,
    }
    await reopened.shutdown()


async def test_a_follow_up_question_continues_the_conversation(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    three_steps(llm)
    parent, messages = await run_to_end(api, ws_connect, {"agent": "shopper", "input": "a lamp"})
    answer = seq_of(messages, "final_answer", 3)
    llm.enqueue(Reply(text="It costs 40 euros."))
    body = {"at_seq": answer, "edit": {"follow_up": "How much is it?"}}
    status, fork = await api("POST", "tasks", parent, "fork", body=body)
    assert status == 201, fork
    assert fork["input"] == "How much is it?" and fork["parent_id"] == parent
    forked = await follow(ws_connect, fork["task_id"])

    assert CALLS == {"search": 1, "fetch": 1} and len(llm.requests) == 4
    seen = llm.requests[-1].messages
    assert seen[0] == {"role": "user", "content": "a lamp"}
    assert seen[-2:] == [
        {"role": "assistant", "content": "The first lamp is blue."},
        {"role": "user", "content": "How much is it?"},
    ]
    copied = [m for m in steps(forked) if m["data"].get("copied")]
    assert copied[-1]["data"]["event_type"] == "final_answer"  # the answer it follows
    live = [m for m in steps(forked) if not m["data"].get("copied")]
    assert {m["data"]["step"] for m in live} == {4}
    assert forked[-1]["data"]["status"] == "succeeded"
    assert forked[-1]["data"]["output"] == "It costs 40 euros."
    # Only after an answer.
    thought = seq_of(messages, "thought", 1)
    bad = {"at_seq": thought, "edit": {"follow_up": "and?"}}
    status, error = await api("POST", "tasks", parent, "fork", body=bad)
    assert (status, error["error"]["code"]) == (400, "invalid_fork")
