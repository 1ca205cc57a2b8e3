"""A large task history: server memory, start-up time and GET latency.

    .venv/bin/python benchmarks/history_scale.py [--tasks 2000] [--events 1000] [--running 50]

Builds a history of ``--tasks`` finished tasks of ``--events`` events each (written
straight into the SQLite file, with messages shaped like a real run's: tokens, tool
calls, observations, the result), then starts two real ``jupyter server`` processes
one after the other: one on an empty history, one on the big one. For each:

- start-up: seconds from launching the process to the first answer of
  ``GET agentkit/api/agents`` (Jupyter's own start-up included), and, measured in
  this process on the same file, what the extension itself spends opening the
  history and restoring its tasks (``TaskStore`` + ``TaskHub``);
- RSS after start-up, and again once ``--running`` tasks are running
  (``bench-firehose`` at 100 events/s each, so their logs are in memory);
- latency of ``GET tasks/{id}`` (the first page of a finished task, from SQLite),
  of ``GET tasks`` (the whole list), and of a full WebSocket replay of a
  finished task, each ``--requests`` times against random tasks.

Goals (issue 13): RSS grows by less than 50 MB over the empty server; start-up
under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    ROOT,
    ServerProcess,
    add_server_args,
    machine,
    median,
    percentile,
    server_rss,
    table,
)
from websockets.asyncio.client import connect

from agentkit_jupyter.core import AgentPool
from agentkit_jupyter.protocol import dumps, result_message, step_message
from agentkit_jupyter.tasks import TaskHub, TaskStore

MB = 1_000_000


def _events(task_id: str, count: int, started: float) -> list[str]:
    """``count`` messages shaped like a run's: tokens, then a tool call and its result."""
    messages = []
    for seq in range(1, count):
        kind = seq % 10
        if kind == 8:
            data: dict[str, Any] = {"tool": "lookup_city", "arguments": {"name": f"City {seq}"}}
            event_type = "tool_call"
        elif kind == 9:
            data = {"tool": "lookup_city", "output": f"City {seq}: population {seq * 1000}"}
            event_type = "observation"
        else:
            data = {"delta": f"word{seq} "}
            event_type = "token"
        event = {"event_type": event_type, "step": seq // 10 + 1, "data": data}
        event["timestamp"] = started + seq / 1000
        messages.append(dumps(step_message(task_id, seq, event)))  # type: ignore[arg-type]
    result = {"status": "succeeded", "task_id": task_id, "output": "done", "total_steps": 1}
    messages.append(dumps(result_message(task_id, count, result)))  # type: ignore[arg-type]
    return messages


def build_history(db: Path, tasks: int, events: int) -> list[str]:
    TaskStore(db).close()  # the schema
    connection = sqlite3.connect(db)
    now = time.time() - 3600
    ids = []
    for index in range(tasks):
        task_id = f"{index:016x}"
        ids.append(task_id)
        created = now + index * 0.5
        messages = _events(task_id, events, created)
        result = json.loads(messages[-1])["data"]
        connection.execute(
            "INSERT INTO tasks VALUES (?, 'bench-firehose', ?, 'succeeded', 'server', ?, ?, ?, ?)",
            (task_id, str(events), created, created, created + 1, json.dumps(result)),
        )
        connection.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            ((task_id, seq, text) for seq, text in enumerate(messages, 1)),
        )
        if index % 100 == 99:
            connection.commit()
    connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return ids


def extension_startup(db: Path) -> float:
    """Seconds the extension spends opening the history and restoring its tasks."""
    started = time.perf_counter()
    store = TaskStore(db)
    hub = TaskHub(AgentPool(), store=store)
    elapsed = time.perf_counter() - started
    assert len(hub.all()) >= 0
    store.close()
    return elapsed


def start(home: Path, db: Path, extra: list[str]) -> tuple[ServerProcess, float]:
    server = ServerProcess(
        home,
        f"--AgentKitExtension.db_path={db}",
        "--AgentKitExtension.load_bench_agents=True",
        # Keep every stored task (the defaults would forget all beyond 1,000).
        "--AgentKitExtension.max_tasks=100000",
        "--AgentKitExtension.retention_max_count=100000",
        *extra,
    )
    started = time.perf_counter()
    server.start()
    return server, time.perf_counter() - started


def settle(server: ServerProcess, seconds: float = 2.0) -> int:
    time.sleep(seconds)
    return server_rss(server)


async def replay(server: ServerProcess, task_id: str) -> int:
    count = 0
    async with connect(server.ws(task_id), additional_headers=server.headers, max_size=None) as ws:
        async for raw in ws:
            count += 1
            if isinstance(raw, str) and raw.startswith('{"type":"result"'):
                return count
    return count


