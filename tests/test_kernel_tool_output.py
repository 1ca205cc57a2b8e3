"""In a real kernel: what a notebook agent's tool prints is its tool_output (on the
server's stream too), while the notebook's own prints stay in the cell."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from test_kernel_agents import kernel  # noqa: F401 - the fixture

SETUP = """
import json
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn, tool

@tool
def chatty(n: int) -> int:
    '''Count, out loud.

    Args:
        n: how far.
    '''
    for i in range(n):
        print(f"counting {i}")
    return n

talker = Agent("kernel-talker", ScriptedGateway([
    ScriptedTurn("Counting.", [("chatty", {"n": 3})]),
    ScriptedTurn("Counted."),
]), tools=[chatty])
"""


async def test_a_tools_prints_are_its_output_not_the_cells(
    kernel: Any,  # noqa: F811
    api: Any,
) -> None:
    _, _, execute = await kernel()
    await execute(SETUP)
    out = await execute(
        "print('before the run')\n"
        "task = talker.start('count')\n"
        "task.wait(30)\n"
        "print('after the run')\n"
        "print(json.dumps({'id': task.task_id}))"
    )
    assert "before the run" in out and "after the run" in out
    assert "counting" not in out  # not in the cell
    task_id = json.loads(out.strip().splitlines()[-1])["id"]
    async with asyncio.timeout(20):
        while True:
            _, record = await api("GET", "tasks", task_id)
            if record["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
    outputs = [
        m["data"]["data"]["text"]
        for m in record["events"]
        if m["type"] == "step" and m["data"]["event_type"] == "tool_output"
    ]
    assert "".join(outputs) == "counting 0\ncounting 1\ncounting 2\n"
