"""A kernel run reaches the server whole: a big fast backlog, and a dropped publish
connection that the kernel resumes by ``seq``; the server's task ends with the kernel
run's own result."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from conftest import read_until_result
from test_kernel_agents import kernel  # noqa: F401 - the fixture

FIREHOSE = """
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn
# 6,000 tokens of 1 KiB, as fast as the kernel makes them, while the server is stalled:
# more than the lag a subscriber may have (4 MiB), and more than half of what the
# kernel's log holds in memory (16 MiB, with the 6 MiB answer).
firehose = Agent("kernel-firehose", ScriptedGateway([ScriptedTurn(("x" * 1023 + " ") * 6_000)]))
paced = Agent("kernel-paced", ScriptedGateway([ScriptedTurn("w " * 400)], token_delay=0.01))
"""


async def _final(api: Any, task_id: str, timeout: float = 120) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            _, task = await api("GET", "tasks", task_id, params={"limit": "0"})
            if task["status"] not in ("queued", "running"):
                return dict(task)
            await asyncio.sleep(0.2)


async def test_a_big_fast_backlog_reaches_the_server_whole(kernel: Any, api: Any) -> None:  # noqa: F811
    _, _, execute = await kernel()
    await execute(FIREHOSE)
    task_id = (await execute("run = LocalRun(firehose, 'go'); print(run.task_id)")).strip()
    async with asyncio.timeout(30):
        while (await api("GET", "tasks", task_id, params={"limit": "0"}))[1]["last_seq"] < 1:
            await asyncio.sleep(0.01)
    # The server (in this process) stops reading for a while, as a busy one does: the
    # kernel's run goes on and its publisher falls far behind.
    time.sleep(3)
    local = json.loads(
        await execute(
            "result = run.wait(120); import json;"
            "print(json.dumps({'result': result, 'last_seq': run.task.log.last_seq}))",
            timeout=150,
        )
    )
    assert local["result"]["status"] == "succeeded"
    task = await _final(api, task_id)
    assert task["status"] == "succeeded", task["result"]
    assert task["result"]["output"] == local["result"]["output"]
    assert task["last_seq"] == local["last_seq"] > 6_000


async def test_a_dropped_publish_connection_is_resumed_by_seq(
    kernel: Any,  # noqa: F811
    ws_connect: Any,
) -> None:
    _, _, execute = await kernel()
    await execute(FIREHOSE)
    task_id = (await execute("run = LocalRun(paced, 'go'); print(run.task_id)")).strip()
    ws = await ws_connect(task_id)
    # Abort the TCP connection of the kernel's publish socket, as a network drop does.
    drop = (
        "import gc; from websockets.asyncio.client import ClientConnection;"
        "[run._threads.loop.call_soon_threadsafe(c.transport.abort) for c in gc.get_objects()"
        " if isinstance(c, ClientConnection) and '/ws/publish/' in c.request.path"
        " and c.state.name == 'OPEN'];"
        "print('dropped')"
    )
    seen = 0
    drops = 0
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        async for raw in ws:
            message = json.loads(raw)
            messages.append(message)
            if message["type"] == "step":
                seen += 1
                if seen in (50, 150):  # cut the kernel's publish socket, twice
                    assert (await execute(drop)).strip() == "dropped"
                    drops += 1
            if message["type"] == "result":
                break
    assert drops == 2
    result = messages[-1]["data"]
    assert result["status"] == "succeeded", result
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
    local = json.loads(
        await execute("run.wait(30); import json; print(json.dumps(run.messages()))")
    )
    assert local == [m for m in messages if "seq" in m]
    # A late viewer gets the same log from the server.
    replay = await read_until_result(await ws_connect(task_id))
    assert replay[1:] == messages[1:]
