"""What the SQLite task history costs the stream.

    .venv/bin/python benchmarks/store_overhead.py [--events 50000] [--runs 3]

Runs bench-firehose on a real Jupyter server, once with the history off and once
on (a database file in a temporary directory), reading the whole stream on one
WebSocket; prints events per second for each. Target: the store costs under 20%.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from _harness import ServerProcess, machine, median, run_firehose, table


def start(db_path: str, home: Path) -> ServerProcess:
    return ServerProcess(
        home,
        "--AgentKitExtension.load_bench_agents=True",
        f"--AgentKitExtension.db_path={db_path}",
    ).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        db = home / "on" / "tasks.sqlite3"
        servers = {"off": start("", home / "off"), "on": start(str(db), home / "on")}
        rates: dict[str, list[float]] = {"off": [], "on": []}
        try:
            for server in servers.values():
                run_firehose(server, 2000)  # warm up
            # Interleaved, so that background load hits both alike.
            for _ in range(args.runs):
                for name, server in servers.items():
                    received, seconds = run_firehose(server, args.events)
                    rates[name].append(received / seconds)
        finally:
            for server in servers.values():
                server.stop()
        time.sleep(0.5)
        with sqlite3.connect(db) as connection:
            stored = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    off, on = median(rates["off"]), median(rates["on"])
    cost = (off - on) / off * 100
    print(f"{machine()}; {args.events} events per run, median of {args.runs} runs\n")
    print(
        table(
            ["history", "events/s", "cost"],
            [["off", f"{off:,.0f}", ""], ["SQLite (WAL)", f"{on:,.0f}", f"{cost:.1f}%"]],
        )
    )
    print(f"\nevents on disk after the runs: {stored:,}")


if __name__ == "__main__":
    main()
