"""Interrupting a kernel while it waits for a run: the run ends once, as interrupted, and
nothing spurious (a "the run failed" traceback) reaches the notebook or the log."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import read_until_result
from test_kernel_agents import kernel  # noqa: F401 - the fixture

CAPTURE_LOG = """
import logging
records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append(f"{record.levelname} {record.name}: {record.getMessage()}")

logging.getLogger().addHandler(Keep(logging.DEBUG))
logging.getLogger("agentkit_jupyter").setLevel(logging.DEBUG)
"""


async def test_an_interrupted_wait_ends_the_run_once_without_a_traceback(
    kernel: Any,  # noqa: F811
    ws_connect: Any,
) -> None:
    manager, client, execute = await kernel()
    await execute(CAPTURE_LOG)
    task_id = (await execute("run = LocalRun(slow, 'scan'); print(run.task_id)")).strip()
    ws = await ws_connect(task_id)
    async with asyncio.timeout(10):
        while json.loads(await ws.recv()).get("data", {}).get("event_type") != "tool_call":
            pass
    shown: list[dict[str, Any]] = []
    waiting = asyncio.ensure_future(
        client.execute_interactive("run.wait()", timeout=30, output_hook=shown.append)
    )
    await asyncio.sleep(0.5)  # the cell is blocked in wait()
    await manager.interrupt_kernel()
    reply = await asyncio.wait_for(waiting, 10)
    assert reply["content"]["ename"] == "KeyboardInterrupt"

    messages = await read_until_result(ws, timeout=10)
    result = messages[-1]["data"]
    assert result["status"] == "failed"
    assert result["error"]["code"] == "kernel_interrupted"
    assert "interrupted" in result["error"]["message"]
    # In the kernel: one terminal step (the interruption), then the result, nothing after.
    out = await execute(
        "import time, json; time.sleep(1.0);"
        "print(json.dumps([m['data']['event_type'] if m['type'] == 'step' else 'result'"
        " for m in run.messages()][-2:])); print(json.dumps(records))"
    )
    tail_line, records_line = out.strip().splitlines()[-2:]
    assert json.loads(tail_line) == ["error", "result"]
    records = json.loads(records_line)
    assert not [r for r in records if r.startswith(("ERROR", "CRITICAL"))], records
    # The notebook saw the KeyboardInterrupt and nothing else: no "the run failed".
    texts = [
        m["content"].get("text", "") + "".join(m["content"].get("traceback", []))
        for m in shown
        if m["msg_type"] in ("stream", "error")
    ]
    assert not any("TaskFinishedError" in t or "the run failed" in t for t in texts), texts
    # The server's copy ends the same way, once.
    terminal = [
        m
        for m in messages
        if m["type"] == "step" and m["data"]["event_type"] in ("final_answer", "error", "cancelled")
    ]
    assert [m["data"]["event_type"] for m in terminal] == ["error"]
