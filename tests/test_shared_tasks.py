"""Tasks on a real Redis, in one process: two hubs (two "servers") share them through
``SharedTasks``, a ``Worker`` runs them. The same code the server and the
``agentkit-jupyter worker`` command run; tests/test_scale_out.py runs it across
processes."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis_support import RedisServer
from support import test_agents

from agentkit_jupyter.core import AgentPool
from agentkit_jupyter.core.control import AlreadyDecidedError
from agentkit_jupyter.protocol import ApproveMessage, PauseMessage, ResumeMessage, TaskStatus
from agentkit_jupyter.tasks import TaskHub
from agentkit_jupyter.tasks import worker as worker_module
from agentkit_jupyter.tasks.backend import BackendUnavailableError
from agentkit_jupyter.tasks.hub import Task
from agentkit_jupyter.tasks.log import LogEntry
from agentkit_jupyter.tasks.memory_backend import MemoryBackend
from agentkit_jupyter.tasks.redis_backend import RedisBackend, RedisWorkQueue, connect
from agentkit_jupyter.tasks.shared import SharedTasks
from agentkit_jupyter.tasks.worker import BackendWriter, Worker

# Generous: these bound a hang, they do not measure speed.
DEADLINE = 20.0


@dataclass
class Cluster:
    a: SharedTasks
    b: SharedTasks
    worker: Worker
    backend: RedisBackend
    prefix: str
    url: str


@pytest.fixture
def cluster(
    redis_server: RedisServer, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Iterator[Cluster]:
    prefix = f"agentkit-test-{secrets.token_hex(4)}:"
    clients = [connect(redis_server.url) for _ in range(3)]
    pool = AgentPool(test_agents())
    sides = []
    for client in clients[:2]:
        hub = TaskHub(pool)
        sides.append(
            SharedTasks(hub, RedisBackend(client, prefix), RedisWorkQueue(client, prefix, 3.0))
        )
    backend = RedisBackend(clients[2], prefix)
    worker = Worker(backend, RedisWorkQueue(clients[2], prefix, 3.0), pool, "w1", lease_seconds=3)

    async def start() -> None:
        worker.start()

    async def stop() -> None:
        await worker.stop()
        for side in sides:
            await side.hub.shutdown()
            await side.close()
        for client in clients:
            await client.aclose()

    jp_asyncio_loop.run_until_complete(start())
    yield Cluster(sides[0], sides[1], worker, backend, prefix, redis_server.url)
    jp_asyncio_loop.run_until_complete(stop())


async def messages(task: Task, after: int = 0) -> list[dict[str, Any]]:
    """Every message of the task's log, as a subscriber gets them, to the result."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(DEADLINE):
        async for batch in task.subscribe(after).batches():
            got += [json.loads(entry.data) for entry in batch]
    return got


async def wait_for(task: Task, status: TaskStatus) -> None:
    async with asyncio.timeout(DEADLINE):
        while task.status is not status:
            await asyncio.sleep(0.01)


async def test_a_task_created_on_a_runs_on_the_worker_and_both_servers_see_it_all(
    cluster: Cluster,
) -> None:
    task = await cluster.a.create_task("steps", "go")
    there = await cluster.b.find(task.task_id)
    assert there is not None and there is not task
    on_a, on_b = await asyncio.gather(messages(task), messages(there))
    assert [m["seq"] for m in on_a] == list(range(1, len(on_a) + 1))
    assert on_a == on_b  # the same bytes, parsed: no gap, no duplicate, same order
    assert on_a[-1]["type"] == "result" and on_a[-1]["data"]["status"] == "succeeded"
    assert task.status is there.status is TaskStatus.SUCCEEDED
    record = await cluster.backend.get(task.task_id)
    assert record is not None and record["status"] == "succeeded"
    assert record["last_seq"] == on_a[-1]["seq"]
    # Listed on B from the backend's records, and a late viewer replays it all.
    assert task.task_id in [r["task_id"] for r in await cluster.b.records()]
    assert await messages(there, after=3) == on_a[3:]


