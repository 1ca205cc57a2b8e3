"""Soak: a connect/disconnect storm against a real server while tasks run.

``--clients`` clients (200 by default) loop for ``--duration`` seconds: connect to
one of the running tasks with a random ``?after=``, read a few messages (checking
that they continue exactly after ``after``), and leave — the even-numbered ones
politely (closing handshake), the odd-numbered ones by aborting their TCP
connection. Meanwhile ``--tasks`` tasks run at all times (paced, demo and firehose
agents, plus one demo-slow across the storm), each watched from start to end by a
verifier. When a task has ended its log is checked (the verifier's stream equals
the REST log, seq 1..N, exactly one result, status succeeded); the last few ended
tasks stay for clients to replay, older ones are deleted, so that the server's
memory reflects the connections rather than a growing task history.

Every ``--every`` seconds it prints connections/s, errors, the server's RSS and
open file descriptors (from /proc/<pid>), and the subscribers the server reports.
A ``--warmup`` storm comes first; the baseline is taken once the server is idle
after it (so it includes the server's working set: caches, allocator pools). At
the end, once every task has ended and been deleted, RSS and fds must be back
close to that baseline, no subscriber may be left, and every task must have
passed its check. Exit status 1 if a check fails.

    .venv/bin/python benchmarks/soak_connections.py [--duration 180] [--clients 200]
        [--tasks 4] [--every 10] [--warmup 20] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
from _harness import ServerProcess, machine, table
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

SHORT_AGENTS = ("paced", "demo", "firehose")
KEEP_ENDED = 8  # ended tasks kept for replay; older ones are checked, then deleted
# Growth allowed at the end over the baseline (idle, after a warm-up storm).
RSS_TOLERANCE_MIB = 10.0
FD_TOLERANCE = 5


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Counters:
    connections: int = 0
    polite: int = 0
    aborted: int = 0
    messages: int = 0
    errors: int = 0
    gaps: int = 0
    verifier_resumes: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


@dataclass
class Watched:
    """A task and what its verifier saw."""

    task_id: str
    agent: str
    seqs: list[int] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else 0


class Soak:
    def __init__(self, server: ServerProcess, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.counters = Counters()
        self.tasks: list[Watched] = []  # every task of the soak
        self.live: list[Watched] = []  # running
        self.ended: list[Watched] = []  # ended, checked, still on the server
        self.failures: list[str] = []
        self.stop = asyncio.Event()
        self.rng = random.Random(20261125)
        self.http = httpx.AsyncClient(headers=server.headers, timeout=30)
        self.sampled = (0, time.monotonic())  # (connections, when) at the last sample
        self.checked = 0

    async def create(self, agent: str) -> Watched:
        response = await self.http.post(
            self.server.api("tasks"), json={"agent": agent, "input": "Compare Paris and Rome"}
        )
        response.raise_for_status()
        watched = Watched(response.json()["task_id"], agent)
        self.tasks.append(watched)
        self.live.append(watched)
        asyncio.ensure_future(self.verify(watched))
        return watched

    async def verify(self, watched: Watched) -> None:
        """Read the whole stream from the start, as a user's widget would: if the
        connection is lost (or dropped as too slow), resume after the last seq."""
        try:
            for _attempt in range(20):
                if await self._verify_once(watched):
                    return
                self.counters.verifier_resumes += 1
            self.counters.error("verifier gave up")
        except Exception as exc:  # noqa: BLE001 - counted, reported
            self.counters.error(f"verifier {type(exc).__name__}")
        finally:
            if watched in self.live:
                self.live.remove(watched)
            await self.check_log(watched)
            self.ended.append(watched)
            while len(self.ended) > KEEP_ENDED:
                await self.delete(self.ended.pop(0))
            watched.done.set()

    async def check_log(self, watched: Watched) -> None:
        """Finished; the verifier's stream == the REST log == seq 1..N; one result."""
        response = await self.http.get(self.server.api(f"tasks/{watched.task_id}"))
        task = response.json()
        events = task["events"]
        seqs = [e["seq"] for e in events]
        problems = []
        if task["status"] != "succeeded":
            problems.append(f"status {task['status']}")
        if seqs != list(range(1, len(seqs) + 1)) or seqs[-1:] != [task["last_seq"]]:
            problems.append("REST log not contiguous")
        if [e["type"] for e in events].count("result") != 1 or events[-1]["type"] != "result":
            problems.append("not exactly one final result")
        if watched.messages != events:
            problems.append("the verifier's stream differs from the log")
        if problems:
            self.failures.append(f"task {watched.task_id} ({watched.agent}): {problems}")
        self.checked += 1

    async def delete(self, watched: Watched) -> None:
        response = await self.http.delete(self.server.api(f"tasks/{watched.task_id}"))
        if response.status_code != 204:
            self.failures.append(f"DELETE {watched.task_id}: {response.status_code}")

    async def _verify_once(self, watched: Watched) -> bool:
        url = self.server.ws(watched.task_id, watched.last)
        try:
            async with connect(url, additional_headers=self.server.headers) as ws:
                async for raw in ws:
                    message = json.loads(raw)
                    if "seq" in message:
                        watched.seqs.append(message["seq"])
                        watched.messages.append(message)
                    if message["type"] == "result":
                        return True
        except (ConnectionClosed, OSError, InvalidStatus):
            pass
        return False

    async def keep_tasks_running(self) -> None:
        await self.create("demo-slow")  # one long run across the storm
        index = 0
        while not self.stop.is_set():
            short = [w for w in self.live if w.agent != "demo-slow"]
            if len(short) < self.args.tasks - 1:
                await self.create(SHORT_AGENTS[index % len(SHORT_AGENTS)])
                index += 1
            else:
                await asyncio.sleep(0.05)

    async def client(self, number: int) -> None:
        polite = number % 2 == 0
        rng = random.Random(number)
        while not self.stop.is_set():
            # Mostly running tasks, sometimes an ended one (replay to the end).
            pool = self.live if self.live and rng.random() < 0.8 else self.ended or self.live
            if not pool:
                await asyncio.sleep(0.05)
                continue
            watched = rng.choice(pool)
            after = rng.randint(0, watched.last)
            try:
                ws = await asyncio.wait_for(
                    connect(
                        self.server.ws(watched.task_id, after),
                        additional_headers=self.server.headers,
                        open_timeout=10,
                        close_timeout=2,
                        # Unread messages must not hold back the closing handshake.
                        max_queue=None,
                    ),
                    15,
                )
            except (InvalidStatus, OSError, TimeoutError) as exc:
                self.counters.error(f"connect {type(exc).__name__}")
                await asyncio.sleep(0.1)
                continue
            self.counters.connections += 1
            try:
                await self.read_a_bit(ws, after, rng.randint(1, 6))
            except ConnectionClosed:
                pass  # the task ended (close 1000 after its result)
            except TimeoutError:
                pass  # a quiet moment in the run: leave anyway
            except Exception as exc:  # noqa: BLE001 - counted, reported
                self.counters.error(f"read {type(exc).__name__}")
            if polite:
                self.counters.polite += 1
                try:
                    await ws.close()
                except Exception as exc:  # noqa: BLE001
                    self.counters.error(f"close {type(exc).__name__}")
            else:
                self.counters.aborted += 1
                ws.transport.abort()

    async def read_a_bit(self, ws: Any, after: int, count: int) -> None:
        expected = after + 1
        for _ in range(count):
            message = json.loads(await asyncio.wait_for(ws.recv(), 2))
            self.counters.messages += 1
            kind = message["type"]
            if kind == "connected":
                continue
            if kind == "error":
                code = message["data"]["code"]
                if code == "events_truncated":
                    expected = message["data"]["first_seq"]
                    continue
                if code == "unknown_task":  # an ended task deleted meanwhile: expected
                    return
                self.counters.error(f"stream {code}")
                return
            if message["seq"] != expected:
                self.counters.gaps += 1
                self.counters.error("gap or duplicate")
                return
            expected += 1
            if kind == "result":
                return

    async def subscribers(self) -> int:
        listing = (await self.http.get(self.server.api("tasks"))).json()["tasks"]
        return sum(t["subscribers"] for t in listing)

    async def sample(self, started: float, rows: list[list[str]]) -> None:
        assert self.server.proc is not None
        pid = self.server.proc.pid
        now = time.monotonic()
        elapsed = now - started
        rate = (self.counters.connections - self.sampled[0]) / max(now - self.sampled[1], 1e-6)
        self.sampled = (self.counters.connections, now)
        rows.append(
            [
                f"{elapsed:.0f}",
                f"{self.counters.connections}",
                f"{rate:.0f}",
                f"{self.counters.errors}",
                f"{rss_mib(pid):.1f}",
                f"{open_fds(pid)}",
                f"{await self.subscribers()}",
                f"{len(self.tasks)}",
            ]
        )
        print("  ".join(rows[-1]), flush=True)


