"""Forks of a kernel agent's run: made in the kernel (its tools live there), shared with
the server like any run, the copied steps marked; and the widget's "Fork from here"
through the kernel relay."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from test_kernel_agents import kernel  # noqa: F401 - the fixture

SETUP = """
import json
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn, tool
calls = []

@tool
def lookup(region: str) -> int:
    '''Units sold.

    Args:
        region: a region.
    '''
    calls.append(region)
    return {"EMEA": 120, "APAC": 80}[region]

def region(ctx):
    return "APAC" if "APAC" in ctx.question else "EMEA"

shop = Agent("kernel-shop", ScriptedGateway([
    lambda ctx: ScriptedTurn(f"Looking up {region(ctx)}.", [("lookup", {"region": region(ctx)})]),
    lambda ctx: ScriptedTurn(f"Sold {ctx.observations[-1]} ({len(ctx.history)} earlier messages)."),
]), tools=[lookup])
parent = shop.start("EMEA?")
parent.wait(30)
"""


async def test_a_kernel_run_forks_in_the_kernel_and_the_server_sees_it(
    kernel: Any,  # noqa: F811
    api: Any,
) -> None:
    _, _, execute = await kernel()
    await execute(SETUP)
    out = await execute(
        "fork = parent.fork(at_step=1, observation='999', display=False)\n"
        "result = fork.wait(30)\n"
        "print(json.dumps({'calls': calls, 'output': result['output'],"
        " 'parent': parent.task_id, 'fork': fork.task_id}))"
    )
    seen = json.loads(out)
    assert seen["calls"] == ["EMEA"]  # the lookup ran once, for the parent only
    assert seen["output"] == "Sold 999 (0 earlier messages)."
    async with asyncio.timeout(20):
        while True:
            _, record = await api("GET", "tasks", seen["fork"])
            if record["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
    assert record["parent_id"] == seen["parent"] and record["fork_kind"] == "fork"
    steps = [m["data"] for m in record["events"] if m["type"] == "step"]
    copied = [s["event_type"] for s in steps if s.get("copied")]
    assert copied[-1] == "tool_call" and "observation" not in copied
    live = [s for s in steps if not s.get("copied")]
    assert live[0]["event_type"] == "observation" and live[0]["data"]["edited"] is True
    # The server cannot fork it: the tools are in the kernel.
    status, body = await api("POST", "tasks", seen["parent"], "fork", body={"at_seq": 1})
    assert (status, body["error"]["code"]) == (409, "fork_needs_kernel")


async def test_the_views_fork_message_forks_and_relays_the_fork(kernel: Any) -> None:  # noqa: F811
    _, _, execute = await kernel()
    await execute(SETUP)
    out = await execute(
        "import time\n"
        "sent = []\n"
        "w = parent.widget\n"
        "w.send = sent.append\n"
        "seq = [m['seq'] for m in parent.messages() if m['type'] == 'step'"
        " and m['data']['event_type'] == 'tool_call'][0]\n"
        "w._on_custom_msg(w, {'type': 'fork', 'at_seq': seq,"
        " 'edit': {'arguments': {'region': 'APAC'}}}, [])\n"
        "forked = [m for m in sent if m['type'] == 'relay_forked']\n"
        "child = forked[0]['fork_id']\n"
        "w._forks[child].wait(30)\n"
        "w._on_custom_msg(w, {'type': 'relay', 'after': 0, 'task_id': child}, [])\n"
        "deadline = time.time() + 10\n"
        "while not any(m['type'] == 'relay_batch' and m['task_id'] == child"
        " and any(x['type'] == 'result' for x in m['messages']) for m in sent):\n"
        "    assert time.time() < deadline\n"
        "    time.sleep(0.05)\n"
        "answer = [m['seq'] for m in w._forks[child].local_run.messages()"
        " if m['type'] == 'step' and m['data']['event_type'] == 'final_answer'][0]\n"
        "w._on_custom_msg(w, {'type': 'fork', 'task_id': child, 'at_seq': answer}, [])\n"
        "grand = [m for m in sent if m['type'] == 'relay_forked' and m['task_id'] == child]\n"
        "grandchild = w._forks[grand[0]['fork_id']]\n"
        "grandchild.wait(30)\n"
        "w._on_custom_msg(w, {'type': 'fork', 'at_seq': 10_000}, [])\n"
        "time.sleep(0.2)\n"
        "errors = [m for m in sent if m['type'] == 'relay_error']\n"
        "print(json.dumps({'calls': calls, 'errors': errors,"
        " 'result': w._forks[child].result, 'grand': grandchild.local_run.task.parent_id,"
        " 'child': child}))"
    )
    seen = json.loads(out)
    assert seen["calls"] == ["EMEA", "APAC"]  # the edited call ran, with its arguments
    assert seen["result"]["output"] == "Sold 80 (0 earlier messages)."
    assert [e["code"] for e in seen["errors"]] == ["invalid_fork"]
    # A fork of the fork, asked from the fork's own view (its task_id): its parent is the
    # fork, not the widget's task.
    assert seen["grand"] == seen["child"]


async def test_a_follow_up_in_the_kernel_is_a_linked_task_on_the_server(
    kernel: Any,  # noqa: F811
    api: Any,
) -> None:
    _, _, execute = await kernel()
    await execute(SETUP)
    out = await execute(
        "more = parent.follow_up('And APAC?', display=False)\n"
        "result = more.wait(30)\n"
        "print(json.dumps({'output': result['output'], 'fork': more.task_id,"
        " 'parent': parent.task_id, 'calls': calls}))"
    )
    seen = json.loads(out)
    # The script answers the new question, with the first one's conversation before it.
    assert seen["output"] == "Sold 80 (4 earlier messages)."
    assert seen["calls"] == ["EMEA", "APAC"]
    async with asyncio.timeout(20):
        while True:
            _, record = await api("GET", "tasks", seen["fork"])
            if record["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
    assert record["parent_id"] == seen["parent"] and record["input"] == "And APAC?"
    copied = [
        m["data"]["event_type"]
        for m in record["events"]
        if m["type"] == "step" and m["data"].get("copied")
    ]
    assert copied[-1] == "final_answer"  # copied, it did not end the kernel's fork
