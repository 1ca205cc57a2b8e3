"""Server memory per idle subscriber and per finished task.

    .venv/bin/python benchmarks/memory.py [--subscribers 1000] [--tasks 100] [--runs 3]

Each run starts a fresh real ``jupyter server`` (extension, default configuration)
and reads its resident memory (RSS) from /proc:

- idle subscribers: a ``bench-firehose`` task that stays silent (``delay=``), a
  warm-up of 50 connections opened and closed, then 1,000 WebSocket subscribers
  connected and idle; RSS growth / 1,000. Target: under 32 KiB each, under 50 MB
  for the 1,000.
- finished tasks: 100 runs of ``bench-firehose`` with 1,000 events each, every one
  finished and written to the SQLite history (since issue 13 only the 16 most
  recently finished keep their log of 1,002 messages in memory; the others are
  replayed from SQLite); RSS growth / 100. RSS also keeps what the allocator got for the
  runs' short-lived objects, so this is an upper bound; next to it, the Python heap
  a finished task really keeps (tracemalloc), measured on the server's own TaskHub
  and TaskStore run in this process with the same agent. No target; the issue
  asks for the number.

Median of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx
from _harness import (
    ServerProcess,
    add_server_args,
    bench_server,
    connect_many,
    create_task,
    machine,
    median,
    raise_fd_limit,
    server_rss,
    table,
)

KiB = 1024
MB = 1_000_000


def settle(server: ServerProcess, seconds: float = 1.5) -> int:
    time.sleep(seconds)
    return server_rss(server)


async def idle_subscribers(server: ServerProcess, count: int) -> float:
    """Bytes of RSS per idle subscriber."""
    task_id = create_task(server, "1 delay=3600")
    warm = await connect_many(server.ws(task_id), server.headers, 50)
    await asyncio.gather(*(ws.close() for ws in warm))
    before = settle(server)
    sockets = await connect_many(server.ws(task_id), server.headers, count)
    after = settle(server)
    task = httpx.get(server.api(f"tasks/{task_id}"), headers=server.headers).json()
    assert task["subscribers"] == count, task["subscribers"]
    await asyncio.gather(*(ws.close() for ws in sockets))
    return (after - before) / count


def finished_tasks(server: ServerProcess, count: int, events: int) -> float:
    """Bytes of RSS growth per finished task of ``events`` events (an upper bound:
    RSS keeps what the allocator got for the runs' short-lived objects too)."""
    create_task(server, str(events))  # warm up
    before = settle(server, 3)
    ids = [create_task(server, str(events)) for _ in range(count)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tasks = httpx.get(server.api("tasks"), headers=server.headers).json()["tasks"]
        if all(t["status"] == "succeeded" for t in tasks if t["task_id"] in ids):
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("the runs did not finish")
    return (settle(server, 3) - before) / count


async def retained_per_task(count: int, events: int) -> float:
    """Bytes of Python heap a finished task keeps (tracemalloc), measured on the
    server's own TaskHub and TaskStore run in this process with bench-firehose."""
    from agentkit_jupyter.core import AgentPool
    from agentkit_jupyter.core.demo import bench_agents
    from agentkit_jupyter.tasks import TaskHub, TaskStore

    with tempfile.TemporaryDirectory() as tmp:
        store = TaskStore(Path(tmp) / "tasks.sqlite3")
        hub = TaskHub(AgentPool(bench_agents()), store=store)
        await hub.create_task("bench-firehose", str(events)).wait()  # warm up
        store.flush()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            await hub.create_task("bench-firehose", str(events)).wait()
        store.flush()  # what waits for the disk is not what a task keeps
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        await hub.shutdown()
    return (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    add_server_args(parser)
    args = parser.parse_args()
    raise_fd_limit(2 * args.subscribers + 1024)
    print(machine())
    per_sub: list[float] = []
    per_task: list[float] = []
    heap: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            server = bench_server(Path(tmp), *args.server_arg)
            try:
                per_sub.append(asyncio.run(idle_subscribers(server, args.subscribers)))
                per_task.append(finished_tasks(server, args.tasks, args.events))
            finally:
                server.stop()
        heap.append(asyncio.run(retained_per_task(args.tasks, args.events)))
        print(
            f"run {run + 1}: {per_sub[-1] / KiB:.1f} KiB per idle subscriber, "
            f"{per_task[-1] / KiB:.0f} KiB RSS and {heap[-1] / KiB:.0f} KiB of heap "
            "per finished task"
        )
    sub, task, kept = median(per_sub), median(per_task), median(heap)
    rows = [
        [
            "idle subscriber",
            f"{sub / KiB:.1f} KiB",
            f"{args.subscribers:,}: {sub * args.subscribers / MB:.1f} MB",
            "< 32 KiB; 1,000 < 50 MB",
        ],
        [
            f"finished task, {args.events:,} events: RSS growth",
            f"{task / KiB:.0f} KiB",
            f"{args.tasks}: {task * args.tasks / MB:.1f} MB",
            "-",
        ],
        [
            f"finished task, {args.events:,} events: heap kept",
            f"{kept / KiB:.0f} KiB",
            f"{args.tasks}: {kept * args.tasks / MB:.1f} MB",
            "-",
        ],
    ]
    print(f"\nmedian of {args.runs} runs (each on a fresh server)\n")
    print(table(["what", "each", "total", "target"], rows))
    ok = sub < 32 * KiB and sub * 1000 < 50 * MB
    print(f"\ntarget per idle subscriber: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
