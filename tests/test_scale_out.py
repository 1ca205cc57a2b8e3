"""Two real Jupyter servers and worker processes on one real Redis (docs/scale-out.md):
a task created through A is watched through A and B, cancelled and approved through
B; a worker killed mid-run has its task taken over by another; finished tasks replay
after Redis restarts (append-only file on). Deadlines are generous: they bound hangs,
they do not measure speed."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import read_until_result
from redis_support import RedisServer, redis_executable
from server_process import TESTS_DIR, ServerProcess
from test_store import create, get_task
from websockets.asyncio.client import ClientConnection, connect

from agentkit_jupyter.tasks.notebook_runs import pack_run_log

LEASE_SECONDS = 2.0
DEADLINE = 60.0


class WorkerProcess:
    """``agentkit-jupyter worker`` (``python -m agentkit_jupyter worker``) in its own process."""

    def __init__(self, url: str, prefix: str, name: str, log_dir: Path, *options: str) -> None:
        self.log_path = log_dir / f"worker-{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        }
        command = [
            sys.executable, "-m", "agentkit_jupyter", "worker",
            "--backend", url, "--prefix", prefix, "--name", name,
            "--agents", "support:test_agents", "--lease-seconds", str(LEASE_SECONDS),
            *options,
        ]  # fmt: skip
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Cluster:
    redis: RedisServer
    a: ServerProcess
    b: ServerProcess
    worker: WorkerProcess
    prefix: str
    home: Path

    def server(self, name: str) -> ServerProcess:
        return ServerProcess(
            self.home / name,
            f"--AgentKitExtension.backend_url={self.redis.url}",
            f"--AgentKitExtension.backend_prefix={self.prefix}",
            "--AgentKitExtension.run_tasks=False",
            f"--AgentKitExtension.lease_seconds={LEASE_SECONDS}",
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("scale-out")
    redis = RedisServer(redis_executable(), home / "redis", appendonly=True).start()
    prefix = f"agentkit-test-{secrets.token_hex(4)}:"
    started: list[ServerProcess] = []
    worker = WorkerProcess(redis.url, prefix, "w1", home)
    made = Cluster(redis, None, None, worker, prefix, home)  # type: ignore[arg-type]
    try:
        made.a = made.server("a").start()
        started.append(made.a)
        made.b = made.server("b").start()
        started.append(made.b)
        yield made
    finally:
        for server in started:
            server.stop()
        made.worker.stop()
        redis.stop()
        shutil.rmtree(home / "redis", ignore_errors=True)


def ws_connect(server: ServerProcess, task_id: str, after: int = 0) -> Any:
    return connect(server.ws(task_id, after), additional_headers=server.headers)


def record(server: ServerProcess, task_id: str) -> dict[str, Any]:
    response = httpx.get(
        server.api(f"tasks/{task_id}"), params={"limit": "0"}, headers=server.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_status(server: ServerProcess, task_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while True:
        found = record(server, task_id)
        if found["status"] in statuses:
            return found
        assert time.monotonic() < deadline, found["status"]
        time.sleep(0.05)


def logged(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log's messages (steps and the result), without the connection's own."""
    return [m for m in messages if m["type"] in ("step", "result")]


def assert_whole(messages: list[dict[str, Any]]) -> None:
    """seq 1, 2, 3, ... to the result: no gap, no duplicate."""
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[-1]["type"] == "result"


async def watch(server: ServerProcess, task_id: str) -> list[dict[str, Any]]:
    async with ws_connect(server, task_id) as ws:
        return logged(await read_until_result(ws, DEADLINE))


