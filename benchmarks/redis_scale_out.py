"""Scale-out on Redis: fan-out over two servers, latency, cross-server cancel, many runs.

    .venv/bin/python benchmarks/redis_scale_out.py [--runs 3] [--only fanout latency cancel runs]

One ``redis-server`` on a free loopback port (the tests' ``RedisServer``: append-only
file on, ``appendfsync always``, as redis_throughput.py), two relay-only ``jupyter
server`` processes A and B (``run_tasks=False``, one prefix) and ``agentkit-jupyter
worker`` processes (no embedded worker: every run is in a worker process, every
viewer on a server). Next to them, for the like-for-like figures, an in-process
server (default configuration, as latency.py). The source is ``bench-firehose``
(``agentkit_jupyter.core.demo:bench_agents``, given to the workers with ``--agents``;
the servers host it with ``load_bench_agents``). All clients are ``websockets``
readers in this process that check every ``seq`` (no gap, no duplicate, resume with
``?after=`` after a 4008).

1. ``fanout``: one run of ``--events`` events (as fast as the stream takes them,
   after a delay long enough for every viewer to join at ``last_seq`` 0), 100 viewers
   on A and 100 on B; each must get every message in order (asserted). Deliveries/s
   = all messages / (last result - the moment the source started). Redis's own
   ``INFO commandstats`` (``cmdstat_xread``, reset before each run) counts the
   ``XREAD`` calls of the run, next to the same run with 1 viewer on each server, and
   the in-process server with 200 viewers. Goal: about one reader per server, not
   one per viewer.
2. ``latency``: a run paced at 100 events/s; each step's ``data.timestamp`` is the
   ``time.time()`` at which the engine created the event (in the worker process; the
   same clock on one machine): arrival minus that, with 1 viewer on A and 1 on B,
   100 on A only, 100 on A and 100 on B, next to the in-process server at 1, 100 and
   200 subscribers; on Redis also creation -> the entry read from the stream by a
   probe process of its own (blocking ``XREAD``), to split the path. p50/p99/max
   over all samples of all runs; the CPU share of each process while streaming, and
   of the whole machine (all processes, of 200% on 2 cores).
3. ``cancel``: ``--cancels`` runs, one after another, each a paced firehose (still
   running: its model call streams at 100 tokens/s), created through A, one viewer
   on A and one on B, both having seen a step; the viewer on B sends ``cancel``;
   the time until the ``result`` (``cancelled``) arrives on A and on B. The same on
   the in-process server (two viewers on it, one cancels). Target: p99 < 200 ms.
4. ``runs``: ``--tasks`` tasks POSTed through one relay server, 20 requests in
   flight, each a run of ``50 rate=5`` (10 s of paced events, so that all of them
   run at once), 4 fresh worker processes; twice: with the server and the workers
   as shipped (server A), then (``--runs`` times) with ``?max_connections=1000`` in
   the Redis URL of a relay server C and of the workers (redis-py's pool holds 100
   connections, and a server keeps one blocking read per task it created). Wall time
   from the first POST to the last ``finished_at``, the most runs at once, status and
   length of each run from its record in Redis (as the worker wrote it), POSTs
   refused, runs per worker from the queue's pending entries (``XPENDING``, polled
   every 0.1 s: an entry is pending for its worker while it runs).

``--runs`` repeats 1 and 2 (their setups interleaved run by run) and the second setup
of 4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from _harness import (
    ROOT,
    ServerProcess,
    StreamStats,
    acreate_task,
    bench_server,
    check_streams,
    connect_many,
    create_task,
    firehose_input,
    firehose_messages,
    machine,
    median,
    open_ws,
    percentile,
    raise_fd_limit,
    read_stream,
    server_cpu,
    table,
)
from redis_support import RedisServer
from websockets.asyncio.client import ClientConnection

PREFIX = "bench-scale:"
AGENTS = "agentkit_jupyter.core.demo:bench_agents"
RATE = 100.0
CANCEL_TARGET_MS = 200.0
RUN_INPUT = "50 rate=5"  # 10 s of paced events per run in the many-runs scenario
RUN_MESSAGES = firehose_messages(50)
SCENARIOS = ("fanout", "latency", "cancel", "runs")


# -- the cluster ---------------------------------------------------------------------


class Worker:
    """``agentkit-jupyter worker`` in its own process, its output in a log file."""

    def __init__(self, url: str, name: str, folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"worker-{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [
            sys.executable, "-m", "agentkit_jupyter", "worker",
            "--backend", url, "--prefix", PREFIX, "--name", name, "--agents", AGENTS,
        ]  # fmt: skip
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "waiting for tasks" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} did not start: {self.log_path}")
            time.sleep(0.1)

    def cpu(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


@dataclass
class Cluster:
    redis: RedisServer
    client: redis.Redis
    a: ServerProcess
    b: ServerProcess
    local: ServerProcess
    workers: list[Worker] = field(default_factory=list)

    def xreads(self) -> int:
        stats = self.client.info("commandstats")
        return int(stats.get("cmdstat_xread", {}).get("calls", 0))

    def reset_stats(self) -> None:
        self.client.config_resetstat()

    def cpu(self, remote: bool) -> dict[str, float]:
        """CPU seconds so far of the processes of one setup, and of this client."""
        pids: dict[str, int | None] = {"server": cluster_pid(self.local)}
        if remote:
            pids = {
                "A": cluster_pid(self.a),
                "B": cluster_pid(self.b),
                "worker": self.workers[0].proc.pid,
                "redis": self.redis.process.pid if self.redis.process else None,
            }
        out = {}
        for name, pid in pids.items():
            assert pid is not None
            times = psutil.Process(pid).cpu_times()
            out[name] = float(times.user + times.system)
        out["client"] = time.process_time()
        machine = psutil.cpu_times()
        out["machine"] = float(sum(machine) - machine.idle - getattr(machine, "iowait", 0.0))
        return out


def cluster_pid(server: ServerProcess) -> int | None:
    return server.proc.pid if server.proc is not None else None


def relay(home: Path, url: str) -> ServerProcess:
    return bench_server(
        home,
        f"--AgentKitExtension.backend_url={url}",
        f"--AgentKitExtension.backend_prefix={PREFIX}",
        "--AgentKitExtension.run_tasks=False",
    )


# -- 1. fan-out over two servers -----------------------------------------------------


@dataclass
class Fanout:
    viewers: str
    deliveries_per_s: float
    slowest_rate: float
    xreads: int
    messages: int
    status: str


async def _read_all(server: ServerProcess, task_id: str, sockets: list[ClientConnection]) -> Any:
    async def resume(after: int) -> ClientConnection:
        return await open_ws(server.ws(task_id, after), server.headers)

    return await asyncio.gather(*(read_stream(ws, reconnect=resume) for ws in sockets))


async def fanout_run(cluster: Cluster, per_server: int, events: int, remote: bool) -> Fanout:
    """One run: ``per_server`` viewers on A and on B (remote), or 2x that on the
    in-process server."""
    total = 2 * per_server
    delay = 2.0 + total * 0.01
    servers = [cluster.a, cluster.b] if remote else [cluster.local]
    count = per_server if remote else total
    cluster.reset_stats()
    task_id = create_task(servers[0], firehose_input(events, delay=delay))
    started = time.monotonic()
    groups = await asyncio.gather(*(connect_many(s.ws(task_id), s.headers, count) for s in servers))
    if time.monotonic() - started > delay:
        print(f"  warning: connecting {total} viewers took longer than the delay")
    results = await asyncio.gather(
        *(_read_all(s, task_id, g) for s, g in zip(servers, groups, strict=True))
    )
    streams: list[StreamStats] = [s for group in results for s in group]
    xreads = cluster.xreads()
    await asyncio.gather(*(ws.close() for group in groups for ws in group))
    status = check_streams(streams, firehose_messages(events))
    assert status == "ok", f"fan-out: {status}"
    source = min(s.source_started or s.first_at for s in streams)
    last = max(s.last_at for s in streams)
    received = sum(s.received for s in streams)
    where = "A + B" if remote else "in-process"
    return Fanout(
        viewers=f"{per_server} + {per_server} ({where})" if remote else f"{total} ({where})",
        deliveries_per_s=received / (last - source),
        slowest_rate=min(s.rate for s in streams),
        xreads=xreads,
        messages=firehose_messages(events),
        status=status,
    )


# -- 2. latency ----------------------------------------------------------------------


LATENCY_SETUPS = {
    "local": "in-process, {n} on one server",
    "A": "Redis, {n} on A only",
    "AB": "Redis, {n} on A + {n} on B",
}


async def latency_run(
    cluster: Cluster, per_server: int, events: int, setup: str
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Creation -> arrival samples by where the viewers were (on Redis also
    "in Redis": creation -> the entry read from the stream by a probe process of its
    own); CPU shares of the processes meanwhile."""
    servers = {"local": [cluster.local], "A": [cluster.a], "AB": [cluster.a, cluster.b]}[setup]
    names = {
        "local": ["viewers"],
        "A": ["viewers on A"],
        "AB": ["viewers on A", "viewers on B"],
    }[setup]
    remote = setup != "local"
    delay = 1.0 + per_server * len(servers) * 0.01
    task_id = create_task(servers[0], firehose_input(events, rate=RATE, delay=delay))
    probe = None
    if remote:
        key = f"{PREFIX}task:{task_id}:events"
        probe = subprocess.Popen(
            [sys.executable, __file__, "probe", cluster.redis.url, key],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert probe.stdout is not None
        assert (await asyncio.to_thread(probe.stdout.readline)).strip() == "ready"
    groups = await asyncio.gather(
        *(connect_many(s.ws(task_id), s.headers, per_server) for s in servers)
    )
    before, started = cluster.cpu(remote), time.monotonic()
    results = await asyncio.gather(
        *(asyncio.gather(*(read_stream(ws, latency=True) for ws in g)) for g in groups)
    )
    after, seconds = cluster.cpu(remote), time.monotonic() - started
    await asyncio.gather(*(ws.close() for g in groups for ws in g))
    out: dict[str, list[float]] = {}
    if probe is not None:
        text, _ = await asyncio.to_thread(probe.communicate, timeout=60)
        out["entry in Redis (probe)"] = json.loads(text)
    for name, streams in zip(names, results, strict=True):
        status = check_streams(streams, firehose_messages(events))
        assert status == "ok", f"latency: {status}"
        out[name] = [x for s in streams for x in s.latencies]
    return out, {k: (after[k] - before[k]) / seconds for k in before}


def _probe(url: str, key: str) -> None:
    """Read a task's stream as it is written: creation -> the entry here, per step."""
    client = redis.Redis.from_url(url)
    client.ping()
    print("ready", flush=True)
    samples: list[float] = []
    after = "0-0"
    while True:
        reply = client.xread({key: after}, count=1000, block=30_000)
        if not reply:
            break
        now = time.time()
        for entry_id, fields in reply[0][1]:
            after = entry_id.decode()
            message = json.loads(fields[b"m"])
            if message["type"] == "result":
                print(json.dumps(samples), flush=True)
                return
            samples.append(now - message["data"]["timestamp"])
    print(json.dumps(samples), flush=True)


# -- 3. cancel across servers --------------------------------------------------------


async def _until_step(ws: ClientConnection) -> None:
    async for text in ws:
        if text.startswith('{"type":"step"'):
            return
    raise RuntimeError("closed before a step")


async def _until_result(ws: ClientConnection, sent: float) -> float:
    async for text in ws:
        if text.startswith('{"type":"result"'):
            at = time.perf_counter()
            status = json.loads(text)["data"]["status"]
            if status != "cancelled":
                raise RuntimeError(f"the run ended {status}, not cancelled")
            return at - sent
    raise RuntimeError("closed before the result")


async def cancel_runs(
    watcher: ServerProcess, sender: ServerProcess, runs: int
) -> tuple[list[float], list[float]]:
    """(cancel -> result on the watcher's server, on the sender's) per run; the task
    is created through ``watcher``."""
    on_watcher, on_sender = [], []
    async with httpx.AsyncClient() as client:
        for _ in range(runs):
            task_id = await acreate_task(client, watcher, firehose_input(100_000, rate=RATE))
            a = await open_ws(watcher.ws(task_id), watcher.headers)
            b = await open_ws(sender.ws(task_id), sender.headers)
            await asyncio.gather(_until_step(a), _until_step(b))
            sent = time.perf_counter()
            await b.send('{"type":"cancel","reason":"benchmark"}')
            got_a, got_b = await asyncio.gather(_until_result(a, sent), _until_result(b, sent))
            on_watcher.append(got_a)
            on_sender.append(got_b)
            await asyncio.gather(a.close(), b.close())
            await asyncio.sleep(0.05)
    return on_watcher, on_sender


# -- 4. many runs over 4 workers -----------------------------------------------------


class PendingWatch:
    """Polls the queue's pending entries: which worker holds which task."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.queue = f"{PREFIX}queue"
        self.by_entry: dict[str, str] = {}  # entry id -> worker
        self.tasks: dict[str, str] = {}  # task id -> worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PendingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        while not self._stop.is_set():
            rows = self.client.xpending_range(self.queue, "workers", "-", "+", 10_000)
            for row in rows:
                entry = row["message_id"].decode()
                if entry in self.by_entry:
                    continue
                worker = row["consumer"].decode()
                self.by_entry[entry] = worker
                found = self.client.xrange(self.queue, entry, entry)
                if found:
                    self.tasks[found[0][1][b"task"].decode()] = worker
            self._stop.wait(0.1)


@dataclass
class Many:
    setup: str
    wall: float
    posted: float
    last_start: float
    per_worker: dict[str, int]
    statuses: dict[str, int]
    refused: dict[str, int]
    unseen: int
    worker_cpu: dict[str, float]
    server_cpu: float
    peak: int  # most runs between started_at and finished_at at once


async def _post_all(
    server: ServerProcess, count: int, inflight: int = 20
) -> tuple[list[str], dict[str, int]]:
    """POST ``count`` tasks, ``inflight`` at a time: the ids created, and the refusals
    by status and error code (not retried)."""
    gate = asyncio.Semaphore(inflight)
    refused: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=60) as client:

        async def one() -> str | None:
            async with gate:
                response = await client.post(
                    server.api("tasks"),
                    json={"agent": "bench-firehose", "input": RUN_INPUT},
                    headers=server.headers,
                )
            if response.status_code == 201:
                return str(response.json()["task_id"])
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = response.text[:60]
            key = f"{response.status_code} {code}"
            refused[key] = refused.get(key, 0) + 1
            return None

        ids = await asyncio.gather(*(one() for _ in range(count)))
    return [i for i in ids if i is not None], refused


def _listing(server: ServerProcess, limit: int) -> list[dict[str, Any]] | None:
    response = httpx.get(
        server.api("tasks"), params={"limit": str(limit)}, headers=server.headers, timeout=30
    )
    return list(response.json()["tasks"]) if response.status_code == 200 else None


def many_run(
    setup: str, server: ServerProcess, client: redis.Redis, workers: list[Worker], count: int
) -> Many:
    cpu_before = {w.name: w.cpu() for w in workers}
    server_before = server_cpu(server)
    with PendingWatch(client) as watch:
        t0 = time.time()
        ids, refused = asyncio.run(_post_all(server, count))
        posted = time.time() - t0
        wanted = set(ids)
        deadline = time.monotonic() + 300
        while True:
            listed = _listing(server, 10 * count)  # None: refused (503), try again
            if listed is not None:
                done = {t["task_id"] for t in listed if t["task_id"] in wanted and t["finished_at"]}
                if done == wanted:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the runs did not all finish in 300 s ({setup})")
            time.sleep(0.25)
        time.sleep(0.3)  # the last poll of the pending entries
    # The records as the workers wrote them, read from Redis itself: the server's
    # list shows its own mirror of a task it hosts, whose times are the mirror's.
    records = backend_records(client, ids)
    by_id = {t["task_id"]: t for t in listed}
    statuses: dict[str, int] = {}
    for task_id, found in zip(ids, records, strict=True):
        key = found["status"] if found["last_seq"] == RUN_MESSAGES else "wrong length"
        if by_id[task_id]["status"] != found["status"]:
            key += f" (listed {by_id[task_id]['status']})"
        statuses[key] = statuses.get(key, 0) + 1
    per_worker = {w.name: 0 for w in workers}
    for task_id in ids:
        if task_id in watch.tasks:
            per_worker[watch.tasks[task_id]] += 1
    return Many(
        setup=setup,
        wall=max(r["finished_at"] for r in records) - t0,
        posted=posted,
        last_start=max(r["started_at"] for r in records) - t0,
        per_worker=per_worker,
        statuses=statuses,
        refused=refused,
        unseen=len(wanted - set(watch.tasks)),
        worker_cpu={w.name: w.cpu() - cpu_before[w.name] for w in workers},
        server_cpu=server_cpu(server) - server_before,
        peak=peak_running(records),
    )


def backend_records(client: redis.Redis, ids: list[str]) -> list[dict[str, Any]]:
    fields = ("status", "started_at", "finished_at", "last_seq")
    pipe = client.pipeline()
    for task_id in ids:
        pipe.hmget(f"{PREFIX}task:{task_id}", fields)
    return [
        {name: json.loads(value) for name, value in zip(fields, row, strict=True)}
        for row in pipe.execute()
    ]


def peak_running(records: list[dict[str, Any]]) -> int:
    edges = sorted(
        [(r["started_at"], 1) for r in records] + [(r["finished_at"], -1) for r in records]
    )
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) + time.strftime(" at %H:%M:%S %Z")


# -- the report ----------------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}" if values else "-"


def report_fanout(results: dict[str, list[Fanout]], runs: int) -> list[tuple[str, bool]]:
    rows = []
    for name, outcomes in results.items():
        rows.append(
            [
                name,
                f"{outcomes[0].messages:,}",
                f"{median([o.deliveries_per_s for o in outcomes]):,.0f}",
                f"{median([o.slowest_rate for o in outcomes]):,.0f}",
                " / ".join(str(o.xreads) for o in outcomes),
                "; ".join(sorted({o.status for o in outcomes})),
            ]
        )
    print(f"\nfan-out, median of {runs} runs (XREAD calls: every run)\n")
    headers = ["viewers", "messages each", "deliveries/s", "slowest viewer msgs/s"]
    print(table([*headers, "XREAD calls", "loss / gaps"], rows))
    keys = list(results)
    few, many = results[keys[0]], results[keys[1]]
    one = median([o.xreads for o in few])
    hundred = median([o.xreads for o in many])
    ok = hundred <= 2 * one
    print(
        f"\ngoal: about one reader per server: {hundred:g} XREADs with 100 + 100 viewers "
        f"against {one:g} with 1 + 1 -> {'met' if ok else 'MISSED'}"
    )
    return [("fan-out: one reader per server", ok), ("fan-out: no loss, no gap", True)]


def report_latency(results: dict[str, list[float]], runs: int, events: int) -> None:
    rows = [[name, f"{len(s):,}", ms(s, 50), ms(s, 99), ms(s, 100)] for name, s in results.items()]
    print(f"\nlatency, creation -> arrival, {RATE:g} events/s, {events} events, {runs} runs\n")
    print(table(["viewers", "samples", "p50 ms", "p99 ms", "max ms"], rows))


def report_cancel(results: dict[str, list[float]], runs: int) -> list[tuple[str, bool]]:
    rows = []
    verdicts = []
    for name, samples in results.items():
        rows.append([name, str(len(samples)), ms(samples, 50), ms(samples, 99), ms(samples, 100)])
        ok = percentile(samples, 99) * 1000 < CANCEL_TARGET_MS
        verdicts.append((f"cancel p99 < {CANCEL_TARGET_MS:g} ms, {name}", ok))
    print(f"\ncancel -> result, {runs} runs each\n")
    print(table(["cancel sent from -> result seen on", "runs", "p50 ms", "p99 ms", "max ms"], rows))
    return verdicts


def report_many(outcomes: list[Many], count: int) -> list[tuple[str, bool]]:
    rows = []
    for o in outcomes:
        spread = " / ".join(str(c) for c in o.per_worker.values())
        cpu = " / ".join(f"{c:.1f}" for c in o.worker_cpu.values())
        statuses = ", ".join(f"{c} {n}" for n, c in sorted(o.statuses.items()))
        refused = ", ".join(f"{c} x {n}" for n, c in sorted(o.refused.items())) or "none"
        rows.append(
            [
                o.setup,
                refused,
                f"{o.posted:.2f}",
                f"{o.last_start:.2f}",
                f"{o.wall:.2f}",
                str(o.peak),
                spread + (f" (unseen {o.unseen})" if o.unseen else ""),
                cpu,
                f"{o.server_cpu:.1f}",
                statuses,
            ]
        )
    print(f"\n{count} POSTs of '{RUN_INPUT}' (10 s each), 4 worker processes\n")
    headers = ["setup", "POSTs refused", "all POSTed s", "last started s", "all finished s"]
    more = ["peak running", "runs per worker", "worker CPU s", "server CPU s", "statuses"]
    print(table([*headers, *more], rows))
    verdicts = []
    for setup in dict.fromkeys(o.setup for o in outcomes):
        mine = [o for o in outcomes if o.setup == setup]
        ok = all(o.statuses == {"succeeded": count} and not o.refused for o in mine)
        verdicts.append((f"{count} runs ({setup}): all created and succeeded", ok))
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000, help="events of the fan-out run")
    parser.add_argument("--latency-events", type=int, default=500, help="at 100 events/s")
    parser.add_argument("--cancels", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not installed (scripts/test.sh installs it)")
    raise_fd_limit()
    print(machine())
    import agentkit_jupyter

    print(f"package: {Path(agentkit_jupyter.__file__).parent}")
    verdicts: list[tuple[str, bool]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        redis_server = RedisServer(executable, home / "redis", appendonly=True).start()
        started: list[ServerProcess] = []
        workers: list[Worker] = []
        client = redis.Redis.from_url(redis_server.url)
        try:
            a = relay(home / "a", redis_server.url)
            started.append(a)
            b = relay(home / "b", redis_server.url)
            started.append(b)
            local = bench_server(home / "local")
            started.append(local)
            workers.append(Worker(redis_server.url, "w1", home))
            workers[0].wait_ready()
            cluster = Cluster(redis_server, client, a, b, local, workers)
            run_scenarios(cluster, args, home, verdicts)
        finally:
            client.close()
            for worker in workers:
                worker.stop()
            for server in started:
                server.stop()
            redis_server.stop()
    print()
    for name, ok in verdicts:
        print(f"target {name}: {'met' if ok else 'MISSED'}")


def run_scenarios(
    cluster: Cluster, args: argparse.Namespace, home: Path, verdicts: list[tuple[str, bool]]
) -> None:
    warm = [cluster.a, cluster.b, cluster.local]
    for server in warm:  # warm up every server and the worker
        create_task(server, firehose_input(200))
    asyncio.run(fanout_run(cluster, 5, 200, remote=True))
    asyncio.run(fanout_run(cluster, 5, 200, remote=False))

    if "fanout" in args.only:
        print(f"fan-out: load average {load()}")
        jobs: list[tuple[int, bool]] = [(1, True), (100, True), (100, False)]
        fan: dict[str, list[Fanout]] = {}
        for run in range(args.runs):
            for per_server, remote in jobs:
                out = asyncio.run(fanout_run(cluster, per_server, args.events, remote))
                fan.setdefault(out.viewers, []).append(out)
                print(
                    f"fan-out run {run + 1}, {out.viewers}: {out.deliveries_per_s:,.0f} "
                    f"deliveries/s, {out.xreads} XREADs, {out.status}"
                )
        verdicts += report_fanout(fan, args.runs)

    if "latency" in args.only:
        print(f"latency: load average {load()}")
        lat: dict[str, list[float]] = {}
        cpu: dict[str, list[str]] = {}
        jobs = (
            (1, "local"),
            (1, "AB"),
            (100, "local"),
            (100, "A"),
            (100, "AB"),
            (200, "local"),
        )
        for run in range(args.runs):
            for per_server, setup in jobs:
                out, shares = asyncio.run(
                    latency_run(cluster, per_server, args.latency_events, setup)
                )
                label = LATENCY_SETUPS[setup].format(n=per_server)
                for where, samples in out.items():
                    name = f"{label}: {where}"
                    lat.setdefault(name, []).extend(samples)
                    print(
                        f"latency run {run + 1}, {name}: p50 {ms(samples, 50)} ms, "
                        f"p99 {ms(samples, 99)} ms"
                    )
                text = ", ".join(f"{k} {v * 100:.0f}%" for k, v in shares.items())
                print(f"  CPU: {text}")
                cpu.setdefault(label, []).append(text)
        report_latency(lat, args.runs, args.latency_events)
        print("\nCPU shares while streaming (run by run):")
        for setup, texts in cpu.items():
            print(f"  {setup}: " + " | ".join(texts))

    if "cancel" in args.only:
        print(f"cancel: load average {load()}")
        asyncio.run(cancel_runs(cluster.a, cluster.b, 3))  # warm up
        on_a, on_b = asyncio.run(cancel_runs(cluster.a, cluster.b, args.cancels))
        local_other, local_sender = asyncio.run(
            cancel_runs(cluster.local, cluster.local, args.cancels)
        )
        verdicts += report_cancel(
            {
                "B -> A (Redis, worker process)": on_a,
                "B -> B (Redis, worker process)": on_b,
                "in-process -> the other viewer": local_other,
                "in-process -> the sender": local_sender,
            },
            args.cancels,
        )

    if "runs" in args.only:
        print(f"runs: load average {load()}")
        for worker in cluster.workers:  # four fresh workers per setup
            worker.stop()
        cluster.workers.clear()
        # A server holds one blocking XREAD per task it created (its mirror's reader)
        # and redis-py 8's pool has 100 connections: as shipped, the 101st live task's
        # calls fail (503). The second setup raises the pool through the URL.
        big = f"{cluster.redis.url}?max_connections=1000"
        c = relay(home / "c", big)
        outcomes = []
        try:
            for setup, server, url, repeat, letter in (
                ("as shipped (A)", cluster.a, cluster.redis.url, 1, "a"),
                ("max_connections=1000 (C)", c, big, args.runs, "c"),
            ):
                workers = [Worker(url, f"{letter}{i}", home) for i in range(1, 5)]
                cluster.workers.extend(workers)
                for worker in workers:
                    worker.wait_ready()
                for run in range(repeat):
                    outcome = many_run(setup, server, cluster.client, workers, args.tasks)
                    outcomes.append(outcome)
                    print(
                        f"runs {setup} {run + 1}: {outcome.refused or 'none'} refused, "
                        f"all finished after {outcome.wall:.2f} s, {outcome.per_worker}, "
                        f"{outcome.statuses}"
                    )
                for worker in workers:
                    worker.stop()
        finally:
            c.stop()
        verdicts += report_many(outcomes, args.tasks)


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        _probe(sys.argv[2], sys.argv[3])
    else:
        main()
