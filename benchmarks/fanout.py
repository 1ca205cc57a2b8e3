"""Fan-out: one run watched by 1, 10, 100 and 1,000 subscribers at once.

    .venv/bin/python benchmarks/fanout.py [--runs 3] [--subscribers 1 10 100 1000]

For each subscriber count, a real ``jupyter server`` (extension, default
configuration: task history on) starts ``bench-firehose`` with a delay, all the
subscribers connect (``websockets`` clients in this process; each must see
``last_seq: 0`` in its ``connected``, i.e. joined before the first event), then
the run emits its events as fast as the stream takes them and every subscriber
reads to the ``result``. Events per run shrink as subscribers grow, so that each
run delivers 50,000-500,000 messages.

Reported (median of the runs): total deliveries per second (all messages / time
from the first arrival anywhere to the last result), the per-subscriber rate
(events / that subscriber's own first-to-last time; the slowest subscriber too),
loss and ``seq`` gaps (must be none), and the CPU share of the server and of this
client process. The run never waits for its subscribers: one that falls more
than 5,000 messages behind is dropped (4008) and, like the widget, resumes with
``?after=``; the resumes are counted (runs separated by /), and loss and gaps
are checked across them. Targets: >= 20,000 deliveries/s at 100 subscribers,
>= 20 events/s to each of 1,000, zero loss, no gap.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    ServerProcess,
    add_server_args,
    bench_server,
    check_streams,
    connect_many,
    create_task,
    firehose_input,
    firehose_messages,
    machine,
    median,
    open_ws,
    raise_fd_limit,
    read_stream,
    server_cpu,
    table,
)
from websockets.asyncio.client import ClientConnection

EVENTS = {1: 50_000, 10: 10_000, 100: 2_000, 1000: 500}


@dataclass
class Outcome:
    deliveries: int
    server_cpu_seconds: float
    deliveries_per_s: float
    median_rate: float
    slowest_rate: float
    server_cpu: float
    client_cpu: float
    resumes: int
    status: str

    @property
    def cpu_ms_per_1000(self) -> float:
        """Server CPU per 1,000 deliveries: unlike deliveries/s, it does not depend on
        this one client process being the bottleneck."""
        return self.server_cpu_seconds / self.deliveries * 1e6


PING = '{"type":"ping"}'
PING_EVERY = 20.0


def ignore_pong(text: str) -> None:
    if not text.startswith('{"type":"pong"'):
        raise RuntimeError(f"unexpected message: {text[:200]}")


async def ping_all(sockets: list[ClientConnection]) -> None:
    while True:
        await asyncio.sleep(PING_EVERY)
        for ws in sockets:
            try:
                await ws.send(PING)
            except Exception:
                pass  # its reader sees the close


def events_for(subscribers: int) -> int:
    return EVENTS.get(subscribers, max(100, 100_000 // subscribers))


async def one_run(server: ServerProcess, subscribers: int) -> Outcome:
    events = events_for(subscribers)
    delay = 2.0 + subscribers * 0.03  # time to connect them all before the first event
    task_id = create_task(server, firehose_input(events, delay=delay))
    started = time.monotonic()
    sockets = await connect_many(server.ws(task_id), server.headers, subscribers)
    if time.monotonic() - started > delay:
        print(f"  warning: connecting {subscribers} took longer than the delay")
    # The CPU counted is the run's, not the idle rest of the delay (1,000 idle sockets
    # have their own timers): start counting just before the first event.
    await asyncio.sleep(max(0.0, started + delay - 0.05 - time.monotonic()))
    cpu_before, client_before = server_cpu(server), time.process_time()

    async def resume(after: int) -> ClientConnection:
        return await open_ws(server.ws(task_id, after), server.headers)

    # Like every real client, ping (the server closes a socket silent for 60 s).
    pinger = asyncio.create_task(ping_all(sockets))
    try:
        streams = await asyncio.gather(
            *(read_stream(ws, reconnect=resume, on_message=ignore_pong) for ws in sockets)
        )
    finally:
        pinger.cancel()
    cpu, client = server_cpu(server) - cpu_before, time.process_time() - client_before
    await asyncio.gather(*(ws.close() for ws in sockets))
    first = min(s.first_at for s in streams)
    last = max(s.last_at for s in streams)
    total = sum(s.received for s in streams)
    rates = [s.rate for s in streams]
    window = last - first
    return Outcome(
        deliveries=total,
        server_cpu_seconds=cpu,
        deliveries_per_s=total / window,
        median_rate=median(rates),
        slowest_rate=min(rates),
        server_cpu=cpu / window,
        client_cpu=client / window,
        resumes=sum(s.resumes for s in streams),
        status=check_streams(streams, firehose_messages(events)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10, 100, 1000])
    add_server_args(parser)
    args = parser.parse_args()
    raise_fd_limit(4 * max(args.subscribers) + 1024)
    print(machine())
    rows = []
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        server = bench_server(Path(tmp), *args.server_arg)
        try:
            asyncio.run(one_run(server, 10))  # warm up
            for subscribers in args.subscribers:
                outcomes = []
                for _ in range(args.runs):
                    outcome = asyncio.run(one_run(server, subscribers))
                    print(
                        f"{subscribers:>5} subscribers: {outcome.deliveries_per_s:>9,.0f} "
                        f"deliveries/s, {outcome.median_rate:>8,.0f} events/s each, "
                        f"{outcome.resumes} resumes, {outcome.status}"
                    )
                    outcomes.append(outcome)
                statuses = sorted({o.status for o in outcomes})
                total = median([o.deliveries_per_s for o in outcomes])
                each = median([o.median_rate for o in outcomes])
                rows.append(
                    [
                        f"{subscribers:,}",
                        f"{events_for(subscribers):,}",
                        f"{total:,.0f}",
                        f"{each:,.0f}",
                        f"{median([o.slowest_rate for o in outcomes]):,.0f}",
                        f"{median([o.server_cpu for o in outcomes]) * 100:.0f}%",
                        f"{median([o.cpu_ms_per_1000 for o in outcomes]):.1f} ms",
                        f"{median([o.client_cpu for o in outcomes]) * 100:.0f}%",
                        "/".join(str(o.resumes) for o in outcomes),
                        "; ".join(statuses),
                    ]
                )
                if subscribers == 100:
                    verdicts.append(("100 subscribers: >= 20,000 deliveries/s", total >= 20_000))
                if subscribers == 1000:
                    verdicts.append(("1,000 subscribers: >= 20 events/s each", each >= 20))
                verdicts.append((f"{subscribers}: no loss, no gap", statuses == ["ok"]))
        finally:
            server.stop()
    print(f"\nmedian of {args.runs} runs\n")
    print(
        table(
            [
                "subscribers",
                "events",
                "deliveries/s",
                "events/s each",
                "slowest",
                "server CPU",
                "server CPU per 1,000 deliveries",
                "client CPU",
                "resumes",
                "loss / gaps",
            ],
            rows,
        )
    )
    print()
    for name, ok in verdicts:
        print(f"target {name}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
