"""How long from a cancel to the end of the run?

Engine level: ``CancellationToken.cancel()`` to the run's ``cancelled`` event.
Scenarios, each run ``--runs`` times (default 50):

- a slow model call in flight against a real HTTP server on loopback
  (tests/llm_server.py) through OpenAIGateway: the server holds back its answer
  (before the response headers, or after them before the first chunk);
- a slow tool in flight with the offline ScriptedGateway: an async tool and a sync
  tool (which runs in a worker thread).

End to end: a real ``jupyter server`` with the extension, whose ``assistant`` agent
(``llm_base_url``) calls the same loopback LLM server, which holds its answer; a
``websockets`` client creates the task, waits until the model call is in flight,
sends ``{"type": "cancel"}`` and times the wait for its ``result`` message
(``status: cancelled``) on the same socket.

Prints p50 / p99 / max in milliseconds; the target is under 200 ms.

    .venv/bin/python benchmarks/cancel_latency.py [--runs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _harness import ServerProcess, acreate_task, bench_server, machine, open_ws, percentile
from llm_server import FakeLLMServer, Reply

from agentkit_jupyter.core import (
    CancellationToken,
    EventType,
    LLMGateway,
    ReActEngine,
    ScriptedGateway,
    ScriptedTurn,
    Tool,
    tool,
)
from agentkit_jupyter.core.openai_gateway import OpenAIGateway

TARGET_MS = 200.0
QUESTION = [{"role": "user", "content": "go"}]
release_sync_tools = threading.Event()


@tool
async def slow_async() -> str:
    """Waits a long time, politely."""
    await asyncio.sleep(30)
    return "done"


@tool
def slow_sync() -> str:
    """Blocks its thread until the benchmark lets it go."""
    release_sync_tools.wait(30)
    return "done"


async def one_run(
    gateway: LLMGateway, tools: list[Tool], in_flight: Callable[[], Awaitable[None]]
) -> float:
    """Start a run, wait until the slow part is in flight, cancel; return seconds."""
    token = CancellationToken()
    engine = ReActEngine(gateway)
    cancelled_at: list[float] = []

    async def cancel_when_in_flight() -> None:
        await in_flight()
        cancelled_at.append(time.perf_counter())
        token.cancel("benchmark")

    canceller = asyncio.create_task(cancel_when_in_flight())
    last = None
    async for event in engine.execute_stream(
        QUESTION,
        tools,
        "bench-model",
        "bench",
        None,
        cancellation_token=token,
    ):
        last = event
        if event.event_type is EventType.CANCELLED:
            received = time.perf_counter()
            break
    await canceller
    if last is None or last.event_type is not EventType.CANCELLED:
        raise RuntimeError(f"the run ended with {last and last.event_type.value}, not cancelled")
    return received - cancelled_at[0]


async def llm_scenario(server: FakeLLMServer, runs: int, where: str) -> list[float]:
    gateway = OpenAIGateway(server.url, timeout=60, max_retries=0)
    samples = []
    try:
        for _ in range(runs):
            seen = len(server.requests)
            held = Reply(text="never sent", delay=30.0)
            if where == "first_chunk_delay":
                held = Reply(text="never sent", first_chunk_delay=30.0)
            server.enqueue(held)

            async def in_flight(seen: int = seen) -> None:
                await asyncio.to_thread(server.wait_for_requests, seen + 1)
                await asyncio.sleep(0.02)

            samples.append(await one_run(gateway, [], in_flight))
            if not server.requests[-1].disconnected.wait(2):
                raise RuntimeError("the server never saw the client hang up")
    finally:
        await gateway.aclose()
    return samples


async def tool_scenario(runs: int, slow: Tool) -> list[float]:
    name = slow.name
    release_sync_tools.clear()
    gateway = ScriptedGateway([ScriptedTurn(tool_calls=[(name, {})]), ScriptedTurn("done")])
    samples = []
    for _ in range(runs):

        async def in_flight() -> None:
            await asyncio.sleep(0.02)  # the scripted model answers at once; the tool runs

        samples.append(await one_run(gateway, [slow], in_flight))
    release_sync_tools.set()  # let the abandoned worker threads finish
    return samples


async def websocket_scenario(llm: FakeLLMServer, server: ServerProcess, runs: int) -> list[float]:
    """Client ``cancel`` -> its ``result`` over a real server, model call in flight."""
    import httpx

    samples = []
    async with httpx.AsyncClient() as client:
        for _ in range(runs):
            seen = len(llm.requests)
            llm.enqueue(Reply(text="never sent", delay=30.0))
            task_id = await acreate_task(client, server, "Compare Paris and Rome", "assistant")
            ws = await open_ws(server.ws(task_id), server.headers)
            await asyncio.to_thread(llm.wait_for_requests, seen + 1)
            await asyncio.sleep(0.02)
            started = time.perf_counter()
            await ws.send('{"type": "cancel", "reason": "benchmark"}')
            async for text in ws:
                message = json.loads(text)
                if message["type"] == "result":
                    samples.append(time.perf_counter() - started)
                    if message["data"]["status"] != "cancelled":
                        raise RuntimeError(f"the run ended {message['data']['status']}")
                    break
            await ws.close()
    return samples


def run_websocket_scenario(llm: FakeLLMServer, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = bench_server(
            Path(tmp),
            f"--AgentKitExtension.llm_base_url={llm.url}",
            "--AgentKitExtension.llm_max_retries=0",
        )
        try:
            asyncio.run(websocket_scenario(llm, server, 3))  # warm up
            return asyncio.run(websocket_scenario(llm, server, runs))
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    runs = parser.parse_args().runs

    results: list[tuple[str, list[float]]] = []
    with FakeLLMServer() as server:
        results.append(
            (
                "LLM call, server silent (no headers yet)",
                asyncio.run(llm_scenario(server, runs, "delay")),
            )
        )
        results.append(
            (
                "LLM call, headers sent, no chunk yet",
                asyncio.run(llm_scenario(server, runs, "first_chunk_delay")),
            )
        )
        results.append(
            (
                "WebSocket cancel -> result, real server, LLM call in flight",
                run_websocket_scenario(server, runs),
            )
        )
    results.append(
        ("async tool in flight (scripted model)", asyncio.run(tool_scenario(runs, slow_async)))
    )
    results.append(
        ("sync tool in flight (scripted model)", asyncio.run(tool_scenario(runs, slow_sync)))
    )

    width = max(len(name) for name, _ in results)
    print(machine())
    print(f"cancel -> end of the run, {runs} runs each, milliseconds")
    print(f"{'scenario':<{width}}  {'p50':>7}  {'p99':>7}  {'max':>7}  {'mean':>7}  target")
    print("-" * (width + 46))
    ok = True
    for name, samples in results:
        ms = [s * 1000 for s in samples]
        p99 = percentile(ms, 99)
        passed = p99 < TARGET_MS
        ok &= passed
        print(
            f"{name:<{width}}  {percentile(ms, 50):7.2f}  {p99:7.2f}  {max(ms):7.2f}  "
            f"{statistics.fmean(ms):7.2f}  {'ok' if passed else 'MISSED'}"
        )
    print(f"target: p99 < {TARGET_MS:g} ms -> {'met' if ok else 'missed'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
