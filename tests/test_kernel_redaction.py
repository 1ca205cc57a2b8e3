"""Known secrets are redacted from a kernel's run too (issue 13, scoped keys).

A notebook agent runs in a real kernel and publishes its events to the server's hub. Its
tool prints the server's token (the kernel has it in its environment) and an API key the
user pasted into the notebook: no viewer sees either, on the task WebSocket, in
``GET tasks/{id}`` or the task list, nor does the task history on disk hold them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import read_until_result
from hardening_support import extension
from test_kernel_agents import kernel  # noqa: F401 - the fixture
from websockets.asyncio.client import connect

READ_KEY = "dash-" + secrets.token_hex(16)

LEAKY = f"""
import os
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn, tool

@tool
def show_env() -> str:
    \"\"\"What a tool printing its environment shows.\"\"\"
    return (f"token={{os.environ['AGENTKIT_SERVER_TOKEN']}} "
            f"key={READ_KEY!r} url={{os.environ['AGENTKIT_SERVER_URL']}}")

leaky = Agent("kernel-env", ScriptedGateway([
    ScriptedTurn("Looking at the environment.", [("show_env", {{}})]),
    lambda ctx: ScriptedTurn("I found " + ctx.observations[-1]),
]), tools=[show_env])
"""


@pytest.fixture
def agentkit_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "db_path": str(tmp_path / "history.sqlite3"),
        "api_keys": {"dashboard": {"scope": "read", "key": READ_KEY}},
    }


async def test_a_kernel_run_shows_no_viewer_the_token_or_a_key(
    kernel: Any,  # noqa: F811
    jp_serverapp: Any,
    ws_connect: Any,
    api: Any,
) -> None:
    token = jp_serverapp.identity_provider.token
    assert token and len(token) >= 8
    _, _, execute = await kernel()
    await execute(LEAKY)
    out = await execute("run = LocalRun(leaky, 'show me'); print(run.task_id, run.shared)")
    task_id, shared = out.split()
    assert shared == "True"  # published to the server's hub
    messages = await read_until_result(await ws_connect(task_id), timeout=30)
    assert messages[-1]["data"]["status"] == "succeeded"
    observation = next(
        m["data"]["data"]["output"]
        for m in messages
        if m["type"] == "step" and m["data"]["event_type"] == "observation"
    )
    assert observation.startswith("token=[secret] key='[secret]' url=http")  # it did print
    assert "I found token=[secret]" in messages[-1]["data"]["output"]
    late = await read_until_result(await ws_connect(task_id))  # a replay, after the end
    _, record = await api("GET", "tasks", task_id)
    _, listed = await api("GET", "tasks")
    hub = extension(jp_serverapp).hub
    assert hub.store is not None
    await asyncio.to_thread(hub.store.flush)
    connection = sqlite3.connect(hub.store.path)
    try:
        stored = [
            *connection.execute("SELECT message FROM events WHERE task_id = ?", (task_id,)),
            *connection.execute("SELECT result FROM tasks WHERE task_id = ?", (task_id,)),
        ]
    finally:
        connection.close()
    assert len(stored) == len(messages)  # every event, and the record
    seen = {
        "the stream": json.dumps(messages),
        "a replay": json.dumps(late),
        "GET tasks/{id}": json.dumps(record),
        "GET tasks": json.dumps(listed),
        "the history": json.dumps(stored),
    }
    for where, text in seen.items():
        assert token not in text, where
        assert READ_KEY not in text, where


async def test_the_server_redacts_what_a_publisher_sends_as_it_is(
    jp_serverapp: Any, api: Any, ws_connect: Any, jp_http_port: int
) -> None:
    """A kernel whose own log was not redacted (it found the server some other way, or
    publishes with its own client): the hub's copy is, whatever arrives."""
    token = jp_serverapp.identity_provider.token
    status, registered = await api("POST", "kernel-tasks", body={"agent": "notebook", "input": "q"})
    assert status == 201
    leak = f"token={token} key={READ_KEY}"
    events = [
        {"event_type": "observation", "step": 1, "timestamp": 1.0,
         "data": {"call_id": "c", "name": "env", "output": leak, "is_error": False}},
        {"event_type": "final_answer", "step": 2, "timestamp": 2.0,
         "data": {"output": "It was " + leak, "total_steps": 2, "total_tokens": 0}},
    ]  # fmt: skip
    url = f"ws://127.0.0.1:{jp_http_port}{registered['publish_url']}"  # (with base_url)
    async with connect(
        url,
        additional_headers={
            "Authorization": f"token {token}",
            "X-AgentKit-Publish-Token": registered["publish_token"],
        },
    ) as publisher:
        assert json.loads(await publisher.recv())["type"] == "resume"
        for seq, event in enumerate(events, 1):
            await publisher.send(json.dumps({"type": "event", "event": event, "seq": seq}))
        await publisher.wait_closed()
    task_id = registered["task_id"]
    messages = await read_until_result(await ws_connect(task_id))
    _, record = await api("GET", "tasks", task_id)
    assert record["result"]["output"] == "It was token=[secret] key=[secret]"
    for text in (json.dumps(messages), json.dumps(record)):
        assert token not in text and READ_KEY not in text