async def first_steps(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The first ``count`` step messages of a stream (the run goes on)."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(DEADLINE):
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "step":
                seen.append(message)
            if len(seen) >= count:
                break
    return seen


async def test_a_run_created_on_a_is_watched_on_a_and_b_alike(cluster: Cluster) -> None:
    task_id = create(cluster.a, "steps", "go")
    on_a, on_b = await asyncio.gather(watch(cluster.a, task_id), watch(cluster.b, task_id))
    assert_whole(on_a)
    assert on_a == on_b
    assert on_a[-1]["data"]["status"] == "succeeded"
    listed = httpx.get(cluster.b.api("tasks"), headers=cluster.b.headers).json()
    assert task_id in [t["task_id"] for t in listed["tasks"]]
    assert wait_status(cluster.b, task_id, "succeeded")["result"]["status"] == "succeeded"


async def test_a_cancel_sent_through_b_ends_the_run_for_viewers_on_a(cluster: Cluster) -> None:
    task_id = create(cluster.a, "hang-tool", "go")
    async with ws_connect(cluster.a, task_id) as on_a, ws_connect(cluster.b, task_id) as on_b:
        await _until_step(on_a, "tool_call")
        await on_b.send(json.dumps({"type": "cancel", "reason": "from B"}))
        got_a = await read_until_result(on_a, DEADLINE)
        got_b = logged(await read_until_result(on_b, DEADLINE))
    assert got_a[-1]["data"]["status"] == "cancelled"
    assert got_a[-1]["data"]["reason"] == "from B"
    assert_whole(got_b)
    assert got_b[-1] == got_a[-1]


async def _until_step(ws: ClientConnection, kind: str) -> None:
    async with asyncio.timeout(DEADLINE):
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "step" and message["data"]["event_type"] == kind:
                return


async def test_an_approval_through_b_runs_the_tool_once(cluster: Cluster) -> None:
    task_id = create(cluster.a, "approve-me", "ledger")
    waiting = wait_status(cluster.b, task_id, "waiting")
    call_id = waiting["pending_approvals"][0]["call_id"]
    url = f"tasks/{task_id}/approvals/{call_id}"

    def approve(server: ServerProcess) -> httpx.Response:
        return httpx.post(server.api(url), json={"decision": "approve"}, headers=server.headers)

    # Through both servers at once: one is accepted, the other refused (decided
    # already, or the run already ended with the first decision).
    answers = await asyncio.gather(
        asyncio.to_thread(approve, cluster.b), asyncio.to_thread(approve, cluster.a)
    )
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 409)
    assert refused.json()["error"]["code"] in ("already_decided", "task_finished")
    on_a = await watch(cluster.a, task_id)
    assert_whole(on_a)
    kinds = [m["data"]["event_type"] for m in on_a if m["type"] == "step"]
    assert kinds.count("approval_decided") == 1 and kinds.count("observation") == 1
    assert on_a[-1]["data"]["status"] == "succeeded"


async def test_a_killed_worker_s_run_is_taken_over_resumed_and_nothing_is_lost(
    cluster: Cluster,
) -> None:
    task_id = create(cluster.a, "paced", "go")
    async with ws_connect(cluster.b, task_id) as on_b:
        seen = await first_steps(on_b, 10)
        cluster.worker.stop(signal.SIGKILL)
        heir = WorkerProcess(cluster.redis.url, cluster.prefix, "w2", cluster.home)
        cluster.worker = heir  # the fixture stops it; later tests use it
        rest = logged(await read_until_result(on_b, DEADLINE))
    whole = seen + rest
    assert_whole(whole)
    result = whole[-1]["data"]
    assert result["status"] == "interrupted", result
    assert result["error"]["code"] == "worker_lost"
    # Everything the first worker logged is still there, on the other server too.
    parent = get_task(cluster.a, task_id)
    assert logged(parent["events"]) == whole
    # The run goes on in its continuation, from the last completed step.
    child_id = parent["resumed_by"]
    assert child_id
    child = await watch(cluster.a, child_id)
    assert_whole(child)
    assert child[-1]["data"]["status"] == "succeeded", child[-1]
    copied = [m for m in child if m["type"] == "step" and m["data"].get("copied")]
    assert copied and copied[0]["data"]["event_type"] == whole[0]["data"]["event_type"]
    done = [
        m["data"]["data"]["call_id"]
        for m in whole
        if m.get("data", {}).get("event_type") == "observation"
    ]
    again = [
        m["data"]["data"]["call_id"] for m in copied if m["data"]["event_type"] == "observation"
    ]
    assert again == done  # no completed tool call runs twice
    assert record(cluster.b, child_id)["parent_id"] == task_id


