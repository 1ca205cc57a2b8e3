"""Per-user limits again with the tasks on a real Redis: creations per minute and
viewer slots as on the in-process hub (tests/test_limits_per_user.py).

``max_running_tasks`` is the one rule that differs by design (docs/scale-out.md,
"Workers and leases"): on Redis it bounds what each worker runs at once, and a server
counts only its local runs (kernel runs, forks) against it, so a task created beyond
what the workers can run waits in the queue instead of a 429. The in-process test of
the 429 is not imported; the test here checks the Redis rule instead."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hardening_support import extension
from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_limits_per_user import (  # noqa: F401 - collected again, on Redis
    create,
    test_creations_are_rate_limited_per_user,
    test_one_user_cannot_take_every_viewer_slot,
    until_finished,
)


async def statuses(api: Any, ids: list[str]) -> list[str]:
    _, listed = await api("GET", "tasks")
    by_id = {t["task_id"]: t["status"] for t in listed["tasks"]}
    return [by_id[task_id] for task_id in ids]


@pytest.mark.parametrize(
    "agentkit_config", [{"max_running_tasks": 2, "max_creations_per_minute": 0}]
)
async def test_tasks_beyond_max_running_wait_in_the_queue_and_local_runs_get_the_429(
    api: Any, jp_fetch: Any, jp_serverapp: Any
) -> None:
    """On Redis: three tasks with room for two are all accepted; the embedded worker
    runs two and the third waits queued until one has ended, then runs. The server's
    own runs (kernel tasks) are still capped with a clear 429."""
    assert extension(jp_serverapp).shared is not None  # really on Redis
    created = [await create(jp_fetch) for _ in range(3)]
    assert [c[0] for c in created] == [201, 201, 201]
    ids = [c[1]["task_id"] for c in created]
    async with asyncio.timeout(10):
        while (now := await statuses(api, ids)).count("running") < 2:
            assert now.count("running") <= 2, now
            await asyncio.sleep(0.05)
    assert sorted(now) == ["queued", "running", "running"], now
    assert len(extension(jp_serverapp).worker.running) == 2
    waiting = ids[now.index("queued")]
    # One ends: the queued one runs, and never more than two at once.
    first = ids[now.index("running")]
    assert (await api("POST", "tasks", first, "cancel"))[0] == 202
    await until_finished(api, first)
    async with asyncio.timeout(10):
        while (await statuses(api, [waiting]))[0] == "queued":
            assert len(extension(jp_serverapp).worker.running) <= 2
            await asyncio.sleep(0.05)
    assert await statuses(api, ids) == [
        "cancelled" if task_id == first else "running" for task_id in ids
    ]
    # The server's local runs count against it: two kernel tasks, then a 429.
    kernel = [await create(jp_fetch, path="kernel-tasks") for _ in range(2)]
    assert [k[0] for k in kernel] == [201, 201]
    status, body, headers = await create(jp_fetch, path="kernel-tasks")
    assert status == 429
    assert body["error"]["code"] == "too_many_running_tasks"
    assert "max_running_tasks" in body["error"]["message"]
    assert int(headers["Retry-After"]) > 0