async def test_a_cancel_from_b_ends_the_run_everywhere(cluster: Cluster) -> None:
    task = await cluster.a.create_task("hang-tool", "go")
    await wait_for(task, TaskStatus.RUNNING)
    there = await cluster.b.find(task.task_id)
    assert there is not None
    assert there.cancel("from B")
    async with asyncio.timeout(DEADLINE):
        result = await task.wait()
    assert result["status"] == "cancelled" and result["reason"] == "from B"
    assert (await there.wait())["status"] == "cancelled"


async def test_an_approval_is_applied_once_whichever_server_sends_it(cluster: Cluster) -> None:
    task = await cluster.a.create_task("approve-me", "ledger")
    await wait_for(task, TaskStatus.WAITING)
    there = await cluster.b.find(task.task_id)
    assert there is not None
    await wait_for(there, TaskStatus.WAITING)
    call_id = task.control.pending_list()[0]["call_id"]
    approve = ApproveMessage(type="approve", call_id=call_id)
    outcomes = await asyncio.gather(
        there.send_command(approve, "bob"),
        task.send_command(approve, "alice"),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["AlreadyDecidedError", "NoneType"]
    with pytest.raises(AlreadyDecidedError):
        await there.send_command(approve, "bob")
    got = await messages(task)
    kinds = [m["data"].get("event_type") for m in got if m["type"] == "step"]
    assert kinds.count("approval_decided") == 1 and kinds.count("observation") == 1
    assert got[-1]["data"]["status"] == "succeeded"


async def test_pause_and_resume_from_the_other_server(cluster: Cluster) -> None:
    task = await cluster.a.create_task("paced", "go")
    await wait_for(task, TaskStatus.RUNNING)
    there = await cluster.b.find(task.task_id)
    assert there is not None
    await there.send_command(PauseMessage(type="pause"), "bob")
    await wait_for(task, TaskStatus.PAUSED)
    await task.send_command(ResumeMessage(type="resume"), "alice")
    await wait_for(there, TaskStatus.RUNNING)
    there.cancel("enough")
    assert (await task.wait())["status"] == "cancelled"


async def test_a_task_whose_worker_vanished_is_taken_over_and_ends_interrupted(
    cluster: Cluster,
) -> None:
    await cluster.worker.stop()  # the fixture's worker takes nothing from here on
    client = connect(cluster.url)
    queue = RedisWorkQueue(client, cluster.prefix, lease_seconds=1.0)
    backend = RedisBackend(client, cluster.prefix)
    pool = AgentPool(test_agents())
    first = Worker(backend, queue, pool, "doomed", lease_seconds=1.0)
    first.start()
    task = await cluster.a.create_task("approve-me", "ledger")
    await wait_for(task, TaskStatus.WAITING)
    # The first worker stops renewing, as if killed: nothing more from it.
    for job in list(first._runs):
        job.cancel()
    if first._loop_job is not None:
        first._loop_job.cancel()
    second = Worker(backend, queue, pool, "heir", lease_seconds=1.0)
    second.start()
    try:
        async with asyncio.timeout(DEADLINE):
            result = await task.wait()
        assert result["status"] == "interrupted"
        assert result["error"]["code"] == "worker_lost"
        assert [p["tool"] for p in result["pending_approvals"]] == ["guarded_write"]
        got = await messages(task)
        assert [m["seq"] for m in got] == list(range(1, len(got) + 1))
        record = await backend.get(task.task_id)
        assert record is not None and record["status"] == "interrupted"
    finally:
        await second.stop()
        await first.stop()
        await client.aclose()


async def test_a_running_task_taken_over_goes_on_in_its_continuation(cluster: Cluster) -> None:
    await cluster.worker.stop()
    client = connect(cluster.url)
    queue = RedisWorkQueue(client, cluster.prefix, lease_seconds=1.0)
    backend = RedisBackend(client, cluster.prefix)
    pool = AgentPool(test_agents())
    first = Worker(backend, queue, pool, "doomed", lease_seconds=1.0)
    first.start()
    task = await cluster.a.create_task("steps", "go")
    async with asyncio.timeout(DEADLINE):
        while not any(
            json.loads(e.data)["data"].get("event_type") == "observation"
            for e in task.log.read_after(0, 1000)
        ):
            await asyncio.sleep(0.005)
    await first.stop()  # as if killed: its runs end without a word to Redis
    second = Worker(backend, queue, pool, "heir", lease_seconds=1.0)
    second.start()
    try:
        async with asyncio.timeout(DEADLINE):
            result = await task.wait()
        assert result["status"] == "interrupted" and result["error"]["code"] == "worker_lost"
        assert task.resumed_by is not None
        child = await cluster.b.find(task.resumed_by)
        assert child is not None and child.parent_id == task.task_id
        assert child.fork_kind == "resume"
        got = await messages(child)
        assert got[-1]["data"]["status"] == "succeeded", got[-1]
        copied = [m for m in got if m["type"] == "step" and m["data"].get("copied")]
        parent_steps = [m for m in await messages(task) if m["type"] == "step"]
        # The completed steps are there again, marked copied (none run twice).
        done_calls = [
            m["data"]["data"]["call_id"]
            for m in parent_steps
            if m["data"]["event_type"] == "observation"
        ]
        copied_calls = [
            m["data"]["data"]["call_id"] for m in copied if m["data"]["event_type"] == "observation"
        ]
        assert done_calls and copied_calls == done_calls
        record = await backend.get(task.task_id)
        assert record is not None and record["resumed_by"] == child.task_id
    finally:
        await second.stop()
        await client.aclose()


async def test_a_task_whose_worker_died_before_logging_anything_runs_from_the_start(
    cluster: Cluster,
) -> None:
    await cluster.worker.stop()
    client = connect(cluster.url)
    queue = RedisWorkQueue(client, cluster.prefix, lease_seconds=1.0)
    backend = RedisBackend(client, cluster.prefix)
    task = await cluster.a.create_task("echo", "hi")
    ghost = await queue.take("ghost", block=DEADLINE)  # takes it, then "dies"
    assert ghost is not None and ghost.task_id == task.task_id
    heir = Worker(backend, queue, AgentPool(test_agents()), "heir", lease_seconds=1.0)
    heir.start()
    try:
        async with asyncio.timeout(DEADLINE):
            result = await task.wait()
        assert result["status"] == "succeeded"
        assert not await queue.renew(ghost)  # the ghost lost it
    finally:
        await heir.stop()
        await client.aclose()


async def test_an_unknown_id_is_none_and_a_deleted_task_goes_everywhere(cluster: Cluster) -> None:
    assert await cluster.b.find("no-such-task") is None
    task = await cluster.a.create_task("echo", "hi")
    await task.wait()
    await cluster.b.delete(task.task_id)
    assert await cluster.backend.get(task.task_id) is None
    assert await cluster.b.find(task.task_id) is None


def test_the_worker_command_refuses_bad_arguments_clearly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agentkit_jupyter.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["worker", "--backend", "http://127.0.0.1:1", "--agents", "support:test_agents"])
    assert exited.value.code == 2 and "redis://" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["worker", "--backend", "redis://127.0.0.1:1/0"])
    assert "no agents" in capsys.readouterr().err
    assert main(["worker", "--backend", "redis://127.0.0.1:1/0", "--agents", "nope.nope:x"]) == 2
    assert "cannot import 'nope.nope:x'" in capsys.readouterr().err


