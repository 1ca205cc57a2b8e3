"""Latency: from an event's creation in the server to its arrival at a client.

    .venv/bin/python benchmarks/latency.py [--events 1000] [--runs 3]

A real ``jupyter server`` (extension, default configuration) runs ``bench-firehose``
paced at 100 events per second (``N rate=100 delay=...``). Every ``step`` carries
``data.timestamp``, the ``time.time()`` at which the engine created the event; a
client on the same machine (same clock) records arrival minus that.

1. One subscriber: p50/p99 of creation -> arrival; ping -> pong on that socket.
2. 100 subscribers on one run: p50/p99 over all of them; meanwhile, under that load,
   ten of them send ``ping`` every 100 ms (ping -> pong), and another client cancels
   fresh tasks one after another (a paced ``bench-firehose``, its model call in
   flight) and times ``cancel`` -> ``result`` on its own socket.

Percentiles are over all samples of all runs; ``--runs`` repeats each scenario.
Targets: 1 subscriber p99 < 10 ms; 100 subscribers p99 < 25 ms; ping -> pong and
cancel -> result under that load p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _harness import (
    ServerProcess,
    StreamStats,
    acreate_task,
    add_server_args,
    bench_server,
    check_streams,
    connect_many,
    create_task,
    firehose_input,
    firehose_messages,
    machine,
    open_ws,
    percentile,
    raise_fd_limit,
    read_stream,
    server_cpu,
    table,
)
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

RATE = 100.0
PING = '{"type":"ping"}'


class Pinger:
    """Sends ``ping`` on a socket another coroutine reads; times each ``pong``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.samples: list[float] = []
        self._sent_at = 0.0
        self._pong = asyncio.Event()

    def on_message(self, text: str) -> None:
        if text == '{"type":"pong"}':
            self.samples.append(time.perf_counter() - self._sent_at)
            self._pong.set()

    async def run(self, stop: asyncio.Event, interval: float = 0.1) -> None:
        """Ping until ``stop`` (set when the stream ends); a pong cut off by the end of
        the stream is not a sample."""
        ended = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._pong.clear()
                self._sent_at = time.perf_counter()
                try:
                    await self.ws.send(PING)
                except ConnectionClosed:
                    return
                pong = asyncio.create_task(self._pong.wait())
                await asyncio.wait([pong, ended], return_when=asyncio.FIRST_COMPLETED)
                pong.cancel()
                await asyncio.wait([ended], timeout=interval)
        finally:
            ended.cancel()


async def canceller(
    server: ServerProcess, client: httpx.AsyncClient, stop: asyncio.Event
) -> list[float]:
    """Cancel fresh paced runs one after another: cancel -> result on the same socket."""
    samples = []
    while not stop.is_set():
        task_id = await acreate_task(client, server, firehose_input(100_000, rate=RATE))
        ws = await open_ws(server.ws(task_id), server.headers)
        seen_step = False
        async for text in ws:  # connected, then wait for a first step: the run is live
            if text.startswith('{"type":"step"'):
                seen_step = True
                break
        assert seen_step
        started = time.perf_counter()
        await ws.send('{"type":"cancel","reason":"benchmark"}')
        async for text in ws:
            if text.startswith('{"type":"result"'):
                samples.append(time.perf_counter() - started)
                assert json.loads(text)["data"]["status"] == "cancelled"
                break
        await ws.close()
        await asyncio.sleep(0.1)
    return samples