def measure(server: ServerProcess, ids: list[str], requests: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"get": [], "list": [], "replay": []}
    rng = random.Random(1)
    with httpx.Client(headers=server.headers, timeout=60) as client:
        for _ in range(requests):
            task_id = rng.choice(ids)
            started = time.perf_counter()
            response = client.get(server.api(f"tasks/{task_id}"))
            timings["get"].append(time.perf_counter() - started)
            response.raise_for_status()
        for _ in range(max(requests // 10, 5)):
            started = time.perf_counter()
            client.get(server.api("tasks")).raise_for_status()
            timings["list"].append(time.perf_counter() - started)
    for _ in range(max(requests // 10, 5)):
        task_id = rng.choice(ids)
        started = time.perf_counter()
        asyncio.run(replay(server, task_id))
        timings["replay"].append(time.perf_counter() - started)
    return timings


def start_running(server: ServerProcess, count: int) -> list[str]:
    ids = []
    with httpx.Client(headers=server.headers, timeout=60) as client:
        for _ in range(count):
            response = client.post(
                server.api("tasks"), json={"agent": "bench-firehose", "input": "100000 rate=100"}
            )
            response.raise_for_status()
            ids.append(response.json()["task_id"])
    return ids


def commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True).stdout
    return head + (" (with uncommitted changes)" if dirty else "")


def ms(values: list[float]) -> str:
    return f"{median(values) * 1000:.1f} / {percentile(values, 99) * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--running", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep", help="build (or reuse) the history in this folder")
    add_server_args(parser)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        big = folder / f"history-{args.tasks}x{args.events}.sqlite3"
        started = time.perf_counter()
        if big.exists():
            connection = sqlite3.connect(big)
            ids = [row[0] for row in connection.execute("SELECT task_id FROM tasks")]
            connection.close()
        else:
            ids = build_history(big, args.tasks, args.events)
        built = time.perf_counter() - started
        size = sum(p.stat().st_size for p in folder.glob(f"{big.name}*"))
        print(f"history: {len(ids)} tasks, {size / MB:.0f} MB on disk ({built:.1f} s)")

        results: dict[str, dict[str, Any]] = {}
        for label, db in (("empty history", folder / "empty.sqlite3"), ("big history", big)):
            home = Path(tempfile.mkdtemp(dir=scratch))
            in_process = extension_startup(db)
            server, ready = start(home, db, args.server_arg)
            try:
                idle = settle(server)
                timings = measure(server, ids, args.requests) if db == big else {}
                running = start_running(server, args.running)
                busy = settle(server, 10.0)
                status = httpx.get(server.api("status"), headers=server.headers).json()
                assert status["tasks"]["running"] == len(running), status["tasks"]
                results[label] = {
                    "ready": ready,
                    "extension": in_process,
                    "idle": idle,
                    "busy": busy,
                    "timings": timings,
                    "in_memory": status["tasks"]["logs_in_memory"],
                }
            finally:
                server.stop()

    empty, full = results["empty history"], results["big history"]
    rows = [
        [
            label,
            f"{r['ready']:.2f}",
            f"{r['extension']:.3f}",
            f"{r['idle'] / MB:.1f}",
            f"{r['busy'] / MB:.1f}",
            str(r["in_memory"]),
        ]
        for label, r in results.items()
    ]
    print()
    print(f"Machine: {machine()}")
    print(f"Commit: {commit()}")
    print(
        f"Command: .venv/bin/python benchmarks/history_scale.py --tasks {args.tasks} "
        f"--events {args.events} --running {args.running} --requests {args.requests}"
    )
    print()
    print(
        table(
            [
                "server",
                "ready (s)",
                "extension start-up (s)",
                "RSS idle (MB)",
                f"RSS, {args.running} running (MB)",
                "logs in memory",
            ],
            rows,
        )
    )
    timings = full["timings"]
    print()
    print(
        table(
            ["request (big history)", "p50 / p99 ms"],
            [
                ["GET tasks/{id} (first page, 1,000 events, from SQLite)", ms(timings["get"])],
                [f"GET tasks ({len(ids) + args.running} tasks)", ms(timings["list"])],
                ["WebSocket replay of a finished task, whole", ms(timings["replay"])],
            ],
        )
    )
    growth = (full["busy"] - empty["busy"]) / MB
    print()
    print(
        f"RSS growth over the empty server: {growth:.1f} MB (goal < 50 MB: "
        f"{'met' if growth < 50 else 'NOT met'}); the extension's start-up on the big "
        f"history {full['extension']:.2f} s (goal < 2 s: "
        f"{'met' if full['extension'] < 2 else 'NOT met'}); the whole server ready in "
        f"{full['ready']:.2f} s vs {empty['ready']:.2f} s on an empty history (Jupyter's "
        "own start-up included, so this depends on the machine's load)"
    )


if __name__ == "__main__":
    main()