class _Unreachable:
    """A backend whose appends fail while ``away`` (Redis down, for the writer)."""

    def __init__(self, inner: RedisBackend) -> None:
        self.inner = inner
        self.away = True
        self.refused = 0

    async def append_many(self, *args: Any, **kwargs: Any) -> None:
        if self.away:
            self.refused += 1
            raise BackendUnavailableError("Redis cannot be reached (test)")
        await self.inner.append_many(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_run_whose_events_cannot_be_written_is_stopped_at_a_bound_and_loses_none(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis away for long: the worker holds what the run logs, up to a bound, then
    cancels the run (not an unbounded buffer); once Redis is back, every event held
    reaches it in order, the cancellation and its reason last."""
    monkeypatch.setattr(worker_module, "MAX_UNSENT_EVENTS", 40)
    await cluster.worker.stop()  # this test's worker writes through the failing backend
    unreachable = _Unreachable(cluster.backend)
    client = connect(cluster.url)
    queue = RedisWorkQueue(client, cluster.prefix, 3.0)
    worker = Worker(unreachable, queue, AgentPool(test_agents()), "w-away", lease_seconds=3)  # type: ignore[arg-type]
    worker.start()
    try:
        task = await cluster.a.create_task("firehose", "go")
        async with asyncio.timeout(DEADLINE):
            while not (task.task_id in worker.running and worker.running[task.task_id].finished):
                await asyncio.sleep(0.01)
            while unreachable.refused == 0:  # its writer has tried, and was refused
                await asyncio.sleep(0.01)
        ran = worker.running[task.task_id]
        assert ran.status is TaskStatus.CANCELLED
        held = ran.log.last_seq
        assert held < 100  # stopped near the bound, far from the run's 800-odd events
        unreachable.away = False
        got = await messages(task)
        assert [m["seq"] for m in got] == list(range(1, held + 1))
        assert got[-1]["type"] == "result" and got[-1]["data"]["status"] == "cancelled"
        assert got[-1]["data"]["reason"] == worker_module.BACKEND_AWAY_REASON
    finally:
        await worker.stop()
        await client.aclose()


class _LosesAnAnswer:
    """A backend whose first append lands but whose answer is lost (a connection cut
    right after Redis ran it)."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.lost_one = False

    async def append_many(self, *args: Any, **kwargs: Any) -> None:
        await self.inner.append_many(*args, **kwargs)
        if not self.lost_one:
            self.lost_one = True
            raise BackendUnavailableError("the answer was lost (test)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_retried_append_that_had_landed_sends_only_what_came_after_it() -> None:
    """The retry after a lost answer carries more entries than the try that landed
    (the run went on meanwhile): the landed ones are not sent twice, the rest are
    sent, in order, and the writer goes on."""
    backend = _LosesAnAnswer()
    writer = BackendWriter(backend, "t", None)  # type: ignore[arg-type]
    data = [json.dumps({"type": "step", "seq": n}).encode() for n in range(1, 6)]
    writer.appended(LogEntry(1, data[0]))
    writer.appended(LogEntry(2, data[1]))
    async with asyncio.timeout(DEADLINE):
        while not backend.lost_one:
            await asyncio.sleep(0.01)
        for n in (3, 4, 5):  # while the writer waits to retry
            writer.appended(LogEntry(n, data[n - 1]))
        await writer.drain()
    assert writer.lost is None
    assert [e.data for e in await backend.inner.read_after("t", 0)] == data
    await writer.close()


async def test_hundreds_of_watched_tasks_hold_a_few_connections_not_one_each(
    cluster: Cluster,
) -> None:
    """A server watching many live tasks keeps one read in flight for all of them: a
    client allowed 10 connections watches 150 tasks and still answers everything."""
    await cluster.worker.stop()  # they stay queued: watched, never ending
    client = connect(cluster.url, max_connections=10)
    side = SharedTasks(
        TaskHub(AgentPool(test_agents())),
        RedisBackend(client, cluster.prefix),
        RedisWorkQueue(client, cluster.prefix, 3.0),
    )
    try:
        created = [await side.create_task("echo", f"q{n}") for n in range(150)]
        await asyncio.sleep(0.3)  # the reader's read is in flight
        listed = {r["task_id"] for r in await side.records()}
        assert {t.task_id for t in created} <= listed
        # A command to one of them, and a mirror's stream still read: appended by
        # another client, it reaches the mirror through the one shared read.
        last = created[-1]
        await cluster.backend.append(last.task_id, 1, b'{"type":"step","seq":1,"data":{}}')
        async with asyncio.timeout(DEADLINE):
            while last.log.last_seq < 1:
                await asyncio.sleep(0.01)
        info = await client.connection_pool.get_connection()  # one is still free
        await client.connection_pool.release(info)
    finally:
        await side.close()
        await client.aclose()
