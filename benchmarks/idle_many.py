"""5,000 idle subscribers on one server: memory each, and a run's events reach them all.

    .venv/bin/python benchmarks/idle_many.py [--subscribers 5000] [--clients 4] [--runs 3]

Each run starts a fresh real ``jupyter server`` (extension, default configuration,
history on, but ``max_subscribers_per_task`` raised to ``--subscribers``) and creates
a ``bench-firehose`` task of ``--events`` events that stays silent for a delay long
enough to connect everyone. ``--clients`` client processes (one would be the
bottleneck) each open their share of WebSocket subscribers to it and ping every 20 s
like real clients. Once all are connected and idle, the server's RSS growth over a
warm-up baseline / subscribers is the memory per idle subscriber (target: under
32 KiB). Then the run starts, and every subscriber must read every event and the
result in order: no loss, no gap, no duplicate, nobody dropped.

Median of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _harness import (
    add_server_args,
    bench_server,
    check_streams,
    connect_many,
    create_task,
    firehose_input,
    firehose_messages,
    machine,
    median,
    raise_fd_limit,
    read_stream,
    server_rss,
    table,
)
from fanout import ignore_pong, ping_all

KiB = 1024
MB = 1_000_000


def client_process(
    url: str, headers: dict[str, str], count: int, expected: int, pipe: Connection
) -> None:
    """Connect ``count`` subscribers, say so, then read every stream to its result and
    send back what went wrong ('ok' if nothing) and the deliveries."""
    raise_fd_limit(count + 1024)

    async def main() -> tuple[str, int]:
        sockets = await connect_many(url, headers, count)
        pipe.send("connected")
        pinger = asyncio.create_task(ping_all(sockets))
        try:
            streams = await asyncio.gather(
                *(read_stream(ws, on_message=ignore_pong) for ws in sockets)
            )
        finally:
            pinger.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return check_streams(streams, expected), sum(s.received for s in streams)

    try:
        pipe.send(asyncio.run(main()))
    except Exception as exc:  # the parent reports it: a benchmark run that failed
        pipe.send((f"{type(exc).__name__}: {exc}", 0))


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        # One task holds them all: its cap (1,000 by default) is raised to the count.
        cap = f"--AgentKitExtension.max_subscribers_per_task={args.subscribers}"
        server = bench_server(Path(tmp), cap, *args.server_arg)
        try:
            # Warm-up: the first connections allocate what every later one shares.
            warm_id = create_task(server, firehose_input(10))
            asyncio.run(_warm_up(server.ws(warm_id), server.headers))
            time.sleep(1.5)
            before = server_rss(server)
            delay = 20.0 + args.subscribers * 0.02
            task_id = create_task(server, firehose_input(args.events, delay=delay))
            created = time.monotonic()
            share = [args.subscribers // args.clients] * args.clients
            share[0] += args.subscribers - sum(share)
            expected = firehose_messages(args.events)
            context = mp.get_context("spawn")
            pipes: list[Connection] = []
            workers = []
            for count in share:
                parent, child = context.Pipe()
                worker = context.Process(
                    target=client_process,
                    args=(server.ws(task_id), server.headers, count, expected, child),
                )
                worker.start()
                pipes.append(parent)
                workers.append(worker)
            for pipe in pipes:
                if not pipe.poll(delay):
                    raise RuntimeError("a client process did not connect in time")
                message = pipe.recv()
                if message != "connected":
                    raise RuntimeError(f"a client process failed: {message}")
            connected_in = time.monotonic() - created
            time.sleep(2.0)  # idle: heartbeats and buffers settle
            after = server_rss(server)
            if time.monotonic() - created > delay:
                raise RuntimeError("connecting took longer than the delay: raise it")
            outcomes = [pipe.recv() for pipe in pipes]
            for worker in workers:
                worker.join(30)
            problems = [status for status, _ in outcomes if status != "ok"]
            return {
                "per_subscriber": (after - before) / args.subscribers,
                "total": after - before,
                "connected_in": connected_in,
                "deliveries": sum(received for _, received in outcomes),
                "status": "; ".join(problems) or "ok",
            }
        finally:
            server.stop()


async def _warm_up(url: str, headers: dict[str, str]) -> None:
    sockets = await connect_many(url, headers, 50)
    await asyncio.gather(*(ws.close() for ws in sockets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    add_server_args(parser)
    args = parser.parse_args()
    raise_fd_limit(2 * args.subscribers + 1024)
    print(machine())
    runs = []
    for number in range(args.runs):
        outcome = one_run(args)
        runs.append(outcome)
        print(
            f"run {number + 1}: {outcome['per_subscriber'] / KiB:.1f} KiB per idle "
            f"subscriber ({outcome['total'] / MB:.1f} MB), connected in "
            f"{outcome['connected_in']:.0f} s, {outcome['deliveries']:,} deliveries, "
            f"{outcome['status']}"
        )
    per_sub = median([r["per_subscriber"] for r in runs])
    expected = args.subscribers * firehose_messages(args.events)
    rows = [
        [
            f"{args.subscribers:,} idle subscribers",
            f"{per_sub / KiB:.1f} KiB each",
            f"{per_sub * args.subscribers / MB:.1f} MB",
            "< 32 KiB each",
            "met" if per_sub < 32 * KiB else "MISSED",
        ],
        [
            f"then a run of {args.events} events",
            f"{median([r['deliveries'] for r in runs]):,.0f} of {expected:,} delivered",
            ", ".join(r["status"] for r in runs),
            "all, in order",
            "met" if all(r["status"] == "ok" for r in runs) else "MISSED",
        ],
    ]
    print(f"\nmedian of {args.runs} runs (each on a fresh server)\n")
    print(table(["what", "figure", "detail", "target", ""], rows))


if __name__ == "__main__":
    main()
