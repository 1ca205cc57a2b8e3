"""What the SQLite task history costs the stream.

    .venv/bin/python benchmarks/store_overhead.py [--events 100000] [--runs 5]

Runs bench-firehose on two real Jupyter servers, one with the history off and one
with it on (a database file in a temporary directory), interleaved, reading each
whole stream live on one ``websockets`` client (``_harness.firehose_rate``: from
the first step to the result); prints messages per second and the CPU use of the
server process (in all, and per message: when the client is the bottleneck the
rate hides what the server spends). Target: the store costs under 20% of the
event rate.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from _harness import (
    ServerProcess,
    add_server_args,
    bench_server,
    firehose_rate,
    machine,
    median,
    table,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    add_server_args(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        db = home / "on" / "tasks.sqlite3"
        servers: dict[str, ServerProcess] = {
            "off": bench_server(home / "off", *args.server_arg, history=False),
            "on": bench_server(home / "on", f"--AgentKitExtension.db_path={db}", *args.server_arg),
        }
        rates: dict[str, list[float]] = {"off": [], "on": []}
        cpus: dict[str, list[float]] = {"off": [], "on": []}
        try:
            for server in servers.values():
                firehose_rate(server, 2000)  # warm up
            # Interleaved, so that background load hits both alike.
            for run in range(args.runs):
                for name, server in servers.items():
                    rate, cpu, _ = firehose_rate(server, args.events)
                    rates[name].append(rate)
                    cpus[name].append(cpu)
                print(f"run {run + 1}: off {rates['off'][-1]:,.0f}, on {rates['on'][-1]:,.0f}")
        finally:
            for server in servers.values():
                server.stop()
        time.sleep(0.5)
        with sqlite3.connect(db) as connection:
            stored = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    off, on = median(rates["off"]), median(rates["on"])
    cost = (off - on) / off * 100

    def per_message(name: str) -> float:
        return median([c / r * 1e6 for c, r in zip(cpus[name], rates[name], strict=True)])

    print(f"\n{machine()}; {args.events:,} events per run, median of {args.runs} runs\n")
    print(
        table(
            ["history", "msgs/s", "range", "server CPU", "server CPU per msg", "cost"],
            [
                [
                    label,
                    f"{median(rates[name]):,.0f}",
                    f"{min(rates[name]):,.0f}–{max(rates[name]):,.0f}",
                    f"{median(cpus[name]) * 100:.0f}%",
                    f"{per_message(name):.1f} µs",
                    f"{cost:.1f}%" if name == "on" else "",
                ]
                for name, label in (("off", "off"), ("on", "SQLite (WAL)"))
            ],
        )
    )
    print(f"\nevents on disk after the runs: {stored:,}")
    print(f"target: the store costs under 20%: {'met' if cost < 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
