"""What OpenTelemetry export costs a run, with the collector up and with it down.

    .venv/bin/python benchmarks/otel_overhead.py [--rounds 6] [--runs 40] [--events 500]
        [--firehose 50000]

Three real Jupyter servers: export off; export to a collector that is down (a
loopback port nobody listens on: every batch fails after the exporter's retries);
export to a live collector (the tests' OTLP/HTTP receiver, in this process). In each
round (each starting with the next server, so that order effects even out), for each
server in turn: ``--runs`` short ``bench-firehose`` runs of
``--events`` events back to back (each timed from ``POST tasks`` to its ``result``
on the task WebSocket: the export of a run happens after its result, so a stall
would show in the runs after it), then one ``--firehose`` run (messages per second
and the server's CPU). Target: with the collector down, runs finish as fast as
without export.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from pathlib import Path

import httpx
from _harness import (
    ServerProcess,
    acreate_task,
    add_server_args,
    bench_server,
    firehose_input,
    firehose_rate,
    machine,
    median,
    open_ws,
    percentile,
    read_stream,
    table,
)
from otlp_receiver import OTLPReceiver


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def short_runs(server: ServerProcess, runs: int, events: int) -> list[float]:
    """Seconds from POST to result of ``runs`` runs, one after the other."""
    took = []
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(runs):
            start = time.perf_counter()
            task_id = await acreate_task(client, server, firehose_input(events))
            ws = await open_ws(server.ws(task_id), server.headers)
            stats = await read_stream(ws)
            await ws.close()
            if not stats.result:
                raise RuntimeError(f"run {task_id} ended without its result")
            took.append(time.perf_counter() - start)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--firehose", type=int, default=50_000)
    add_server_args(parser)
    args = parser.parse_args()
    collector = OTLPReceiver().start()
    fast = "--AgentKitExtension.otel_capture_content=False"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        servers = {
            "off": bench_server(home / "off", *args.server_arg),
            "collector down": bench_server(
                home / "down",
                f"--AgentKitExtension.otel_endpoint=http://127.0.0.1:{dead_port()}",
                fast,
                *args.server_arg,
            ),
            "collector up": bench_server(
                home / "up",
                f"--AgentKitExtension.otel_endpoint={collector.endpoint}",
                fast,
                *args.server_arg,
            ),
        }
        durations: dict[str, list[float]] = {name: [] for name in servers}
        rates: dict[str, list[float]] = {name: [] for name in servers}
        cpus: dict[str, list[float]] = {name: [] for name in servers}
        try:
            for server in servers.values():  # warm up
                asyncio.run(short_runs(server, 3, args.events))
                firehose_rate(server, 2000)
            names = list(servers)
            for number in range(args.rounds):
                # Each round starts with another server: none always follows the
                # previous one's firehose (its history still being written).
                order = names[number % len(names) :] + names[: number % len(names)]
                for name in order:
                    server = servers[name]
                    durations[name] += asyncio.run(short_runs(server, args.runs, args.events))
                    rate, cpu, _ = firehose_rate(server, args.firehose)
                    rates[name].append(rate)
                    cpus[name].append(cpu)
                print(
                    f"round {number + 1}: "
                    + ", ".join(
                        f"{n} {median(durations[n][-args.runs :]) * 1000:.1f} ms" for n in servers
                    )
                )
            # The live collector got the runs' spans (so the "up" row did export).
            time.sleep(1)
            exported = len({s["trace_id"] for s in collector.spans})
            down_log = (home / "down").glob("server-*.log")
            warnings = sum(path.read_text().count("OpenTelemetry export to") for path in down_log)
        finally:
            for server in servers.values():
                server.stop()
            collector.close()
    base = median(durations["off"])
    rows = []
    for name in servers:
        took = durations[name]
        rows.append(
            [
                name,
                f"{median(took) * 1000:.1f}",
                f"{percentile(took, 99) * 1000:.1f}",
                f"{(median(took) - base) / base * 100:+.1f}%",
                f"{median(rates[name]):,.0f}",
                f"{median(cpus[name]) * 100:.0f}%",
            ]
        )
    print(
        f"\n{machine()}; {args.rounds} rounds of {args.runs} runs of {args.events} events, "
        f"and a {args.firehose:,}-event run per round\n"
    )
    print(
        table(
            ["export", "run p50 ms", "run p99 ms", "p50 vs off", "firehose msgs/s", "server CPU"],
            rows,
        )
    )
    print(f"\ntraces the live collector received: {exported}")
    print(f"warnings in the 'collector down' server's log: {warnings}")


if __name__ == "__main__":
    main()
