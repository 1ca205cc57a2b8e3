"""The server's token goes to the kernels the server starts, and nowhere else: not into the
server's own environment (which terminals and language servers inherit), and not into any
event, task record or history, even when a tool prints it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import read_until_result
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn, tool
from agentkit_jupyter.protocol import ENV_SERVER_TOKEN, ENV_SERVER_URL


@tool
def show_runtime_files() -> str:
    """Print the Jupyter runtime files (a tool an agent might well call)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return "\n".join(p.read_text() for p in Path(jupyter_runtime_dir()).glob("jpserver-*.json"))


def leaky_agents() -> list[Agent]:
    turns = [ScriptedTurn("Looking.", [("show_runtime_files", {})]), ScriptedTurn("Seen.")]
    return [Agent("env-printer", ScriptedGateway(turns), tools=[show_runtime_files])]


@pytest.fixture
def agentkit_config(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv(ENV_SERVER_TOKEN, raising=False)
    monkeypatch.delenv(ENV_SERVER_URL, raising=False)
    return {"agents": [f"{__name__}:leaky_agents"]}


async def test_only_kernels_get_the_token(jp_serverapp: Any, http_server_client: Any) -> None:
    token = jp_serverapp.identity_provider.token
    assert token
    # The server's own environment: what terminals and other children inherit.
    assert ENV_SERVER_TOKEN not in os.environ
    assert token not in "\n".join(os.environ.values())
    # A kernel the server starts (as JupyterLab does) finds the server and its token.
    manager = jp_serverapp.kernel_manager
    kernel_id = await manager.start_kernel(kernel_name=NATIVE_KERNEL_NAME)
    client = manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        code = (
            "import json, os; from agentkit_jupyter.kernel.client import find_server; "
            "s = find_server(); print(json.dumps([s.url, s.token]))"
        )
        reply = await client.execute_interactive(code, output_hook=hook, timeout=30)
        assert reply["content"]["status"] == "ok"
        url, seen = json.loads("".join(out))
        assert seen == token
        assert f":{jp_serverapp.port}/" in url
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(kernel_id, now=True)
    assert ENV_SERVER_TOKEN not in os.environ


async def test_the_token_is_redacted_from_events_records_and_history(
    api: Any, ws_connect: Any, jp_serverapp: Any
) -> None:
    token = jp_serverapp.identity_provider.token
    status, task = await api("POST", "tasks", body={"agent": "env-printer", "input": "q"})
    assert status == 201
    messages = await read_until_result(await ws_connect(task["task_id"]))
    observation = next(
        m["data"]["data"]["output"]
        for m in messages
        if m["type"] == "step" and m["data"]["event_type"] == "observation"
    )
    assert '"token": "[secret]"' in observation  # the tool did print the runtime file
    _, stored = await api("GET", "tasks", task["task_id"])
    _, listed = await api("GET", "tasks")
    for text in (json.dumps(messages), json.dumps(stored), json.dumps(listed)):
        assert token not in text
