"""Throughput: events per second from one run to one subscriber, next to the ceiling.

    .venv/bin/python benchmarks/throughput.py [--events 100000] [--runs 5]

In the same run, interleaved so that background load hits all alike, one
``websockets`` client reads a whole stream from:

- a bare Tornado WebSocket handler writing the same messages in a loop, one
  ``write_message`` per message (see ``_harness.BareServer``);
- the same bare handler writing the same frames in batches of 500, one socket write
  per batch through the extension's own frame writer: the like-for-like ceiling,
  since the extension writes batches too;
- a real ``jupyter server`` with the extension, ``bench-firehose`` (N token events
  as fast as the stream takes them), the task history off;
- the same with the task history on (the default configuration).

Rate = messages / (arrival of the result - the moment the source started producing,
which each source writes into its result); so events a source queues before the
first one arrives are inside the window. Every ``seq`` is checked. Also the CPU use
of the server process and of this client process during the stream: the one near
100% is the bottleneck (the machine has two cores; the server's share can pass 100%
with the history's writer thread and the kernel's TCP work).

Target: the extension within 1.5x of the batched ceiling (the headline compares
like with like); the per-message handler is shown too.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from _harness import (
    BareServer,
    add_server_args,
    bench_server,
    firehose_rate,
    machine,
    median,
    stream_rate,
    table,
)

TARGET_RATIO = 1.5


def run_bare(bare: BareServer, events: int, batched: bool) -> tuple[float, float, float]:
    url = bare.url(events + 1, batched=batched)
    return asyncio.run(stream_rate(url, {}, bare.pid, events + 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    add_server_args(parser)
    args = parser.parse_args()
    print(machine())
    names = [
        "bare Tornado handler, batched writes (ceiling)",
        "bare Tornado handler, one write per message",
        "extension, history off",
        "extension, history on",
    ]
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    clients: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        bare = BareServer().start()
        off = bench_server(Path(tmp) / "off", *args.server_arg, history=False)
        on = bench_server(Path(tmp) / "on", *args.server_arg)
        try:
            jobs = {
                names[0]: lambda n: run_bare(bare, n, batched=True),
                names[1]: lambda n: run_bare(bare, n, batched=False),
                names[2]: lambda n: firehose_rate(off, n),
                names[3]: lambda n: firehose_rate(on, n),
            }
            for job in jobs.values():
                job(5000)  # warm up
            for run in range(args.runs):
                for name, job in jobs.items():
                    rate, cpu, client = job(args.events)
                    rates[name].append(rate)
                    cpus[name].append(cpu)
                    clients[name].append(client)
                print(f"run {run + 1}: " + ", ".join(f"{rates[n][-1]:,.0f}" for n in names))
        finally:
            bare.stop()
            off.stop()
            on.stop()
    ceiling = median(rates[names[0]])
    rows = []
    for name in names:
        rate = median(rates[name])
        rows.append(
            [
                name,
                f"{rate:,.0f}",
                f"{min(rates[name]):,.0f}–{max(rates[name]):,.0f}",
                f"{median(cpus[name]) * 100:.0f}%",
                f"{median(clients[name]) * 100:.0f}%",
                f"{ceiling / rate:.2f}x",
            ]
        )
    print(f"\n{args.events:,} events per stream, median of {args.runs} runs\n")
    print(table(["source", "msgs/s", "range", "server CPU", "client CPU", "ceiling / this"], rows))
    worst = ceiling / median(rates[names[3]])
    verdict = "met" if worst <= TARGET_RATIO else "missed"
    print(
        f"\ntarget: within {TARGET_RATIO}x of the batched ceiling (history on: {worst:.2f}x) "
        f"-> {verdict}"
    )


if __name__ == "__main__":
    main()
