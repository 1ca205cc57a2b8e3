"""A publisher's out-of-range numbers are refused with an error code; the run goes on."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import connect


async def test_a_step_of_1e999_is_refused_with_a_code_and_the_task_goes_on(
    api: Any, ws_url: Any, ws_connect: Any, jp_auth_header: dict[str, str]
) -> None:
    _, created = await api("POST", "kernel-tasks", body={"agent": "nb", "input": "q"})
    task_id = created["task_id"]
    publish_url = ws_url(task_id).replace("/ws/tasks/", "/ws/publish/")
    headers = {**jp_auth_header, "X-AgentKit-Publish-Token": created["publish_token"]}
    async with connect(publish_url, additional_headers=headers) as publisher:
        for bad in ("1e999", "-1e999", "NaN", "Infinity", '"one"', "[1]"):
            await publisher.send(
                '{"type": "event", "event": {"event_type": "token", "step": '
                + bad
                + ', "data": {"delta": "x"}, "timestamp": 1}}'
            )
            answer = json.loads(await publisher.recv())
            while answer["type"] != "error":  # e.g. the server's "resume" on connect
                answer = json.loads(await publisher.recv())
            assert answer["data"]["code"] == "invalid_message", (bad, answer)
        # The connection and the task are still there: a good event is taken.
        event = {"event_type": "final_answer", "step": 1, "data": {"output": "ok"}, "timestamp": 1}
        await publisher.send(json.dumps({"type": "event", "event": event}))
        await publisher.wait_closed()
        assert publisher.close_code == 1000
    _, task = await api("GET", "tasks", task_id)
    assert task["status"] == "succeeded"  # not "kernel went away"
    assert [e["data"]["event_type"] for e in task["events"][:-1]] == ["final_answer"]
