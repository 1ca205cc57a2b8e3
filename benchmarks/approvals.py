"""How long from a person's decision to the tool starting, and from pause to paused,
with 100 viewers on the task?

A real ``jupyter server`` with the extension (tests/server_process.py, the test
agents of tests/support.py). After ``--warmup`` uncounted runs (default 2), for
each of ``--runs`` runs (default 100):

- decision -> tool start: a task of ``bench-approval`` (one call of a tool that needs
  approval and returns ``time.time()`` as it starts); ``--viewers`` WebSocket viewers
  (default 100) subscribe; one of them, on ``approval_requested``, notes the time and
  sends ``{"type": "approve"}``; the figure is the tool's start time minus that.
- pause -> paused: a task of ``bench-steps`` (hundreds of 5 ms tool calls: a pause
  takes effect before the next call, a call in flight finishes first); the viewers
  subscribe; after the first observation one viewer sends ``{"type": "pause"}``; the
  figure is the time until the run's ``paused`` event (its server timestamp), and,
  end to end, until that viewer and the last of all viewers have the ``paused``
  step (the clients share the machine with the server, and read every step of the
  run on 100 sockets). Then the task is cancelled.

Prints p50 / p99 / max in milliseconds; the target is p99 under 50 ms for both.

    .venv/bin/python benchmarks/approvals.py [--runs 100] [--warmup 2] [--viewers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    ServerProcess,
    acreate_task,
    add_server_args,
    bench_server,
    connect_many,
    machine,
    percentile,
    raise_fd_limit,
    table,
)

TARGET_MS = 50.0


async def _until(ws: Any, kind: str) -> dict[str, Any]:
    """The next step of ``kind``: its data, plus ``_at``, the server's time of the event."""
    async with asyncio.timeout(30):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "step" and message["data"]["event_type"] == kind:
                return {**message["data"]["data"], "_at": message["data"]["timestamp"]}


async def decision_to_tool_start(server: ServerProcess, viewers: int) -> tuple[float, float, float]:
    """(send -> tool start, send -> the server's ``approval_decided`` event, that event
    -> tool start), in ms: the split says whether a slow one was the client, the
    socket, or the server."""
    async with httpx.AsyncClient() as client:
        task_id = await acreate_task(client, server, "x", agent="bench-approval")
    sockets = await connect_many(server.ws(task_id), server.headers, viewers)
    try:
        decider = sockets[0]
        request = await _until(decider, "approval_requested")
        sent = time.time()
        await decider.send(json.dumps({"type": "approve", "call_id": request["call_id"]}))
        decided = await _until(decider, "approval_decided")
        observation = await _until(decider, "observation")
        started = float(observation["output"].split()[1])
        return (
            (started - sent) * 1000,
            (decided["_at"] - sent) * 1000,
            (started - decided["_at"]) * 1000,
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def pause_to_paused(server: ServerProcess, viewers: int) -> tuple[float, float, float]:
    async with httpx.AsyncClient() as client:
        task_id = await acreate_task(client, server, "x", agent="bench-steps")
    sockets = await connect_many(server.ws(task_id), server.headers, viewers)
    try:
        await asyncio.gather(*(_until(ws, "observation") for ws in sockets))
        sent = time.time()
        paused_at: list[float] = []

        async def seen(ws: Any) -> float:
            paused_at.append((await _until(ws, "paused"))["_at"])
            return (time.time() - sent) * 1000

        pausing = sockets[0].send(json.dumps({"type": "pause"}))
        results = await asyncio.gather(pausing, *(seen(ws) for ws in sockets))
        times = [float(t) for t in results[1:]]
        await sockets[0].send(json.dumps({"type": "cancel"}))
        return (paused_at[0] - sent) * 1000, times[0], max(times)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


def _row(name: str, values: list[float]) -> list[str]:
    p99 = percentile(values, 99)
    return [
        name,
        f"{percentile(values, 50):.1f}",
        f"{p99:.1f}",
        f"{max(values):.1f}",
        "yes" if p99 < TARGET_MS else "NO",
    ]


async def main_async(args: argparse.Namespace) -> int:
    raise_fd_limit(4 * args.viewers + 256)
    with tempfile.TemporaryDirectory() as home:
        server = bench_server(Path(home), *args.server_arg, history=True)
        try:
            decisions, pauses, own_viewer, last_viewer = [], [], [], []
            reached, server_part = [], []
            for _ in range(args.warmup):  # not counted: first connections, thread pool
                await decision_to_tool_start(server, args.viewers)
                await pause_to_paused(server, args.viewers)
            for _ in range(args.runs):
                total, to_server, in_server = await decision_to_tool_start(server, args.viewers)
                decisions.append(total)
                reached.append(to_server)
                server_part.append(in_server)
                took_effect, own, slowest = await pause_to_paused(server, args.viewers)
                pauses.append(took_effect)
                own_viewer.append(own)
                last_viewer.append(slowest)
        finally:
            server.stop()
    print(
        f"{machine()}; {args.runs} runs after {args.warmup} uncounted, "
        f"{args.viewers} viewers on each task; ms"
    )
    print(
        table(
            ["figure", "p50", "p99", "max", f"p99 < {TARGET_MS:g} ms"],
            [
                _row("decision -> tool start", decisions),
                _row("  of which: send -> the server's approval_decided event", reached),
                _row("  of which: approval_decided event -> tool start", server_part),
                _row("pause -> paused (the run's paused event)", pauses),
                _row("pause -> paused step at the viewer who paused", own_viewer),
                _row("pause -> paused step at the last of all viewers", last_viewer),
            ],
        )
    )
    ok = all(percentile(v, 99) < TARGET_MS for v in (decisions, pauses))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=2, help="uncounted runs first")
    parser.add_argument("--viewers", type=int, default=100)
    add_server_args(parser)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