async def test_finished_tasks_replay_after_redis_restarts(cluster: Cluster) -> None:
    task_id = create(cluster.a, "steps", "before the restart")
    before = await watch(cluster.a, task_id)
    cluster.redis.stop()  # SIGTERM: the append-only file is complete
    cluster.redis.start()
    fresh = cluster.server("c").start()
    try:
        after = await watch(fresh, task_id)
        assert after == before
        listed = httpx.get(fresh.api("tasks"), headers=fresh.headers).json()
        assert task_id in [t["task_id"] for t in listed["tasks"]]
    finally:
        fresh.stop()


async def test_a_sigtermed_worker_hands_its_run_over_at_once_not_after_its_lease(
    cluster: Cluster,
) -> None:
    """A worker drained for a deploy (SIGTERM): its run gets the grace period, then
    ends interrupted with its events kept and its continuation queued, long before the
    lease (30 s here) would have let another worker take it over."""
    cluster.worker.stop()
    leaving = WorkerProcess(
        cluster.redis.url, cluster.prefix, "leaving", cluster.home,
        "--lease-seconds", "30", "--grace-seconds", "0.5",
    )  # fmt: skip
    cluster.worker = leaving
    task_id = create(cluster.a, "paced", "go")
    async with ws_connect(cluster.b, task_id) as on_b:
        seen = await first_steps(on_b, 10)
        cluster.worker = WorkerProcess(cluster.redis.url, cluster.prefix, "heir", cluster.home)
        leaving.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):  # well inside the 30 s lease
            rest = logged(await read_until_result(on_b, DEADLINE))
    assert leaving.proc.wait(15) == 0, leaving.log()
    leaving.stop()
    whole = seen + rest
    assert_whole(whole)
    result = whole[-1]["data"]
    assert result["status"] == "interrupted" and result["error"]["code"] == "worker_lost"
    assert "shutting down" in result["error"]["message"]
    # Stopped at a step's end (a pause), so no call is left to ask about again.
    assert whole[-2]["data"]["event_type"] == "paused", whole[-3:]
    child_id = record(cluster.a, task_id)["resumed_by"]
    assert child_id
    child = await watch(cluster.b, child_id)
    assert_whole(child)
    assert child[-1]["data"]["status"] == "succeeded", child[-1]
    copied = [m for m in child if m["type"] == "step" and m["data"].get("copied")]
    done = [m for m in whole if m.get("data", {}).get("event_type") == "observation"]
    assert len([m for m in copied if m["data"]["event_type"] == "observation"]) == len(done)


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.api(path), json=body, headers=server.headers, timeout=30)


async def test_a_fork_through_b_of_a_run_through_a_is_planned_and_run_by_a_worker(
    cluster: Cluster,
) -> None:
    task_id = create(cluster.a, "steps", "go")
    parent = await watch(cluster.a, task_id)
    observations = [
        m for m in parent if m["type"] == "step" and m["data"]["event_type"] == "observation"
    ]
    at = observations[1]["seq"]
    answer = post(cluster.b, f"tasks/{task_id}/fork", {"at_seq": at, "edit": {"observation": "7"}})
    assert answer.status_code == 201, answer.text
    child_id = answer.json()["task_id"]
    child = await watch(cluster.a, child_id)
    assert_whole(child)
    assert child[-1]["data"]["status"] == "succeeded"
    copied = [m for m in child if m["type"] == "step" and m["data"].get("copied")]
    assert [m["data"]["event_type"] for m in copied] == [
        m["data"]["event_type"] for m in parent if m["type"] == "step" and m["seq"] < at
    ][: len(copied)]
    edited = next(
        m for m in child if m["type"] == "step" and m["data"]["event_type"] == "observation"
        and not m["data"].get("copied")
    )  # fmt: skip
    assert edited["data"]["data"]["output"] == "7"
    assert record(cluster.a, child_id)["parent_id"] == task_id
    refused = post(cluster.a, f"tasks/{task_id}/fork", {"at_seq": 10_000})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_fork"


