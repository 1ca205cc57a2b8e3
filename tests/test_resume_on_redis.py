"""A resume point older than a server's memory window, with the tasks on a real
Redis (tests/test_hardening_resume.py in-process, where what left memory without a
history is gone and is announced): on Redis the stream still has those events, so
the server reads them from it and the viewer gets every one after its resume point,
with no ``events_truncated``."""

from __future__ import annotations

from typing import Any

from conftest import read_until_result
from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from test_hardening_resume import agentkit_config  # noqa: F401 - its small window


async def test_a_resume_point_older_than_memory_is_served_from_redis(
    api: Any, ws_connect: Any
) -> None:
    _, body = await api("POST", "tasks", body={"agent": "firehose", "input": "q"})
    task_id = body["task_id"]
    await read_until_result(await ws_connect(task_id, after=0), timeout=30)
    _, task = await api("GET", "tasks", task_id)
    assert task["first_seq"] == 1  # the oldest readable, from Redis
    ws = await ws_connect(task_id, after=5)
    messages = await read_until_result(ws)
    assert messages[0]["type"] == "connected"
    assert not [m for m in messages if m["type"] == "error"], messages[1]
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == list(range(6, task["last_seq"] + 1))  # from the resume point, no gap
