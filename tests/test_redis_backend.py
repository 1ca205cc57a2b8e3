"""The backend interfaces (tasks/backend.py) against a real redis-server, and the same
contract against the in-process reference (tasks/memory_backend.py).

The contract tests run on both; the Redis-only ones cover what only Redis has: the
layout, the worker queue and its leases, persistence across a restart, Redis going
away mid-read, and one Redis read per watched task for many local subscribers.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import NoPermissionError
from redis_support import RedisServer, redis_executable, require_redis_server

from agentkit_jupyter.core import AgentPool
from agentkit_jupyter.core.demo import demo_agents
from agentkit_jupyter.protocol import (
    ApproveMessage,
    CancelMessage,
    PauseMessage,
    RejectMessage,
    ResumeMessage,
)
from agentkit_jupyter.tasks.backend import (
    BackendUnavailableError,
    CallDecidedError,
    DuplicateSeqError,
    EventsTrimmedError,
    ListCursor,
    SeqGapError,
    StaleWriterError,
    TaskBackend,
    TaskDeletedError,
    TaskExistsError,
)
from agentkit_jupyter.tasks.hub import HubLimits, TaskHub
from agentkit_jupyter.tasks.log import LogEntry
from agentkit_jupyter.tasks.memory_backend import MemoryBackend
from agentkit_jupyter.tasks.redis_backend import RedisBackend, RedisWorkQueue, connect
from agentkit_jupyter.tasks.shared import SharedTasks

# Generous: these bound a hang, they do not measure speed.
DEADLINE = 10.0


def message(seq: int, text: str = "") -> bytes:
    return json.dumps({"type": "step", "seq": seq, "data": {"text": text or f"m{seq}"}}).encode()


def record(task_id: str, created_at: float, status: str = "running", **extra: Any) -> dict:
    return {
        "task_id": task_id,
        "agent": "demo",
        "input": "what is 2 + 2? ünïcødé ✓",
        "status": status,
        "origin": "server",
        "created_at": created_at,
        "started_at": None,
        "finished_at": None,
        "result": None,
        **extra,
    }


def fresh_prefix() -> str:
    return f"agentkit-test-{secrets.token_hex(4)}:"


@pytest.fixture(params=["memory", "redis", "redis-resp3"])
def backend(
    request: pytest.FixtureRequest, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Iterator[TaskBackend]:
    made: TaskBackend
    if request.param == "memory":
        made = MemoryBackend()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        # RESP3 answers streams as maps, RESP2 as lists: both are read.
        resp = 3 if request.param == "redis-resp3" else 2
        made = RedisBackend(connect(server.url, protocol=resp), prefix=fresh_prefix())
    yield made
    jp_asyncio_loop.run_until_complete(made.close())


# -- the event log ------------------------------------------------------------------------


async def test_reads_after_a_seq_and_a_blocking_read_wakes_on_the_next_append(
    backend: TaskBackend,
) -> None:
    for seq in (1, 2, 3):
        await backend.append("t", seq, message(seq))
    assert [e.seq for e in await backend.read_after("t", 0)] == [1, 2, 3]
    assert [e.seq for e in await backend.read_after("t", 1, limit=1)] == [2]
    assert (await backend.read_after("t", 2))[0].data == message(3)
    assert await backend.read_after("t", 3) == []  # nothing yet, no wait asked
    assert await backend.read_after("t", 3, block=0.1) == []  # waited, nothing came
    assert await backend.last_seq("t") == 3 and await backend.first_seq("t") == 1

    async with asyncio.timeout(DEADLINE):
        reader = asyncio.create_task(backend.read_after("t", 3, block=DEADLINE))
        await asyncio.sleep(0.05)  # let it block (not a timing assert)
        await backend.append("t", 4, message(4))
        woken = await reader
    assert [(e.seq, e.data) for e in woken] == [(4, message(4))]


async def test_no_duplicate_and_no_gap_an_append_is_refused_instead(
    backend: TaskBackend,
) -> None:
    await backend.append("t", 1, message(1))
    await backend.append("t", 2, message(2))
    with pytest.raises(DuplicateSeqError):
        await backend.append("t", 2, message(2, "again"))
    with pytest.raises(DuplicateSeqError):
        await backend.append("t", 1, message(1, "again"))
    with pytest.raises(SeqGapError) as gap:
        await backend.append("t", 4, message(4))
    assert gap.value.last_seq == 2
    with pytest.raises(SeqGapError):
        await backend.append("other", 2, message(2))  # a new log starts at 1
    # All or none: the first of a batch is a duplicate, so none of it is written.
    with pytest.raises(DuplicateSeqError):
        await backend.append_many("t", 2, [message(2), message(3)])
    await backend.append_many("t", 3, [message(3), message(4), message(5)])
    entries = await backend.read_after("t", 0)
    assert [(e.seq, e.data) for e in entries] == [(s, message(s)) for s in range(1, 6)]


async def test_concurrent_appenders_leave_one_entry_per_seq(backend: TaskBackend) -> None:
    wins: dict[int, str] = {}

    async def appender(name: str) -> None:
        while True:
            seq = await backend.last_seq("t") + 1
            if seq > 120:
                return
            try:
                await backend.append("t", seq, message(seq, name))
            except DuplicateSeqError:
                continue  # another appender took that seq
            assert seq not in wins
            wins[seq] = name

    async with asyncio.timeout(DEADLINE * 3):
        await asyncio.gather(*(appender(f"w{i}") for i in range(6)))
    entries = await backend.read_after("t", 0, limit=1000)
    assert [e.seq for e in entries] == list(range(1, 121))
    assert sorted(wins) == list(range(1, 121))
    for entry in entries:
        assert json.loads(entry.data)["data"]["text"] == wins[entry.seq]


async def test_trimming_keeps_the_newest_and_a_read_from_before_says_so(
    backend: TaskBackend,
) -> None:
    await backend.append_many("t", 1, [message(s) for s in range(1, 51)])
    assert await backend.trim("t", keep_last=10) == 40
    assert await backend.first_seq("t") == 41 and await backend.last_seq("t") == 50
    with pytest.raises(EventsTrimmedError) as trimmed:
        await backend.read_after("t", 0)
    assert trimmed.value.first_seq == 41
    assert [e.seq for e in await backend.read_after("t", 40)] == list(range(41, 51))
    with pytest.raises(DuplicateSeqError):  # trimmed seqs stay taken
        await backend.append("t", 30, message(30))
    await backend.append("t", 51, message(51))


async def test_a_writer_fenced_off_by_a_newer_one_cannot_append(backend: TaskBackend) -> None:
    assert await backend.fence("t", 1) == 1  # worker A took the task (first delivery)
    await backend.append_many("t", 1, [message(1), message(2)], writer=1)
    assert await backend.fence("t", 2) == 2  # A's lease lapsed: B took it over
    with pytest.raises(StaleWriterError) as stale:
        await backend.append("t", 3, message(3, "from A"), writer=1)
    assert (stale.value.writer, stale.value.current) == (1, 2)
    await backend.append("t", 3, message(3, "from B"), writer=2)
    with pytest.raises(StaleWriterError):  # checked before the seq: A learns it lost
        await backend.append("t", 4, message(4, "from A"), writer=1)
    assert await backend.fence("t", 1) == 2  # the token never goes back
    assert [e.data for e in await backend.read_after("t", 0)] == [
        message(1),
        message(2),
        message(3, "from B"),
    ]


# -- the registry -------------------------------------------------------------------------


async def test_a_record_round_trips_and_is_created_once(backend: TaskBackend) -> None:
    result = {"status": "succeeded", "output": "4 ✓", "usage": {"prompt_tokens": 3}, "cost": None}
    original = record("a", 1700000000.123456, pending_approvals=[{"call_id": "c1"}], cost=0.25)
    await backend.create(original)
    assert await backend.get("a") == original
    with pytest.raises(TaskExistsError):
        await backend.create(record("a", 1.0))
    assert await backend.update("a", {"status": "succeeded", "result": result, "finished_at": 2.5})
    assert await backend.get("a") == {
        **original,
        "status": "succeeded",
        "result": result,
        "finished_at": 2.5,
    }
    assert await backend.get("nope") is None
    assert not await backend.update("nope", {"status": "failed"})
    assert await backend.get("nope") is None  # an update never makes a record

    await backend.append("a", 1, message(1))
    await backend.send("a", CancelMessage(type="cancel", reason="x"), by="ann")
    await backend.delete("a")
    assert await backend.get("a") is None
    assert await backend.read_after("a", 0) == []
    assert await backend.receive("a", 0) == []
    assert not await backend.update("a", {"status": "failed"})
    await backend.delete("a")  # idempotent


async def test_deleted_stays_deleted_late_writes_are_refused_and_the_id_is_not_reused(
    backend: TaskBackend,
) -> None:
    """A run still writing when its task is deleted must not bring back a stream that
    nobody lists or deletes, nor mix into a new task given the same id."""
    await backend.create(record("a", 1.0))
    await backend.append("a", 1, message(1))
    assert await backend.known("a") and not await backend.known("b")
    await backend.delete("a")
    assert await backend.known("a")  # had it: not free
    with pytest.raises(TaskDeletedError):
        await backend.append("a", 2, message(2))
    with pytest.raises(TaskDeletedError):
        await backend.append_many("a", 1, [message(1)], writer=3)
    with pytest.raises(TaskDeletedError):
        await backend.send("a", CancelMessage(type="cancel", reason="late"), by=None)
    with pytest.raises(TaskExistsError):
        await backend.create(record("a", 2.0))
    assert await backend.get("a") is None
    assert await backend.read_after("a", 0) == []
    assert await backend.receive("a", 0) == []
    assert [r["task_id"] for r in (await backend.page()).records] == []


async def test_a_cut_messages_whole_text_is_kept_until_the_task_is_deleted(
    backend: TaskBackend,
) -> None:
    await backend.create(record("a", 1.0))
    whole = ("x" * 300_000 + " ✓").encode()
    await backend.keep_whole("a", 7, whole)
    assert await backend.read_whole("a", 7) == whole
    assert await backend.read_whole("a", 8) is None
    await backend.delete("a")
    assert await backend.read_whole("a", 7) is None
    with pytest.raises(TaskDeletedError):
        await backend.keep_whole("a", 9, b"late")
    assert await backend.read_whole("a", 9) is None


async def test_of_many_concurrent_claims_of_a_field_exactly_one_wins(
    backend: TaskBackend,
) -> None:
    """Two servers resuming one interrupted task at once: one continuation, and the
    other learns which."""
    await backend.create(record("a", 1.0, resumed_by=None))
    answers = await asyncio.gather(*(backend.claim("a", "resumed_by", f"c{i}") for i in range(20)))
    winner = (await backend.get("a"))["resumed_by"]
    assert winner in {f"c{i}" for i in range(20)}
    assert answers == [winner] * 20
    assert await backend.claim("a", "resumed_by", "late") == winner
    assert await backend.claim("nope", "resumed_by", "x") is None
    assert await backend.get("nope") is None  # a claim never makes a record


async def test_the_list_pages_by_creation_time_then_id(backend: TaskBackend) -> None:
    times = [5.0, 1.0, 3.0, 3.0, 3.0, 2.0, 4.0, 3.0, 1.0, 6.0, 2.0, 3.0]
    for index, created in enumerate(times):
        await backend.create(record(f"t{index:02d}", created))
    expected = sorted((created, f"t{i:02d}") for i, created in enumerate(times))

    seen: list[tuple[float, str]] = []
    cursor: ListCursor | None = None
    pages = 0
    while True:
        page = await backend.page(limit=5, after=cursor)
        seen += [(r["created_at"], r["task_id"]) for r in page.records]
        pages += 1
        if page.next is None:
            break
        cursor = page.next
    assert seen == expected and pages == 3
    assert (await backend.page(limit=100)).next is None


async def test_retention_deletes_old_and_excess_finished_tasks_only(
    backend: TaskBackend,
) -> None:
    now = 1_000_000.0
    day = 86400.0
    await backend.create(record("old-done", now - 40 * day, status="succeeded"))
    await backend.create(record("old-running", now - 40 * day))
    await backend.create(record("new-1", now - 3, status="failed"))
    await backend.create(record("new-2", now - 2))
    await backend.update("new-2", {"status": "cancelled"})  # finished by an update
    await backend.create(record("new-3", now - 1, status="interrupted"))

    gone = await backend.apply_retention(max_age_seconds=30 * day, max_count=2, now=now)
    assert sorted(gone) == ["new-1", "old-done"]
    left = [r["task_id"] for r in (await backend.page()).records]
    assert left == ["old-running", "new-2", "new-3"]
    assert await backend.apply_retention(now=now) == []


# -- control ------------------------------------------------------------------------------


async def test_control_commands_are_numbered_delivered_again_after_a_number_and_deduplicated(
    backend: TaskBackend,
) -> None:
    approve = ApproveMessage(type="approve", call_id="c1", arguments={"x": 1})
    pause = PauseMessage(type="pause", reason="lunch")
    assert await backend.send("t", approve, by="ann", key="k-1") == 1
    assert await backend.send("t", pause, by=None) == 2
    # A resend (the sender did not hear back) is the same command, not a second one.
    assert await backend.send("t", approve, by="ann", key="k-1") == 1
    assert await backend.send("t", ResumeMessage(type="resume", steps=2), by="bob") == 3

    got = await backend.receive("t", 0)
    assert [(e.number, e.command, e.by) for e in got] == [
        (1, approve, "ann"),
        (2, pause, None),
        (3, ResumeMessage(type="resume", steps=2), "bob"),
    ]
    assert got[0].key == "k-1"
    # A runner that applied up to 2 and reconnects gets the rest: at least once, in order.
    assert [e.number for e in await backend.receive("t", 2)] == [3]
    assert await backend.receive("t", 3) == []
    assert await backend.receive("other", 0) == []

    async with asyncio.timeout(DEADLINE):
        waiting = asyncio.create_task(backend.receive("t", 3, block=DEADLINE))
        await asyncio.sleep(0.05)
        await backend.send("t", CancelMessage(type="cancel", reason=None), by="ann")
        woken = await waiting
    assert [(e.number, e.command.type) for e in woken] == [(4, "cancel")]


async def test_the_first_decision_on_a_call_wins_whoever_sends_it(backend: TaskBackend) -> None:
    approve = ApproveMessage(type="approve", call_id="c1")
    reject = RejectMessage(type="reject", call_id="c1", reason="no")
    assert await backend.send("t", approve, by="ann", key="ann-1") == 1
    with pytest.raises(CallDecidedError) as decided:
        await backend.send("t", reject, by="bob", key="bob-1")  # another server, say
    assert (decided.value.call_id, decided.value.number) == ("c1", 1)
    with pytest.raises(CallDecidedError):
        await backend.send("t", approve, by="bob")
    assert await backend.send("t", approve, by="ann", key="ann-1") == 1  # ann's resend

    # Twenty at once on another call: exactly one is accepted.
    second = ApproveMessage(type="approve", call_id="c2")
    results = await asyncio.gather(
        *(backend.send("t", second, by=f"u{i}", key=f"k{i}") for i in range(20)),
        return_exceptions=True,
    )
    assert sorted(r for r in results if isinstance(r, int)) == [2]
    assert sum(isinstance(r, CallDecidedError) for r in results) == 19
    assert [e.command for e in await backend.receive("t", 0)] == [approve, second]
    assert await backend.send("other", reject, by="bob") == 1  # calls are per task


# -- one reader per watched task per server (tasks/shared.py) ----------------------------


class CountingReads:
    """A backend, counting the reads of its logs."""

    def __init__(self, inner: TaskBackend) -> None:
        self.inner = inner
        self.reads = 0

    async def read_after(
        self, task_id: str, after: int, limit: int = 500, block: float | None = None
    ) -> list[LogEntry]:
        self.reads += 1
        return await self.inner.read_after(task_id, after, limit, block)

    async def read_many(
        self, after: Mapping[str, int], limit: int = 500, block: float | None = None
    ) -> dict[str, list[LogEntry]]:
        self.reads += 1
        return await self.inner.read_many(after, limit, block)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def redis_xreads(backend: TaskBackend) -> int:
    """XREAD calls the Redis server has answered so far (0 for another backend)."""
    if not isinstance(backend, RedisBackend):
        return 0
    stats = await backend.client.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


def result_message(seq: int) -> bytes:
    return json.dumps({"type": "result", "seq": seq, "data": {"status": "succeeded"}}).encode()


async def _watch(task: Any, after: int = 0) -> list[int]:
    return [e.seq async for batch in task.subscribe(after).batches() for e in batch]


async def _mirror(backend: TaskBackend, limits: HubLimits | None = None) -> tuple[Any, Any]:
    """A server's view of task "t" on ``backend``: its hub, and the task's mirror."""
    shared = SharedTasks(TaskHub(AgentPool(demo_agents()), limits), backend, None)  # type: ignore[arg-type]
    await backend.create(record("t", 1.0))
    return shared, await shared.find("t")


async def test_many_viewers_of_a_task_on_one_server_cost_one_reader(backend: TaskBackend) -> None:
    counting = CountingReads(backend)
    await backend.append_many("t", 1, [message(s) for s in range(1, 11)])
    limits = HubLimits(max_subscribers_per_task=2000)
    xreads_before = await redis_xreads(backend)
    shared, mirror = await _mirror(counting, limits)  # type: ignore[arg-type]
    viewers = [asyncio.create_task(_watch(mirror)) for _ in range(1000)]
    late = asyncio.create_task(_watch(mirror, after=5))
    await asyncio.sleep(0.05)
    for seq in range(11, 40):
        await backend.append("t", seq, message(seq))
        await asyncio.sleep(0)
    await backend.append("t", 40, result_message(40))
    async with asyncio.timeout(DEADLINE * 3):
        seen = await asyncio.gather(*viewers)
        assert await late == list(range(6, 41))
    assert all(s == list(range(1, 41)) for s in seen)  # no gap, no duplicate, each of them
    # One reader for them all: at most one read per append (and the first), not 1,000s.
    reads = counting.reads
    assert reads <= 32
    if isinstance(backend, RedisBackend):  # as Redis itself counts them
        assert await redis_xreads(backend) - xreads_before == reads
    await shared.close()


async def test_a_viewer_older_than_the_servers_window_reads_the_rest_from_the_backend(
    backend: TaskBackend,
) -> None:
    await backend.append_many("t", 1, [message(s) for s in range(1, 31)])
    limits = HubLimits(max_events_in_memory=5)
    shared, mirror = await _mirror(backend, limits)
    ahead = asyncio.create_task(_watch(mirror, after=20))
    await asyncio.sleep(0.05)
    assert mirror.log.first_seq > 20  # memory holds only the newest
    behind = asyncio.create_task(_watch(mirror, after=0))  # older than the window
    await backend.append("t", 31, result_message(31))
    async with asyncio.timeout(DEADLINE):
        assert await behind == list(range(1, 32))
        assert await ahead == list(range(21, 32))
    await shared.close()


# -- Redis only ---------------------------------------------------------------------------


@pytest.fixture
def redis_backend(
    redis_server: RedisServer, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Iterator[RedisBackend]:
    made = RedisBackend.from_url(redis_server.url, prefix=fresh_prefix())
    yield made
    jp_asyncio_loop.run_until_complete(made.close())


async def test_the_layout_one_stream_per_task_with_ids_from_seq_under_the_prefix(
    redis_backend: RedisBackend,
) -> None:
    backend, keys = redis_backend, redis_backend.keys
    await backend.create(record("a", 10.0))
    await backend.append_many("a", 1, [message(1), message(2)])
    await backend.send("a", PauseMessage(type="pause"), by=None)
    client = backend.client
    stream = await client.xrange(keys.events("a"))
    assert [entry_id for entry_id, _ in stream] == [b"1-0", b"2-0"]
    assert stream[0][1] == {b"m": message(1)}
    assert [i for i, _ in await client.xrange(keys.control("a"))] == [b"1-0"]
    assert await client.zrange(keys.index, 0, -1, withscores=True) == [(b"a", 10.0)]
    names = {k.decode() async for k in client.scan_iter(match="*")}
    mine = {k for k in names if k.startswith(keys.prefix)}
    assert mine == {keys.record("a"), keys.events("a"), keys.control("a"), keys.index}


async def test_a_cap_on_events_per_task_trims_each_stream_approximately(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend.from_url(
        redis_server.url, prefix=fresh_prefix(), max_events_per_task=100
    )
    try:
        for first in range(1, 1001, 50):
            await backend.append_many("t", first, [message(s) for s in range(first, first + 50)])
        length = await backend.client.xlen(backend.keys.events("t"))
        assert 100 <= length < 1000  # MAXLEN ~ trims whole nodes: at least the cap is kept
        first_kept = await backend.first_seq("t")
        assert first_kept == 1001 - length and await backend.last_seq("t") == 1000
        with pytest.raises(EventsTrimmedError):
            await backend.read_after("t", 0)
    finally:
        await backend.close()


async def test_a_task_whose_worker_stops_renewing_is_claimed_by_another(
    redis_server: RedisServer,
) -> None:
    prefix = fresh_prefix()
    client = connect(redis_server.url)
    queue = RedisWorkQueue(client, prefix, lease_seconds=0.5)
    try:
        await queue.enqueue("task-1")
        await queue.enqueue("task-2")
        a = await queue.take("worker-a")
        assert a is not None and (a.task_id, a.deliveries) == ("task-1", 1)
        assert await queue.renew(a)

        # B gets the next queued task, not A's (its lease is alive).
        b = await queue.take("worker-b")
        assert b is not None and b.task_id == "task-2"
        assert await queue.done(b)

        # A dies (stops renewing): once its lease lapses, B takes task-1 over.
        claimed = None
        async with asyncio.timeout(DEADLINE):
            while claimed is None:
                claimed = await queue.take("worker-b", block=0.1)
        assert (claimed.task_id, claimed.worker, claimed.deliveries) == ("task-1", "worker-b", 2)
        assert claimed.entry_id == a.entry_id
        # A comes back: it lost the lease, so it must stop; it cannot end B's task.
        assert not await queue.renew(a)
        assert not await queue.done(a)
        assert await queue.renew(claimed)
        assert await queue.done(claimed)
        assert await queue.take("worker-c") is None
        assert await client.xlen(queue.keys.queue) == 0
    finally:
        await client.aclose()


async def test_finished_streams_survive_a_redis_restart_with_persistence(
    tmp_path: Path,
) -> None:
    server = RedisServer(redis_executable(), tmp_path / "redis", appendonly=True).start()
    try:
        backend = RedisBackend.from_url(server.url)
        done = record("a", 5.0, status="succeeded", result={"status": "succeeded", "output": "4"})
        await backend.create(done)
        await backend.append_many("a", 1, [message(1), message(2), message(3)])
        await backend.close()
        server.stop()
        server.start()
        backend = RedisBackend.from_url(server.url)
        assert await backend.get("a") == done
        entries = await backend.read_after("a", 0)
        assert [(e.seq, e.data) for e in entries] == [(s, message(s)) for s in (1, 2, 3)]
        with pytest.raises(DuplicateSeqError):
            await backend.append("a", 3, message(3))
        assert [r["task_id"] for r in (await backend.page()).records] == ["a"]
        await backend.close()
    finally:
        server.stop()


async def test_redis_going_away_mid_read_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    server = RedisServer(redis_executable(), tmp_path / "redis").start()
    backend = RedisBackend.from_url(server.url)
    try:
        await backend.append("t", 1, message(1))
        reading = asyncio.create_task(backend.read_after("t", 1, block=60.0))
        control = asyncio.create_task(backend.receive("t", 0, block=60.0))
        await asyncio.sleep(0.1)  # both block in XREAD now
        server.kill()
        async with asyncio.timeout(DEADLINE):
            with pytest.raises(BackendUnavailableError, match="Redis"):
                await reading
            with pytest.raises(BackendUnavailableError):
                await control
            with pytest.raises(BackendUnavailableError):
                await backend.get("t")
    finally:
        server.kill()
        await backend.close()


def test_the_default_install_needs_no_redis() -> None:
    """Only redis_backend.py imports redis: the package, the hub and the interfaces not."""
    import subprocess
    import sys

    code = (
        "import sys, agentkit_jupyter, agentkit_jupyter.tasks, agentkit_jupyter.tasks.backend, "
        "agentkit_jupyter.tasks.memory_backend, "
        "agentkit_jupyter.tasks.shared, agentkit_jupyter.tasks.worker, "
        "agentkit_jupyter.server.app; "
        "print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_redis_server_fails_on_ci_and_skips_elsewhere() -> None:
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        require_redis_server(None, on_ci=True)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_redis_server(None, on_ci=False)
    assert require_redis_server("/usr/bin/redis-server", on_ci=True) == "/usr/bin/redis-server"


async def test_a_redis_user_confined_to_its_prefix_can_do_everything_there_and_nothing_else(
    redis_server: RedisServer,
) -> None:
    """The JupyterHub example's ACL (docs/scale-out.md): every key a script touches is
    declared, so key patterns confine a user to its prefix, scripts included."""
    prefix = fresh_prefix()
    user, password = f"user-{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = connect(redis_server.url)
    await admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"{prefix}*"],
        channels=["*"],
        commands=["+@all", "-@dangerous"],
    )
    url = redis_server.url.replace("redis://", f"redis://{user}:{password}@")
    mine = RedisBackend(connect(url), prefix=prefix)
    queue = RedisWorkQueue(mine.client, prefix, lease_seconds=30)
    other = RedisBackend(mine.client, prefix=fresh_prefix())
    try:
        await mine.create(record("a", 1.0))
        await mine.update("a", {"status": "succeeded"})
        await mine.fence("a", 1)
        await mine.append_many("a", 1, [message(1), message(2)], writer=1)
        assert [e.seq for e in await mine.read_after("a", 0)] == [1, 2]
        await mine.send("a", ApproveMessage(type="approve", call_id="c"), by=None, key="k")
        assert len(await mine.receive("a", 0)) == 1
        assert [r["task_id"] for r in (await mine.page()).records] == ["a"]
        await queue.enqueue("a")
        lease = await queue.take("w")
        assert lease is not None and await queue.renew(lease) and await queue.done(lease)
        assert await mine.apply_retention(max_count=0) == ["a"]
        with pytest.raises(NoPermissionError):
            await other.create(record("b", 1.0))
        with pytest.raises(NoPermissionError):
            await other.read_after("b", 0)
    finally:
        await mine.close()
        await admin.acl_deluser(user)
        await admin.aclose()
