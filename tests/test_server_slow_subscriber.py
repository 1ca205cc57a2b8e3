"""A subscriber that stops reading is dropped with 4008; nobody else notices."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import read_until_result
from websockets.exceptions import ConnectionClosed


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {"subscriber_max_lag_bytes": 1024 * 1024}


async def test_a_stuck_subscriber_neither_slows_nor_breaks_the_others(
    api: Any, ws_connect: Any
) -> None:
    _, body = await api("POST", "tasks", body={"agent": "bulky", "input": "q"})
    task_id = body["task_id"]
    # This client's library stops reading from the socket once 1 frame is queued.
    stuck = await ws_connect(task_id, max_queue=1)
    healthy = await ws_connect(task_id)
    watching = asyncio.ensure_future(read_until_result(healthy, timeout=30))

    # Once dropped, the stuck one has a second to read the reason before its socket is
    # cut: it wakes up as soon as the task lists one subscriber less.
    async with asyncio.timeout(30):
        while (await api("GET", "tasks"))[1]["tasks"][-1]["subscribers"] > 1:
            await asyncio.sleep(0.02)
    # It was dropped with the documented close code and reason...
    received = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                received.append(json.loads(await stuck.recv()))
    assert stuck.close_code == 4008

    messages = await watching
    assert messages[-1]["data"]["status"] == "succeeded"
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == list(range(1, len(seqs) + 1))
    assert received[-1]["data"]["code"] == "subscriber_too_slow"
    last_seen = max(m.get("seq", 0) for m in received)
    # ...and resumes exactly where it stopped.
    resumed = await read_until_result(await ws_connect(task_id, after=last_seen))
    assert [m["seq"] for m in resumed if "seq" in m] == list(range(last_seen + 1, seqs[-1] + 1))