HEADERS = ["s", "connections", "conn/s", "errors", "RSS MiB", "fds", "subscribers", "tasks"]


async def storm(soak: Soak, seconds: float, rows: list[list[str]]) -> tuple[float, int, float]:
    """Storm for ``seconds``, then let every task end and delete them; wait until the
    server is idle. Returns (seconds stormed, peak fds, peak RSS MiB)."""
    soak.stop.clear()
    started = time.monotonic()
    soak.sampled = (soak.counters.connections, started)
    runner = asyncio.ensure_future(soak.keep_tasks_running())
    clients = [asyncio.ensure_future(soak.client(n)) for n in range(soak.args.clients)]
    peak_fds, peak_rss = 0, 0.0
    while time.monotonic() - started < seconds:
        await asyncio.sleep(min(soak.args.every, seconds))
        await soak.sample(started, rows)
        peak_rss = max(peak_rss, float(rows[-1][4]))
        peak_fds = max(peak_fds, int(rows[-1][5]))
    soak.stop.set()
    stormed = time.monotonic() - started
    await asyncio.gather(runner, *clients)
    pending = [w for w in soak.tasks if not w.done.is_set()]
    print(f"storm over after {stormed:.0f} s; waiting for {len(pending)} task(s) to end")
    await asyncio.wait_for(asyncio.gather(*(w.done.wait() for w in soak.tasks)), 120)
    while soak.ended:
        await soak.delete(soak.ended.pop())
    async with asyncio.timeout(30):
        while await soak.subscribers():
            await asyncio.sleep(0.5)
    # Our REST client's keep-alive connections are server fds too: close them.
    await soak.http.aclose()
    soak.http = httpx.AsyncClient(headers=soak.server.headers, timeout=30)
    await asyncio.sleep(3)  # let closed sockets and the store's writer settle
    return stormed, peak_fds, peak_rss