async def scenario(
    server: ServerProcess, subscribers: int, events: int, pingers: int, cancel: bool
) -> dict[str, list[float] | str | float]:
    delay = 1.0 + subscribers * 0.01
    created = time.monotonic()
    task_id = create_task(server, firehose_input(events, rate=RATE, delay=delay))
    sockets = await connect_many(server.ws(task_id), server.headers, subscribers)
    # Made now: building its SSL context blocks this loop for ~100 ms.
    client = httpx.AsyncClient()
    stop = asyncio.Event()
    pinger_list = [Pinger(ws) for ws in sockets[:pingers]]
    callbacks = [p.on_message for p in pinger_list] + [None] * (subscribers - pingers)
    cpu_before = server_cpu(server)
    started = time.monotonic()

    async def read(ws: ClientConnection, callback: Callable[[str], None] | None) -> StreamStats:
        stats = await read_stream(ws, latency=True, on_message=callback)
        stop.set()  # the result came: the stream is over for everyone
        return stats

    readers = asyncio.gather(*(read(ws, cb) for ws, cb in zip(sockets, callbacks, strict=True)))
    await asyncio.sleep(max(0.0, created + delay - time.monotonic()))  # the load begins
    side = [asyncio.create_task(p.run(stop)) for p in pinger_list]
    cancels = asyncio.create_task(canceller(server, client, stop)) if cancel else None
    streams = await readers
    stop.set()
    await asyncio.gather(*side)
    cancel_samples = await cancels if cancels is not None else []
    await client.aclose()
    cpu = (server_cpu(server) - cpu_before) / (time.monotonic() - started)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {
        "latency": [x for s in streams for x in s.latencies],
        "ping": [x for p in pinger_list for x in p.samples],
        "cancel": cancel_samples,
        "status": check_streams(streams, firehose_messages(events)),
        "cpu": cpu,
    }


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.2f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="events per run (at 100/s)")
    parser.add_argument("--runs", type=int, default=3)
    add_server_args(parser)
    args = parser.parse_args()
    raise_fd_limit()
    print(machine())
    results: dict[str, dict[str, list[float]]] = {}
    statuses: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        server = bench_server(Path(tmp), *args.server_arg)
        try:
            asyncio.run(scenario(server, 10, 50, 1, cancel=False))  # warm up
            for run in range(args.runs):
                for name, subscribers, pingers, cancel in (
                    ("1 subscriber", 1, 1, False),
                    ("100 subscribers", 100, 10, True),
                ):
                    out = asyncio.run(scenario(server, subscribers, args.events, pingers, cancel))
                    statuses.add(str(out["status"]))
                    bucket = results.setdefault(name, {"latency": [], "ping": [], "cancel": []})
                    for key in bucket:
                        samples = out[key]
                        assert isinstance(samples, list)
                        bucket[key].extend(samples)
                    lat = out["latency"]
                    assert isinstance(lat, list)
                    print(
                        f"run {run + 1}, {name}: p50 {ms(lat, 50)} ms, p99 {ms(lat, 99)} ms, "
                        f"server CPU {float(out['cpu']) * 100:.0f}%, {out['status']}"
                    )
        finally:
            server.stop()
    rows = []
    for name, bucket in results.items():
        for key, label in (
            ("latency", "creation -> arrival"),
            ("ping", "ping -> pong"),
            ("cancel", "cancel -> result"),
        ):
            samples = bucket[key]
            if samples:
                rows.append(
                    [
                        name,
                        label,
                        f"{len(samples):,}",
                        ms(samples, 50),
                        ms(samples, 99),
                        ms(samples, 100),
                    ]
                )
    print(f"\n{RATE:g} events/s, {args.events} events per run, {args.runs} runs\n")
    print(table(["load", "measure", "samples", "p50 ms", "p99 ms", "max ms"], rows))
    print(f"\nstreams: {'; '.join(sorted(statuses))}")
    checks = [
        ("1 subscriber creation -> arrival p99 < 10 ms", results["1 subscriber"]["latency"], 10),
        (
            "100 subscribers creation -> arrival p99 < 25 ms",
            results["100 subscribers"]["latency"],
            25,
        ),
        ("ping -> pong under load p99 < 50 ms", results["100 subscribers"]["ping"], 50),
        ("cancel -> result under load p99 < 50 ms", results["100 subscribers"]["cancel"], 50),
    ]
    for label, samples, limit in checks:
        ok = bool(samples) and percentile(samples, 99) * 1000 < limit
        print(f"target {label}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
