"""Throughput through Redis: one run to one subscriber, next to the in-process hub.

    .venv/bin/python benchmarks/redis_throughput.py [--events 20000] [--runs 3]

Needs ``redis-server`` (started here on a free loopback port by the tests' own
``RedisServer``: append-only file on, ``appendfsync always``, the strictest
setting). In the same run, interleaved, one ``websockets`` client reads a whole
``bench-firehose`` stream from:

- a ``jupyter server`` with the extension, the task history off (in-process);
- a server with ``backend_url`` and its embedded worker (``run_tasks=True``): the
  run's events go to Redis and back into the server's mirror of the task;
- a relay-only server (``run_tasks=False``) and an ``agentkit-jupyter worker``
  process: the run in the worker, the viewer on the server.

Rate = messages / (arrival of the result - the moment the source started), as in
throughput.py. Goal (issue 17): through Redis at least half the in-process rate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import ROOT, bench_server, firehose_rate, machine, median, table
from redis_support import RedisServer

GOAL_RATIO = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not installed (scripts/test.sh installs it)")
    print(machine())
    names = ["in-process (history off)", "Redis, embedded worker", "Redis, worker process"]
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        redis = RedisServer(executable, home / "redis", appendonly=True)
        redis.start()
        worker: subprocess.Popen[bytes] | None = None
        servers = []
        try:
            local = bench_server(home / "local", history=False)
            servers.append(local)
            embedded = bench_server(
                home / "embedded",
                f"--AgentKitExtension.backend_url={redis.url}",
                "--AgentKitExtension.backend_prefix=bench-embedded:",
            )
            servers.append(embedded)
            relay = bench_server(
                home / "relay",
                f"--AgentKitExtension.backend_url={redis.url}",
                "--AgentKitExtension.backend_prefix=bench-relay:",
                "--AgentKitExtension.run_tasks=False",
            )
            servers.append(relay)
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agentkit_jupyter",
                    "worker",
                    "--backend",
                    redis.url,
                    "--prefix",
                    "bench-relay:",
                    "--agents",
                    "agentkit_jupyter.core.demo:bench_agents",
                ],  # fmt: skip
                env=env,
                stdout=subprocess.DEVNULL,
            )
            jobs = {names[0]: local, names[1]: embedded, names[2]: relay}
            for server in jobs.values():
                firehose_rate(server, 2000)  # warm up
            for run in range(args.runs):
                for name, server in jobs.items():
                    rates[name].append(firehose_rate(server, args.events)[0])
                print(f"run {run + 1}: " + ", ".join(f"{rates[n][-1]:,.0f}" for n in names))
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(30)
            for server in servers:
                server.stop()
            redis.stop()
    base = median(rates[names[0]])
    rows = [
        [
            name,
            f"{median(rates[name]):,.0f}",
            f"{min(rates[name]):,.0f}–{max(rates[name]):,.0f}",
            f"{median(rates[name]) / base:.2f}x",
        ]
        for name in names
    ]
    print(f"\n{args.events:,} events per stream, median of {args.runs} runs\n")
    print(table(["source", "msgs/s", "range", "of in-process"], rows))
    worst = min(median(rates[n]) for n in names[1:]) / base
    verdict = "met" if worst >= GOAL_RATIO else "missed"
    print(f"\ngoal: through Redis at least {GOAL_RATIO}x in-process ({worst:.2f}x) -> {verdict}")


if __name__ == "__main__":
    main()