async def run(server: ServerProcess, args: argparse.Namespace) -> int:
    assert server.proc is not None
    pid = server.proc.pid
    soak = Soak(server, args)
    cold_rss, cold_fds = rss_mib(pid), open_fds(pid)
    print(f"idle server: RSS {cold_rss:.1f} MiB, {cold_fds} fds")
    print("  ".join(HEADERS))
    # Warm-up storm: the server reaches its working set (caches, allocator pools);
    # then the baseline, idle. A leak would show as growth from there to the end.
    warm_rows: list[list[str]] = []
    await storm(soak, args.warmup, warm_rows)
    base_rss, base_fds = rss_mib(pid), open_fds(pid)
    print(f"baseline after a {args.warmup:.0f} s warm-up: RSS {base_rss:.1f} MiB, {base_fds} fds")
    warm_connections = soak.counters.connections
    soak.counters = Counters()
    soak.tasks.clear()
    soak.checked = 0

    rows: list[list[str]] = []
    storm_seconds, peak_fds, peak_rss = await storm(soak, args.duration, rows)
    end_rss, end_fds = rss_mib(pid), open_fds(pid)
    subscribers = await soak.subscribers()

    failures = list(soak.failures)
    if soak.checked != len(soak.tasks):
        failures.append(f"{len(soak.tasks) - soak.checked} task(s) not checked")
    if end_fds > base_fds + FD_TOLERANCE:
        failures.append(f"fds: {end_fds} at the end, {base_fds} before")
    if end_rss > base_rss + RSS_TOLERANCE_MIB:
        failures.append(f"RSS: {end_rss:.1f} MiB at the end, {base_rss:.1f} MiB before")
    if subscribers:
        failures.append(f"{subscribers} subscriber(s) left")
    if soak.counters.gaps:
        failures.append(f"{soak.counters.gaps} gap(s) or duplicate(s) seen by storm clients")

    c = soak.counters
    summary = [
        ["machine", machine()],
        ["date", datetime.date.today().isoformat()],
        [
            "storm / warm-up / clients / tasks at once",
            f"{storm_seconds:.0f} s / {args.warmup:.0f} s ({warm_connections} connections)"
            f" / {args.clients} / {args.tasks}",
        ],
        ["connections (polite / aborted)", f"{c.connections} ({c.polite} / {c.aborted})"],
        ["connections/s (mean)", f"{c.connections / storm_seconds:.0f}"],
        ["messages read by storm clients", f"{c.messages}"],
        ["errors", f"{c.errors} {c.error_kinds or ''}".strip()],
        ["verifier resumes (after a lost or dropped connection)", f"{c.verifier_resumes}"],
        ["tasks run / checked (gap-free, one result)", f"{len(soak.tasks)} / {soak.checked}"],
        [
            "RSS MiB: idle / baseline / peak / end",
            f"{cold_rss:.1f} / {base_rss:.1f} / {peak_rss:.1f} / {end_rss:.1f}",
        ],
        ["fds: idle / baseline / peak / end", f"{cold_fds} / {base_fds} / {peak_fds} / {end_fds}"],
        ["subscribers left", f"{subscribers}"],
        ["verdict", "PASS" if not failures else "FAIL: " + "; ".join(failures)],
    ]
    print()
    print(table(["", ""], summary))
    if args.markdown:
        print("\n" + table(HEADERS, rows))
    await soak.http.aclose()
    return 0 if not failures else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180, help="seconds of storm")
    parser.add_argument("--clients", type=int, default=200, help="concurrent storm clients")
    parser.add_argument("--tasks", type=int, default=4, help="tasks running at any time")
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    parser.add_argument(
        "--warmup", type=float, default=20, help="seconds of storm before the baseline"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the samples table")
    args = parser.parse_args()
    with TemporaryDirectory(prefix="agentkit-soak-") as home:
        server = ServerProcess(
            Path(home),
            "--ServerApp.jpserver_extensions=jupyterlab=False",
            "--ServerApp.jpserver_extensions=notebook=False",
            "--ServerApp.jpserver_extensions=jupyter_lsp=False",
            "--ServerApp.jpserver_extensions=jupyter_server_terminals=False",
        ).start()
        try:
            status = asyncio.run(run(server, args))
        finally:
            server.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