async def test_two_servers_resuming_one_interrupted_task_make_one_continuation(
    cluster: Cluster,
) -> None:
    # Waiting for a decision when its worker stops: interrupted, no continuation yet.
    task_id = create(cluster.a, "approve-me", "ledger")
    wait_status(cluster.b, task_id, "waiting")
    cluster.worker.stop()
    cluster.worker = WorkerProcess(cluster.redis.url, cluster.prefix, "w3", cluster.home)
    interrupted = wait_status(cluster.a, task_id, "interrupted")
    assert interrupted["resumed_by"] is None and interrupted["pending_approvals"]
    answers = await asyncio.gather(
        asyncio.to_thread(post, cluster.a, f"tasks/{task_id}/resume", {}),
        asyncio.to_thread(post, cluster.b, f"tasks/{task_id}/resume", {}),
    )
    assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
    made = next(r for r in answers if r.status_code == 201).json()
    refused = next(r for r in answers if r.status_code == 409).json()
    assert refused["error"]["code"] == "already_resumed"
    assert made["task_id"] in refused["error"]["message"]
    for server in (cluster.a, cluster.b):
        assert wait_status(server, task_id, "interrupted")["resumed_by"] == made["task_id"]
    # The call that waited is asked again in the continuation, never run unasked.
    again = wait_status(cluster.b, made["task_id"], "waiting")
    assert again["parent_id"] == task_id and again["fork_kind"] == "resume"
    assert httpx.delete(cluster.b.api(f"tasks/{made['task_id']}"), headers=cluster.b.headers)


async def test_a_run_imported_through_a_is_listed_and_replayed_through_b(cluster: Cluster) -> None:
    task_id = create(cluster.a, "steps", "go")
    original = get_task(cluster.a, task_id)
    wait_status(cluster.a, task_id, "succeeded")
    original = get_task(cluster.a, task_id)
    events = logged(original["events"])
    packed = pack_run_log({k: v for k, v in original.items() if k != "events"}, events)
    answer = post(cluster.a, "tasks/import", {"runs": [packed], "source": "analysis.ipynb"})
    assert answer.status_code == 201, answer.text
    imported = answer.json()["ids"][task_id]
    assert imported != task_id  # taken on Redis: a new id
    on_b = get_task(cluster.b, imported)
    assert on_b["status"] == "succeeded"
    assert on_b["imported_from"]["source"] == "analysis.ipynb"
    assert [(m["seq"], m["type"]) for m in logged(on_b["events"])] == [
        (m["seq"], m["type"]) for m in events
    ]
    listed = httpx.get(cluster.b.api("tasks"), headers=cluster.b.headers).json()["tasks"]
    assert imported in [t["task_id"] for t in listed]
    # Deleted through B: gone on A too, and its id is not given out again.
    assert (
        httpx.delete(cluster.b.api(f"tasks/{imported}"), headers=cluster.b.headers).status_code
        == 204
    )
    gone = httpx.get(cluster.a.api(f"tasks/{imported}"), headers=cluster.a.headers)
    assert gone.status_code == 404


async def test_redis_killed_under_a_running_task_loses_no_event_once_it_is_back(
    cluster: Cluster,
) -> None:
    """Redis SIGKILLed mid-run (append-only file, fsync always) and started again: the
    servers answer 503 meanwhile, the viewer's stream waits and then goes on, and the
    run ends with every event once, here or in its continuation."""
    task_id = create(cluster.a, "paced", "go")
    async with ws_connect(cluster.b, task_id) as on_b:
        seen = await first_steps(on_b, 10)
        cluster.redis.kill()
        down = httpx.get(cluster.a.api("tasks"), headers=cluster.a.headers, timeout=30)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "backend_unavailable"
        await asyncio.sleep(1.0)
        cluster.redis.start()
        raw_rest = await read_until_result(on_b, DEADLINE)
        rest = logged(raw_rest)
    assert rest and rest[-1]["type"] == "result", (raw_rest[-3:], on_b.close_code)
    whole = seen + rest
    assert_whole(whole)
    result = whole[-1]["data"]
    if result["status"] == "interrupted":  # its lease lapsed meanwhile: taken over
        assert result["error"]["code"] == "worker_lost"
        continuation = record(cluster.a, task_id)["resumed_by"]
        child = await watch(cluster.b, continuation)
        assert_whole(child)
        result = child[-1]["data"]
    assert result["status"] == "succeeded", result
    assert logged(get_task(cluster.a, task_id)["events"]) == whole
