"""Approvals and pause for agents that run in a kernel: through the server's hub (the
publish socket carries the decision to the kernel, like cancel), and for a run the
server does not see (the Python API)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from conftest import read_until_result
from test_kernel_agents import kernel  # noqa: F401 - the fixture

from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn, tool
from agentkit_jupyter.kernel.local_run import LocalRun
from agentkit_jupyter.protocol import ApproveMessage, PauseMessage, RejectMessage, ResumeMessage

GUARDED = """
import json
ran = []

@tool(requires_approval=lambda args: args["rows"] > 10)
def drop_rows(rows: int) -> str:
    '''Drop rows of the kernel's data.

    Args:
        rows: How many.
    '''
    ran.append(rows)
    return f"dropped {rows}"

guarded = Agent("kernel-guarded", ScriptedGateway([
    ScriptedTurn("Dropping a few.", [("drop_rows", {"rows": 3})]),
    ScriptedTurn("Dropping many.", [("drop_rows", {"rows": 500})]),
    lambda ctx: ScriptedTurn("Result: " + ctx.observations[-1]),
]), tools=[drop_rows])
"""


async def _next_step(ws: Any, kind: str, timeout: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "step" and message["data"]["event_type"] == kind:
                return dict(message["data"]["data"])


async def test_a_kernel_run_is_approved_through_the_hub(
    kernel: Any,  # noqa: F811
    api: Any,
    ws_connect: Any,
) -> None:
    _, _, execute = await kernel()
    await execute(GUARDED)
    task_id = (await execute("run = LocalRun(guarded, 'go'); print(run.task_id)")).strip()
    ws = await ws_connect(task_id)
    request = await _next_step(ws, "approval_requested")
    # The rule let the small call through; the big one waits, in the kernel and here.
    assert request["arguments"] == {"rows": 500} and request["policy"] == "tool_rule"
    _, record = await api("GET", "tasks", task_id, params={"limit": "0"})
    assert record["status"] == "waiting"
    assert json.loads(await execute("print(json.dumps(ran))")) == [3]
    edit = {"decision": "approve", "arguments": {"rows": 50}}
    status, _ = await api("POST", "tasks", task_id, "approvals", request["call_id"], body=edit)
    assert status == 200
    again, _ = await api(
        "POST", "tasks", task_id, "approvals", request["call_id"], body={"decision": "reject"}
    )
    assert again == 409  # claimed at once, before the kernel's event comes back
    messages = await read_until_result(ws)
    decided = [
        m["data"]["data"]
        for m in messages
        if m["type"] == "step" and m["data"]["event_type"] == "approval_decided"
    ]
    assert [(d["decision"], d["arguments"]) for d in decided] == [("edited", {"rows": 50})]
    assert messages[-1]["data"]["status"] == "succeeded"
    assert "dropped 50" in messages[-1]["data"]["output"]
    result = json.loads(
        await execute("print(json.dumps({'ran': ran, 'status': run.wait(30)['status']}))")
    )
    assert result == {"ran": [3, 50], "status": "succeeded"}  # once, with the edit


async def test_a_kernel_run_is_paused_and_resumed_through_the_hub(
    kernel: Any,  # noqa: F811
    api: Any,
    ws_connect: Any,
) -> None:
    _, _, execute = await kernel()
    await execute(GUARDED)
    task_id = (await execute("run = LocalRun(guarded, 'go'); print(run.task_id)")).strip()
    ws = await ws_connect(task_id)
    request = await _next_step(ws, "approval_requested")
    status, _ = await api("POST", "tasks", task_id, "pause")
    assert status == 200
    await ws.send(json.dumps({"type": "reject", "call_id": request["call_id"], "reason": "no"}))
    paused = await _next_step(ws, "paused")
    assert paused["by"]
    _, record = await api("GET", "tasks", task_id, params={"limit": "0"})
    assert record["status"] == "paused"
    status, _ = await api("POST", "tasks", task_id, "resume")
    assert status == 200
    messages = await read_until_result(ws)
    assert messages[-1]["data"]["status"] == "succeeded"
    assert "Not run" in messages[-1]["data"]["output"]


def _agent(ran: list[int]) -> Agent:
    @tool(requires_approval=True)
    def write(value: int) -> str:
        """Write.

        Args:
            value: What.
        """
        ran.append(value)
        return f"wrote {value}"

    return Agent(
        "private",
        ScriptedGateway(
            [
                ScriptedTurn("One.", [("write", {"value": 1})]),
                ScriptedTurn("Two.", [("write", {"value": 2})]),
                lambda ctx: ScriptedTurn(" | ".join(ctx.observations)),
            ]
        ),
        tools=[write],
    )


def _wait_for(run: LocalRun, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while run.status != status:
        assert time.monotonic() < deadline, run.status
        time.sleep(0.01)


def test_a_run_nobody_else_sees_is_decided_from_python() -> None:
    ran: list[int] = []
    run = LocalRun(_agent(ran), "go", share=False)
    _wait_for(run, "waiting")
    pending = run.task.control.pending_list()
    assert [p["tool"] for p in pending] == ["write"]
    run.command(ApproveMessage(type="approve", call_id=pending[0]["call_id"]), by="me")
    _wait_for(run, "waiting")
    second = run.task.control.pending_list()[0]["call_id"]
    run.command(PauseMessage(type="pause"))
    run.command(RejectMessage(type="reject", call_id=second, reason="enough"), by="me")
    _wait_for(run, "paused")
    run.command(ResumeMessage(type="resume"))
    result = run.wait(10)
    assert result["status"] == "succeeded"
    assert result["output"] == "wrote 1 | Not run: me rejected this call. Reason: enough"
    assert ran == [1]
