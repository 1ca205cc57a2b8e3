"""Where sync tools run: a bounded thread pool (abandoned calls are counted and named),
and worker processes for ``@tool(isolate="process")`` that a cancel or timeout kills."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import isolated_tools
import pytest
from conftest import read_until_result

from agentkit_jupyter.core import (
    CancellationToken,
    EventType,
    ReActEngine,
    ScriptedGateway,
    ScriptedTurn,
    StepEvent,
    tool,
    workers,
)
from agentkit_jupyter.core.tools import abandoned_threads, configure_tool_workers, worker_stats
from agentkit_jupyter.core.workers import IsolationError

RELEASE = threading.Event()


@tool
def stuck(n: int) -> str:
    """Blocks until the test releases it.

    Args:
        n: which call
    """
    RELEASE.wait(60)
    return f"released {n}"


@pytest.fixture
def four_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A pool of its own: threads other tests left busy must not count here.
    monkeypatch.setattr(workers, "_threads", workers._ThreadPool(4))
    configure_tool_workers(max_threads=4)
    RELEASE.clear()
    try:
        yield
    finally:
        RELEASE.set()


async def _run(
    gateway: ScriptedGateway,
    tools: list[Any],
    token: CancellationToken,
    cancel_when: Callable[[], bool] | None = None,
) -> list[StepEvent]:
    """Run to the end; with ``cancel_when``, cancel once it holds after the first tool call."""
    events: list[StepEvent] = []
    canceller: asyncio.Task[None] | None = None

    async def cancel_soon() -> None:
        assert cancel_when is not None
        while not cancel_when():
            await asyncio.sleep(0.01)
        token.cancel("stop")

    async for event in ReActEngine(gateway).execute_stream(
        [{"role": "user", "content": "go"}], tools, "m", "a", None, cancellation_token=token
    ):
        events.append(event)
        if event.event_type is EventType.TOOL_CALL and cancel_when and canceller is None:
            canceller = asyncio.create_task(cancel_soon())
    return events


def _busy(n: int) -> Callable[[], bool]:
    return lambda: worker_stats()["threads"]["busy"] >= n


def test_sync_tools_share_a_bounded_pool_and_abandoned_calls_are_reported(
    four_threads: None,
) -> None:
    threads_before = threading.active_count()
    calls = [("stuck", {"n": i}) for i in range(10)]

    async def main() -> list[StepEvent]:
        return await _run(
            ScriptedGateway([ScriptedTurn("Ten at once.", calls), ScriptedTurn("done")]),
            [stuck],
            CancellationToken(),
            _busy(4),
        )

    events = asyncio.run(main())

    cancelled = events[-1]
    assert cancelled.event_type is EventType.CANCELLED
    assert cancelled.data["background"] == ["stuck"]
    assert "may still be running in the background" in cancelled.data["message"]
    # Ten calls, four threads: the other six never started and never will.
    assert abandoned_threads() == 4
    assert threading.active_count() - threads_before <= 4
    assert worker_stats()["threads"]["queued"] == 0
    RELEASE.set()
    for _ in range(200):
        if abandoned_threads() == 0:
            break
        threading.Event().wait(0.05)
    assert abandoned_threads() == 0


def test_a_run_after_abandoned_calls_still_gets_threads(four_threads: None) -> None:
    @tool
    def quick(x: int) -> int:
        """Return x."""
        return x

    async def main() -> list[StepEvent]:
        await _run(
            ScriptedGateway([ScriptedTurn("", [("stuck", {"n": 1})])]),
            [stuck],
            CancellationToken(),
            _busy(1),
        )
        RELEASE.set()
        return await _run(
            ScriptedGateway(
                [
                    ScriptedTurn("", [("quick", {"x": 7})]),
                    lambda ctx: ScriptedTurn(f"got {ctx.observations[-1]}"),
                ]
            ),
            [quick],
            CancellationToken(),
        )

    events = asyncio.run(main())
    assert events[-1].data["output"] == "got 7"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_isolated_tool_returns_from_another_process() -> None:
    async def main() -> list[StepEvent]:
        return await _run(
            ScriptedGateway(
                [
                    ScriptedTurn("", [("square", {"x": 12}), ("which_process", {})]),
                    lambda ctx: ScriptedTurn(" ".join(ctx.observations[-2:])),
                ]
            ),
            [isolated_tools.square, isolated_tools.which_process],
            CancellationToken(),
        )

    events = asyncio.run(main())
    square, pid = events[-1].data["output"].split()
    assert square == "144"
    assert int(pid) != os.getpid()


def test_an_isolated_tool_that_spins_past_its_timeout_is_killed() -> None:
    pid_path = isolated_tools.pid_file("timeout")

    async def main() -> list[StepEvent]:
        return await _run(
            ScriptedGateway(
                [
                    ScriptedTurn("", [("spin_briefly", {"pid_path": str(pid_path)})]),
                    ScriptedTurn("gave up"),
                ]
            ),
            [isolated_tools.spin_briefly],
            CancellationToken(),
        )

    events = asyncio.run(main())
    [observation] = [e for e in events if e.event_type is EventType.OBSERVATION]
    assert observation.data["error_code"] == "tool_timeout"
    assert events[-1].data["output"] == "gave up"
    pid = int(pid_path.read_text())
    assert not _alive(pid)


def test_a_function_a_worker_cannot_import_is_a_clear_tool_error() -> None:
    @tool(isolate="process")
    def local_only() -> int:
        """Defined inside a function."""
        return 1

    async def main() -> list[StepEvent]:
        return await _run(
            ScriptedGateway([ScriptedTurn("", [("local_only", {})]), ScriptedTurn("ok")]),
            [local_only],
            CancellationToken(),
        )

    [observation] = [e for e in asyncio.run(main()) if e.event_type is EventType.OBSERVATION]
    assert observation.data["is_error"] is True
    assert IsolationError.__name__ in observation.data["output"]
    assert "top level of an importable module" in observation.data["output"]
    with pytest.raises(ValueError, match="sync functions"):

        @tool(isolate="process")
        async def not_sync() -> None:
            """Async."""


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {"agents": ["support:test_agents", "isolated_tools:spinner_agents"]}


async def test_cancel_kills_an_isolated_spinning_tool_and_the_server_stays_responsive(
    api: Any, ws_connect: Any
) -> None:
    pid_file = isolated_tools.pid_file("server")
    pid_file.unlink(missing_ok=True)
    status, task = await api("POST", "tasks", body={"agent": "spinner", "input": "spin"})
    assert status == 201
    async with asyncio.timeout(30):
        while not pid_file.exists() or not pid_file.read_text():
            await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())
    assert _alive(pid)
    # While the tool computes, holding its process' GIL, the server answers.
    status, agents = await api("GET", "agents")
    assert status == 200 and "spinner" in [a["name"] for a in agents["agents"]]
    status, record = await api("GET", "tasks", task["task_id"])
    assert status == 200 and record["status"] == "running"

    ws = await ws_connect(task["task_id"])
    status, _ = await api("POST", "tasks", task["task_id"], "cancel")
    assert status == 202
    messages = await read_until_result(ws, timeout=10)
    assert messages[-1]["data"]["status"] == "cancelled"
    cancelled = messages[-2]["data"]
    assert cancelled["event_type"] == "cancelled"
    assert cancelled["data"]["tools"] == ["spin"]
    assert cancelled["data"]["background"] == []
    assert "Nothing is left running" in cancelled["data"]["message"]
    assert not _alive(pid), "the worker process still runs"
    json.dumps(messages)
