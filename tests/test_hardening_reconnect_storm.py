"""1,000 random disconnect/reconnect cycles during a run: each resumes exactly."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any


async def test_a_thousand_random_disconnects_each_resume_exactly(api: Any, ws_connect: Any) -> None:
    _, body = await api("POST", "tasks", body={"agent": "paced", "input": "q"})
    task_id = body["task_id"]
    rng = random.Random(7)
    seen: list[int] = []
    last = 0
    cycles = 0
    done = False
    while not done or cycles < 1000:
        # max_queue=None: a client that leaves unread replay queued must still see the
        # server's close frame (websockets pauses reading when its queue is full).
        ws = await ws_connect(task_id, after=last, max_queue=None)
        connected = json.loads(await ws.recv())
        assert connected["type"] == "connected" and connected["after"] == last
        for _ in range(rng.randint(0, 3)):
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            except Exception:
                break
            if "seq" in message:
                assert message["seq"] == last + 1, (last, message["seq"])
                last = message["seq"]
                seen.append(last)
            if message["type"] == "result":
                done = True
                break
        if rng.random() < 0.5:
            ws.transport.abort()
            await ws.wait_closed()
        else:
            await ws.close()
        cycles += 1
        if done and cycles >= 1000:
            break
        if done:
            last = rng.randint(0, last)  # keep cycling over the finished log too
            seen = seen[:last]
    _, task = await api("GET", "tasks", task_id)
    assert task["status"] == "succeeded"
    assert cycles >= 1000
    assert seen == list(range(1, len(seen) + 1))
