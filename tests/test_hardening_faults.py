"""Faults: vanishing clients, connection storms, racing cancels, hanging tools, a failing
LLM endpoint, and a server shutting down with runs in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import read_until_result
from llm_server import FakeLLMServer, Reply
from server_process import ServerProcess
from websockets.sync.client import connect as sync_connect


async def create(api: Any, agent: str, text: str = "q") -> str:
    status, body = await api("POST", "tasks", body={"agent": agent, "input": text})
    assert status == 201, body
    return str(body["task_id"])


async def subscribers(api: Any, task_id: str) -> int:
    _, task = await api("GET", "tasks", task_id)
    return int(task["subscribers"])


async def test_a_client_vanishing_mid_stream_leaves_the_run_and_others_alone(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "paced")
    watcher = await ws_connect(task_id)
    leaver = await ws_connect(task_id)
    for _ in range(5):
        await leaver.recv()
    leaver.transport.abort()  # no close handshake: the TCP connection just dies
    messages = await read_until_result(watcher)
    assert messages[-1]["data"]["status"] == "succeeded"
    async with asyncio.timeout(5):
        while await subscribers(api, task_id):
            await asyncio.sleep(0.05)


async def test_a_storm_of_200_clients_connecting_and_leaving_during_a_run(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "paced")
    watcher = await ws_connect(task_id)
    watching = asyncio.ensure_future(read_until_result(watcher, timeout=60))

    async def flit(n: int) -> None:
        # max_queue=None: the replay it leaves unread must not stall its closing handshake.
        ws = await ws_connect(task_id, after=random.randint(0, 20), max_queue=None)
        for _ in range(n % 4):
            await ws.recv()
        if n % 2:
            ws.transport.abort()
        else:
            await ws.close()

    for wave in range(4):
        await asyncio.gather(*(flit(wave * 50 + i) for i in range(50)))
    messages = await watching
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == list(range(1, len(seqs) + 1))
    assert messages[-1]["data"]["status"] == "succeeded"
    async with asyncio.timeout(5):
        while await subscribers(api, task_id):
            await asyncio.sleep(0.05)


async def test_two_cancels_at_once_give_one_result(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "hang-llm")
    a, b = await ws_connect(task_id), await ws_connect(task_id)
    await asyncio.gather(a.recv(), b.recv())
    rest = asyncio.ensure_future(api("POST", "tasks", task_id, "cancel"))
    await asyncio.gather(a.send('{"type": "cancel"}'), b.send('{"type": "cancel"}'))
    got_a, got_b = await asyncio.gather(read_until_result(a, 5), read_until_result(b, 5))
    status, _ = await rest
    assert status in (202, 409)
    for messages in (got_a, got_b):
        assert [m["type"] for m in messages].count("result") == 1
        cancelled = [m for m in messages if m.get("data", {}).get("event_type") == "cancelled"]
        assert len(cancelled) == 1
    steps_a = [m for m in got_a if "seq" in m]
    assert steps_a == [m for m in got_b if "seq" in m]
    # Any late cancel was told the task had already ended.
    late = [m["data"]["code"] for m in got_a + got_b if m["type"] == "error"]
    assert set(late) <= {"task_finished"}


async def test_cancel_stops_a_tool_that_hangs_forever(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "hang-tool")
    ws = await ws_connect(task_id)
    async with asyncio.timeout(5):
        while json.loads(await ws.recv()).get("data", {}).get("event_type") != "tool_call":
            pass
    started = time.monotonic()
    await ws.send('{"type": "cancel"}')
    messages = await read_until_result(ws, 5)
    assert time.monotonic() - started < 1.0
    assert messages[-2]["data"]["data"]["tools"] == ["hang_forever"]
    assert messages[-1]["data"]["status"] == "cancelled"


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def agentkit_config(llm: FakeLLMServer) -> dict[str, Any]:
    return {
        "llm_base_url": llm.url,
        "llm_api_key": "sk-test-secret",
        "llm_timeout": 0.5,
        "llm_max_retries": 0,
    }


async def test_an_llm_endpoint_that_times_out_fails_the_task_clearly(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    llm.enqueue(Reply(text="too late", delay=3))
    task_id = await create(api, "assistant")
    messages = await read_until_result(await ws_connect(task_id), 10)
    result = messages[-1]["data"]
    assert result["status"] == "failed"
    assert result["error"]["code"] == "llm_timeout"
    assert "sk-test-secret" not in json.dumps(messages)


async def test_an_llm_endpoint_closing_mid_stream_fails_the_task_clearly(
    api: Any, ws_connect: Any, llm: FakeLLMServer
) -> None:
    llm.enqueue(Reply(text="one two three four five six", close_after=3))
    task_id = await create(api, "assistant")
    messages = await read_until_result(await ws_connect(task_id), 10)
    tokens = [m for m in messages if m.get("data", {}).get("event_type") == "token"]
    assert tokens  # what arrived before the cut was streamed
    result = messages[-1]["data"]
    assert result["status"] == "failed" and result["error"]["code"] == "llm_error"
    assert "sk-test-secret" not in json.dumps(messages)


def test_shutdown_cancels_runs_and_tells_subscribers(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--AgentKitExtension.db_path=").start()
    try:
        import httpx

        ids = [
            httpx.post(
                server.api("tasks"), json={"agent": agent, "input": "q"}, headers=server.headers
            ).json()["task_id"]
            for agent in ("hang-llm", "demo-slow", "hang-tool")
        ]
        stack = contextlib.ExitStack()
        sockets = [
            stack.enter_context(sync_connect(server.ws(t), additional_headers=server.headers))
            for t in ids
        ]
        for ws in sockets:
            assert json.loads(ws.recv(timeout=5))["type"] == "connected"
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        for ws in sockets:
            messages = []
            try:
                while True:
                    messages.append(json.loads(ws.recv(timeout=10)))
            except Exception:
                pass
            results = [m for m in messages if m["type"] == "result"]
            assert len(results) == 1 and results[0]["data"]["status"] == "cancelled"
            assert results[0]["data"]["reason"] == "server shutting down"
        stack.close()
        assert server.proc.wait(20) == 0  # exited by itself: nothing left running
        assert time.monotonic() - started < 15
    finally:
        server.stop()


def terminal_and_results(messages: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    terminal = [
        m["data"]["event_type"]
        for m in messages
        if m["type"] == "step" and m["data"]["event_type"] in ("final_answer", "cancelled", "error")
    ]
    return terminal, [m["data"]["status"] for m in messages if m["type"] == "result"]


async def test_cancel_racing_the_final_answer_gives_exactly_one_result(
    api: Any, ws_connect: Any, jp_serverapp: Any
) -> None:
    """Cancel at every moment around the answer: before, during, after it."""
    from hardening_support import extension

    from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn
    from agentkit_jupyter.tasks import TaskFinishedError

    hub = extension(jp_serverapp).hub
    hub.agents.register(Agent("quick", ScriptedGateway([ScriptedTurn("done")], latency=0.02)))
    outcomes: set[str] = set()
    for tick in range(16):  # cancel 0, 3, 6 ... 45 ms after the start; the answer is at ~20
        task_id = await create(api, "quick")
        ws = await ws_connect(task_id)
        await asyncio.sleep(tick * 0.003)
        try:
            hub.cancel(task_id, "racing")
            accepted = True
        except TaskFinishedError:
            accepted = False
        messages = await read_until_result(ws, 5)
        terminal, results = terminal_and_results(messages)
        assert len(terminal) == 1 and len(results) == 1, messages
        assert (terminal[0], results[0]) in {
            ("final_answer", "succeeded"),
            ("cancelled", "cancelled"),
        }
        if not accepted:
            assert results[0] == "succeeded"  # refused because the answer was already there
        _, task = await api("GET", "tasks", task_id)
        assert task["status"] == results[0]
        assert task["events"] == [m for m in messages if "seq" in m]
        outcomes.add(results[0])
    assert outcomes == {"succeeded", "cancelled"}  # the race was really run both ways


async def test_a_cancel_arriving_while_the_answer_is_published_gives_one_result(
    api: Any, ws_connect: Any, jp_serverapp: Any
) -> None:
    """The worst moment: the cancel lands between the last token and the final answer."""
    from collections.abc import AsyncIterator

    from hardening_support import extension

    from agentkit_jupyter.core import CancellationToken, EventType, StepEvent

    hub = extension(jp_serverapp).hub
    ids: list[str] = []

    async def source(token: CancellationToken) -> AsyncIterator[StepEvent]:
        yield StepEvent(EventType.TOKEN, 1, {"delta": "done"})
        hub.cancel(ids[0], "at the worst moment")  # accepted: the run has not ended
        final = {"output": "done", "total_steps": 1, "total_tokens": 1, "usage": {}}
        yield StepEvent(EventType.FINAL_ANSWER, 1, final)

    gate = asyncio.Event()

    async def gated(token: CancellationToken) -> AsyncIterator[StepEvent]:
        await gate.wait()
        async for event in source(token):
            yield event

    task = hub.run_source("racer", "q", gated)
    ids.append(task.task_id)
    ws = await ws_connect(task.task_id)
    assert json.loads(await ws.recv())["type"] == "connected"
    gate.set()
    messages = await read_until_result(ws, 5)
    terminal, results = terminal_and_results(messages)
    assert terminal == ["final_answer"] and results == ["succeeded"]
    await asyncio.sleep(hub.limits.cancel_grace_seconds + 0.2)  # the forced stop: a no-op
    _, task_json = await api("GET", "tasks", task.task_id)
    assert task_json["status"] == "succeeded"
    assert [e["type"] for e in task_json["events"]].count("result") == 1
