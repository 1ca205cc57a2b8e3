"""How long from a cancel to an MCP server knowing the call is cancelled?

An MCP tool call in flight (``slow`` of tests/mcp_test_server.py, which reports progress
and then waits) is cancelled the way the engine cancels a tool call on a run's cancel:
its task is cancelled. The server records, with the wall-clock time, when it received
``notifications/cancelled`` (stdio) and when the call was cancelled on its side (stdio,
and streamable HTTP, whose 2026-07-28 cancellation is the aborted POST); the
benchmark asks it over the same session, so the session's end never counts.

Also, end to end in the engine: ``CancellationToken.cancel()`` -> the run's
``cancelled`` event, with the MCP call in flight (stdio).

Prints p50 / p99 / max in milliseconds; the target is under 200 ms.

    .venv/bin/python benchmarks/mcp_cancel.py [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import free_port, machine, percentile

from agentkit_jupyter.core import Agent, CancellationToken, EventType
from agentkit_jupyter.core.mcp import MCPServer, open_sources
from agentkit_jupyter.core.scripted import ScriptedGateway, ScriptedTurn
from agentkit_jupyter.core.tool_output import ToolStream, bind

TARGET_MS = 200.0
ROOT = Path(__file__).resolve().parent.parent
TEST_SERVER = ROOT / "tests" / "mcp_test_server.py"


async def session_cancels(server: MCPServer, runs: int) -> dict[str, list[float]]:
    """Cancel ``runs`` calls in one session; the server's times minus the cancel's."""
    samples: dict[str, list[float]] = {"notification": [], "call_cancelled": []}
    opened = await open_sources([server])
    if opened.notes:
        raise RuntimeError(opened.notes[0])
    try:
        loop = asyncio.get_running_loop()
        for _ in range(runs):
            progressed = asyncio.Event()
            stream = ToolStream("c", "slow", 1, loop, lambda _e, p=progressed: p.set())

            async def call(stream: ToolStream = stream) -> Any:
                bind(stream)
                return await opened.tools["slow"].func(steps=1_000_000, delay=0.05)

            job = asyncio.create_task(call())
            await progressed.wait()
            cancelled_at = time.time()
            job.cancel()
            try:
                await job
            except asyncio.CancelledError:
                pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                seen = [
                    r
                    for r in json.loads(await opened.tools["cancellations"].func())
                    if r["time"] >= cancelled_at - 0.001
                ]
                if any(r["kind"] == "call_cancelled" for r in seen):
                    break
                await asyncio.sleep(0.01)
            else:
                raise RuntimeError("the server never saw the cancel")
            for kind in samples:
                times = [r["time"] for r in seen if r["kind"] == kind]
                if times:
                    samples[kind].append(min(times) - cancelled_at)
    finally:
        await opened.aclose()
    return samples


async def engine_cancels(server: MCPServer, runs: int) -> list[float]:
    """``token.cancel()`` -> the ``cancelled`` event, an MCP call in flight (a run each)."""
    samples = []
    agent = Agent(
        "bench-mcp",
        ScriptedGateway([ScriptedTurn("", [("slow", {"steps": 1_000_000, "delay": 0.05})])]),
        tools=[server],
    )
    for _ in range(runs):
        token = CancellationToken()
        cancelled_at = 0.0
        async for event in agent.stream("go", token):
            if event.event_type is EventType.TOOL_PROGRESS and not cancelled_at:
                cancelled_at = time.perf_counter()
                token.cancel("benchmark")
            if event.event_type is EventType.CANCELLED:
                samples.append(time.perf_counter() - cancelled_at)
                break
    return samples


def http_server(record: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(TEST_SERVER), "--http", str(port), "--record", str(record)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the HTTP test server did not start")


def row(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return f"| {name} | - | - | - | - |"
    p99 = percentile(ms, 99)
    verdict = "ok" if p99 < TARGET_MS else "over"
    return f"| {name} | {percentile(ms, 50):.2f} | {p99:.2f} | {max(ms):.2f} | {verdict} |"


async def main(runs: int) -> None:
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        stdio = MCPServer(command=[sys.executable, str(TEST_SERVER)], name="bench")
        over_stdio = await session_cancels(stdio, runs)
        proc, url = http_server(Path(tmp) / "record.jsonl")
        try:
            over_http = await session_cancels(MCPServer(url=url, name="bench"), runs)
        finally:
            proc.terminate()
            proc.wait(10)
        in_engine = await engine_cancels(stdio, max(1, runs // 5))
    print(f"\n{runs} cancels per scenario, ms (target: p99 < {TARGET_MS:g} ms)\n")
    print("| scenario | p50 | p99 | max | target |")
    print("| --- | --- | --- | --- | --- |")
    print(row("stdio: cancel -> server got notifications/cancelled", over_stdio["notification"]))
    print(row("stdio: cancel -> the call cancelled on the server", over_stdio["call_cancelled"]))
    print(row("HTTP: cancel -> the call cancelled on the server", over_http["call_cancelled"]))
    print(row("engine: token.cancel() -> cancelled event (stdio)", in_engine))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    asyncio.run(main(parser.parse_args().runs))
