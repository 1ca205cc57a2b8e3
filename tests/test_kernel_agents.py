"""Agents defined in a notebook: they run in a real kernel and stream into the server's hub."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import time
from typing import Any

import pytest
from conftest import read_until_result
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

AGENT_CODE = textwrap.dedent(
    '''
    import asyncio
    from agentkit_jupyter import Agent
    from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn, tool
    from agentkit_jupyter.kernel.local_run import LocalRun

    sales = {"EMEA": 120, "APAC": 80}  # the user's own data, living in the kernel
    interrupted = []

    @tool
    def region_sales(region: str) -> int:
        """Units sold in a region.

        Args:
            region: EMEA or APAC.
        """
        return sales[region]

    @tool
    async def slow_scan(seconds: float) -> str:
        """A long scan."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            interrupted.append("slow_scan")
            raise
        return "scanned"

    quick = Agent("sales-bot", ScriptedGateway([
        ScriptedTurn("I look up EMEA.", [("region_sales", {"region": "EMEA"})]),
        lambda ctx: ScriptedTurn(f"EMEA sold {ctx.observations[-1]} units."),
    ], token_delay=0.01), tools=[region_sales])
    slow = Agent("scanner", ScriptedGateway([
        ScriptedTurn("Scanning.", [("slow_scan", {"seconds": 60})]),
        ScriptedTurn("done"),
    ]), tools=[slow_scan])
    '''
)


@pytest.fixture
def kernel(
    jp_serverapp: Any,
    http_server_client: Any,
    jp_http_port: int,
    jp_base_url: str,
    jp_start_kernel: Any,
) -> Any:
    """Start a real kernel whose environment points at the test server, as the
    extension's does, with the agents above defined in it."""

    async def start() -> tuple[Any, Any, Any]:
        env = {
            **os.environ,
            "AGENTKIT_SERVER_URL": f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
            "AGENTKIT_SERVER_TOKEN": jp_serverapp.identity_provider.token,
        }
        manager, client = await jp_start_kernel(env=env)

        async def execute(
            code: str, timeout: float = 30, displays: list[dict[str, Any]] | None = None
        ) -> str:
            out: list[str] = []

            def hook(msg: dict[str, Any]) -> None:
                if msg["msg_type"] in ("display_data", "update_display_data"):
                    if displays is not None:
                        displays.append(msg["content"]["data"])
                elif msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("\n".join(msg["content"]["traceback"]))

            reply = await client.execute_interactive(code, output_hook=hook, timeout=timeout)
            assert reply["content"]["status"] == "ok", "".join(out)
            return "".join(out)

        await execute(AGENT_CODE)
        return manager, client, execute

    return start


async def test_a_notebook_agent_streams_kernel_data_to_any_viewer(
    kernel: Any, ws_connect: Any, api: Any
) -> None:
    _, _, execute = await kernel()
    out = await execute(
        "run = LocalRun(quick, 'How much did EMEA sell?'); print(run.task_id, run.shared)"
    )
    task_id, shared = out.split()
    assert shared == "True"
    messages = await read_until_result(await ws_connect(task_id), timeout=20)
    assert messages[0]["type"] == "connected" and messages[0]["agent"] == "sales-bot"
    steps = [m["data"] for m in messages if m["type"] == "step"]
    observation = next(s for s in steps if s["event_type"] == "observation")
    assert observation["data"]["output"] == "120"  # read from the kernel's dict
    assert messages[-1]["data"]["output"] == "EMEA sold 120 units."
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == list(range(1, len(seqs) + 1))
    # The kernel's own record has the same seq and messages as the server's.
    local = json.loads(
        await execute("run.wait(10); import json; print(json.dumps(run.messages()))")
    )
    assert local == [m for m in messages if "seq" in m]
    _, task = await api("GET", "tasks", task_id)
    assert task["origin"] == "kernel" and task["status"] == "succeeded"
    # A late viewer gets the same replay.
    replay = await read_until_result(await ws_connect(task_id))
    assert replay[0]["status"] == "succeeded" and replay[1:] == messages[1:]


async def test_agent_run_in_a_cell_shows_the_widget_of_a_shared_task(
    kernel: Any, ws_connect: Any, api: Any
) -> None:
    _, _, execute = await kernel()
    displays: list[dict[str, Any]] = []
    out = await execute(
        "w = quick.run('How much did EMEA sell?'); print(w.task_id, w.shared)",
        displays=displays,
    )
    task_id, shared = out.split()
    assert shared == "True"
    # One output: the anywidget view, the task mimetype (re-attach by id) and static HTML.
    (bundle,) = displays
    assert bundle["application/vnd.agentkit.task+json"]["task_id"] == task_id
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "sales-bot" in bundle["text/html"]
    messages = await read_until_result(await ws_connect(task_id), timeout=20)
    assert messages[-1]["data"]["output"] == "EMEA sold 120 units."
    # The kernel-side widget follows the same task to the same result.
    out = await execute("r = w.wait(10); print(w.status, r['output'], len(w.steps))")
    assert out.split()[:2] == ["succeeded", "EMEA"]
    assert int(out.split()[-1]) == len([m for m in messages if m["type"] == "step"])
    _, task = await api("GET", "tasks", task_id)
    assert task["origin"] == "kernel" and task["agent"] == "sales-bot"


async def test_agent_run_in_an_async_cell_and_cancel_from_a_viewer(
    kernel: Any, ws_connect: Any
) -> None:
    _, client, execute = await kernel()
    # Top-level await in the cell, while the tool sleeps in the kernel's run thread.
    task_id = (await execute("w = slow.run('scan', display=False); print(w.task_id)")).strip()
    waiting = asyncio.ensure_future(
        execute("result = await w; print(result['status'])", timeout=20)
    )
    ws = await ws_connect(task_id)
    async with asyncio.timeout(10):
        while json.loads(await ws.recv()).get("data", {}).get("event_type") != "tool_call":
            pass
    await ws.send(json.dumps({"type": "cancel", "reason": "enough"}))
    messages = await read_until_result(ws, timeout=5)
    assert messages[-1]["data"]["status"] == "cancelled"
    assert (await asyncio.wait_for(waiting, 10)).strip() == "cancelled"
    out = await execute("print(w.status, w.result['status'], interrupted)")
    assert out.strip() == "cancelled cancelled ['slow_scan']"


async def test_cancel_from_a_websocket_client_stops_the_run_in_the_kernel(
    kernel: Any, ws_connect: Any
) -> None:
    _, _, execute = await kernel()
    task_id = (await execute("run = LocalRun(slow, 'scan'); print(run.task_id)")).strip()
    ws = await ws_connect(task_id)
    async with asyncio.timeout(10):
        while True:  # wait until the tool is running
            message = json.loads(await ws.recv())
            if message.get("data", {}).get("event_type") == "tool_call":
                break
    # The kernel stays responsive while the agent runs.
    assert (await execute("print(1 + 1)", timeout=5)).strip() == "2"
    await ws.send(json.dumps({"type": "cancel"}))
    messages = await read_until_result(ws, timeout=5)
    assert messages[-1]["data"]["status"] == "cancelled"
    cancelled = messages[-2]["data"]
    assert cancelled["event_type"] == "cancelled"
    assert cancelled["data"]["tools"] == ["slow_scan"]
    out = await execute("run.wait(5); print(run.status, interrupted)")
    assert out.strip() == "cancelled ['slow_scan']"


async def test_a_killed_kernel_fails_its_task(kernel: Any, ws_connect: Any, api: Any) -> None:
    manager, _, execute = await kernel()
    task_id = (await execute("run = LocalRun(slow, 'scan'); print(run.task_id)")).strip()
    ws = await ws_connect(task_id)
    assert json.loads(await ws.recv())["type"] == "connected"
    await asyncio.sleep(0.5)
    await manager.shutdown_kernel(now=True)  # SIGKILL, like a crash
    messages = await read_until_result(ws, timeout=10)
    result = messages[-1]["data"]
    assert result["status"] == "failed"
    assert result["error"]["code"] == "kernel_disconnected"
    assert "went away" in result["error"]["message"]
    _, task = await api("GET", "tasks", task_id)
    assert task["status"] == "failed"


async def test_only_the_creating_kernel_may_publish(
    kernel: Any, ws_url: Any, jp_auth_header: dict[str, str], jp_http_port: int, api: Any
) -> None:
    _, _, execute = await kernel()
    task_id = (await execute("run = LocalRun(slow, 'scan'); print(run.task_id)")).strip()
    status, body = await api("GET", "tasks", task_id)
    publish_url = ws_url(task_id).replace("/ws/tasks/", "/ws/publish/")
    for secret in ("wrong", ""):
        ws = await connect(
            publish_url,
            additional_headers={**jp_auth_header, "X-AgentKit-Publish-Token": secret},
        )
        message = json.loads(await ws.recv())
        assert message["data"]["code"] == "forbidden"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4003
    # A second registration's secret is no good for this task either.
    _, other = await api("POST", "kernel-tasks", body={"agent": "x", "input": "y"})
    ws = await connect(
        publish_url,
        additional_headers={**jp_auth_header, "X-AgentKit-Publish-Token": other["publish_token"]},
    )
    assert json.loads(await ws.recv())["data"]["code"] == "forbidden"
    assert "publish_token" not in body and "publish_secret" not in json.dumps(body)
    await execute("run.cancel(); run.wait(5)")


async def test_interrupting_the_kernel_while_it_waits_fails_the_task(
    kernel: Any, ws_connect: Any
) -> None:
    manager, client, execute = await kernel()
    task_id = (await execute("run = LocalRun(slow, 'scan'); print(run.task_id)")).strip()
    ws = await ws_connect(task_id)
    waiting = asyncio.ensure_future(
        client.execute_interactive("run.wait()", timeout=30, output_hook=lambda msg: None)
    )
    await asyncio.sleep(1.0)
    await manager.interrupt_kernel()
    reply = await asyncio.wait_for(waiting, 10)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    messages = await read_until_result(ws, timeout=10)
    assert messages[-1]["data"]["status"] == "failed"
    assert messages[-1]["data"]["error"]["code"] == "kernel_interrupted"


def test_without_a_server_the_run_stays_local_and_says_why() -> None:
    from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn
    from agentkit_jupyter.kernel.client import ServerInfo
    from agentkit_jupyter.kernel.local_run import LocalRun

    agent = Agent("solo", ScriptedGateway([ScriptedTurn("alone")]))
    run = LocalRun(agent, "q", server=ServerInfo("http://127.0.0.1:9/"))
    assert run.shared is False
    assert run.not_shared_reason and "not shared" in run.not_shared_reason
    assert "127.0.0.1:9" in run.not_shared_reason
    assert run.task_id.startswith("local-")
    assert run.wait(10)["output"] == "alone"
    assert [m["type"] for m in run.messages()][-1] == "result"

    quiet = LocalRun(agent, "q", share=False)
    assert quiet.not_shared_reason == "sharing was turned off (share=False)"
    assert quiet.wait(10)["status"] == "succeeded"


async def test_wait_inside_a_running_event_loop_and_await() -> None:
    from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn
    from agentkit_jupyter.kernel.local_run import LocalRun

    agent = Agent("solo", ScriptedGateway([ScriptedTurn("one two three")], token_delay=0.01))
    # A blocking wait() inside a running loop (an async cell) must not deadlock.
    assert LocalRun(agent, "q", share=False).wait(10)["output"] == "one two three"
    assert (await LocalRun(agent, "q", share=False).wait_async())["status"] == "succeeded"


def test_agent_run_in_a_plain_python_script_runs_locally_and_says_why(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            from agentkit_jupyter import Agent
            from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn, tool

            @tool
            def double(x: int) -> int:
                '''Twice x.'''
                return 2 * x

            agent = Agent("doubler", ScriptedGateway([
                ScriptedTurn("Doubling.", [("double", {"x": 21})]),
                lambda ctx: ScriptedTurn(f"It is {ctx.observations[-1]}."),
            ]), tools=[double])
            w = agent.run("Double 21")
            print("result:", w.wait(10)["output"])
            print("shared:", w.shared)
            print("why:", w.not_shared_reason)
            skip = ("token", "usage")
            print("steps:", [s["event_type"] for s in w.steps if s["event_type"] not in skip])
            """
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AGENTKIT_SERVER_URL", "AGENTKIT_SERVER_TOKEN", "JPY_PARENT_PID")
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert lines["result"] == "It is 42."
    assert lines["shared"] == "False"
    assert "No Jupyter server with agentkit-jupyter found" in lines["why"]
    assert lines["steps"] == "['thought', 'tool_call', 'observation', 'final_answer']"
    assert done.stderr == ""


def test_a_local_only_widget_cancels_and_reports_like_a_server_one() -> None:
    from agentkit_jupyter import Agent
    from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn

    agent = Agent(
        "slowpoke",
        ScriptedGateway([ScriptedTurn("never said")], latency=60),
        description="Waits a minute before its first token",
    )
    w = agent.run("q", share=False)
    assert w.shared is False and w.transport == "relay"
    assert w.status in ("queued", "running")
    time.sleep(0.2)  # let the model call start, so the cancel interrupts it
    record = w.cancel()  # a request, like the REST cancel: the record may still say running
    assert record["task_id"] == w.task_id
    result = w.wait(5)
    assert result["status"] == "cancelled"
    assert w.status == "cancelled"
    cancelled = w.steps[-1]
    assert cancelled["event_type"] == "cancelled"
    assert cancelled["data"]["interrupted"] == "llm_call"
    assert "Nothing is left running" in cancelled["data"]["message"]
    # Cancelling a finished run leaves it as it was.
    assert w.cancel()["status"] == "cancelled"
    assert "local only" in repr(w)
    # No server knows it, yet its output carries the whole run for load() (issue 18).
    from agentkit_jupyter.protocol import RUN_LOG_MIMETYPE
    from agentkit_jupyter.tasks.notebook_runs import unpack_run_log

    bundle = w.widget.mimebundle()
    saved = unpack_run_log(bundle[RUN_LOG_MIMETYPE])
    assert saved.record["origin"] == "kernel" and saved.record["status"] == "cancelled"
    assert [m["data"]["event_type"] for m in saved.messages[:-1]][-1] == "cancelled"
    w.close()
