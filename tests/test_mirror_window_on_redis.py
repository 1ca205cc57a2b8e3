"""A long task on Redis read from before what a server's copy holds in memory: the
events older than its window (``max_events_in_memory``) are read from the task's
stream on Redis, so a late viewer, a reconnect with an old ``after`` and a REST page
get every event from seq 1, no gap and no ``events_truncated``, as the task history
gives them in-process."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from conftest import read_until_result
from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis

WINDOW = 50


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {"max_events_in_memory": WINDOW}


async def finished(api: Any, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status, record = await api("GET", "tasks", task_id, params={"limit": "0"})
        assert status == 200, record
        if record["status"] not in ("queued", "running"):
            return dict(record)
        assert time.monotonic() < deadline, record["status"]
        await asyncio.sleep(0.05)


async def test_a_late_viewer_and_a_rest_page_read_older_events_from_redis(
    api: Any, ws_connect: Any, jp_serverapp: Any
) -> None:
    status, task = await api("POST", "tasks", body={"agent": "firehose", "input": "go"})
    assert status == 201, task
    # One viewer from the start, while it runs (the live path).
    live = await ws_connect(task["task_id"])
    streamed = [m for m in await read_until_result(live, 60) if "seq" in m]
    assert (await finished(api, task["task_id"]))["status"] == "succeeded"
    last = streamed[-1]["seq"]
    assert [m["seq"] for m in streamed] == list(range(1, last + 1))
    assert last > 4 * WINDOW  # far beyond what the server's copy keeps in memory
    mirror = jp_serverapp.web_app.settings["agentkit"].hub.get(task["task_id"])
    assert mirror.log.first_seq > WINDOW  # memory holds only the newest ones

    # A late viewer from the start: everything, from Redis then memory, no notice.
    late = await ws_connect(task["task_id"])
    got = await read_until_result(late, 60)
    assert not [m for m in got if m["type"] == "error"], got[:3]
    assert [m for m in got if "seq" in m] == streamed
    # A reconnect with an old cursor: exactly what follows it.
    again = await ws_connect(task["task_id"], after=10)
    assert [m for m in await read_until_result(again, 60) if "seq" in m] == streamed[10:]
    # REST pages from the start.
    status, page = await api("GET", "tasks", task["task_id"], params={"after": "0"})
    assert status == 200
    assert [json.loads(json.dumps(e)) for e in page["events"]] == streamed[: len(page["events"])]
    assert page["events"][0]["seq"] == 1
