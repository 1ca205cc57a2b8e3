"""The object ``agentkit_jupyter.run()`` and ``Agent.run()`` return, as a newcomer meets it
(issue 21, item 7): Tab completion offers the handful of names that matter, the live
view is shown through its rich repr, and mistakes are said in one short line.

Most tests run against an in-process server (pytest-jupyter), blocking calls in a
thread as in test_widget.py; the kernel test runs the user's cells in a real kernel,
where Tab completion and tracebacks are what JupyterLab shows.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import agentkit_jupyter as ak
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn
from agentkit_jupyter.kernel.client import AgentKitAPIError, AgentKitClient, ServerInfo
from agentkit_jupyter.kernel.handle import (
    AgentNotFound,
    CancelOutcome,
    TaskHandle,
    TaskStillRunning,
)
from agentkit_jupyter.kernel.widget import TaskWidget

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
HANDLE_API = {
    "agent",
    "cancel",
    "done",
    "input",
    "not_shared_reason",
    "result",
    "shared",
    "show",
    "status",
    "steps",
    "task_id",
    "to_dict",
    "to_json",
    "wait",
    "wait_async",
    "widget",
}
# A few of the ~70 names a DOMWidget brings, which Tab used to offer.
WIDGET_NOISE = {"add_class", "blur", "layout", "observe", "keys", "comm", "hold_sync"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def server(
    jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> ServerInfo:
    return ServerInfo(
        f"http://127.0.0.1:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token
    )


@pytest.fixture
def handles() -> Iterator[list[TaskHandle]]:
    made: list[TaskHandle] = []
    yield made
    for handle in made:
        handle.widget.close()


@pytest.fixture
def start(server: ServerInfo, handles: list[TaskHandle]) -> Callable[..., Any]:
    """``await start(agent, input)``: ``agentkit_jupyter.run()`` with nothing displayed."""

    async def start_(agent: str, text: str, **kwargs: Any) -> TaskHandle:
        kwargs.setdefault("display", False)
        handle = await asyncio.to_thread(ak.run, agent, text, server=server, **kwargs)
        handles.append(handle)
        return handle

    return start_


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def task_count(server: ServerInfo) -> int:
    with AgentKitClient(server) as client:
        return len(client.list_tasks())


def local_agent(latency: float = 0.0) -> ak.Agent:
    return ak.Agent("solo", ScriptedGateway([ScriptedTurn("one two three")], latency=latency))


# -- what Tab offers --------------------------------------------------------------------


def public_api() -> set[str]:
    """The handle's own public names (HANDLE_API, and any added to the class since)."""
    return {n for c in TaskHandle.__mro__[:-1] for n in vars(c) if not n.startswith("_")}


async def test_run_returns_a_small_handle_whose_dir_is_its_api(start: Any) -> None:
    task = await start("echo", "ping")
    assert isinstance(task, TaskHandle) and isinstance(task.widget, TaskWidget)
    assert set(dir(task)) == public_api() and HANDLE_API <= public_api()
    assert not WIDGET_NOISE & set(dir(task))
    assert len(dir(TaskWidget)) > 3 * len(dir(task))  # what Tab offered before
    assert (await call(task.wait, 10))["output"] == "pong"
    assert repr(task) == f"TaskHandle(task_id={task.task_id!r}, agent='echo', status='succeeded')"


def test_agent_run_and_start_return_the_same_handle() -> None:
    agent = local_agent()
    for task in (agent.run("q", share=False), agent.start("q", share=False)):
        try:
            assert isinstance(task, TaskHandle)
            assert set(dir(task)) == public_api()
            assert task.wait(10)["output"] == "one two three"
            assert task.shared is False
            assert task.not_shared_reason == "sharing was turned off (share=False)"
            assert repr(task).endswith(
                "status='succeeded', local only: sharing was turned off (share=False))"
            )
            # What start() used to return (the LocalRun) still answers through it.
            assert task.messages()[-1]["type"] == "result"
        finally:
            task.widget.close()


# -- older code keeps working -------------------------------------------------------------


async def test_the_widget_attributes_older_code_used_still_work(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = await start("demo", "Compare Paris and Berlin", transport="relay")
    widget = task.widget
    # Read through the handle, though Tab does not offer them.
    assert task.model_id == widget.model_id and task.transport == "relay"
    assert task.mimebundle()[WIDGET_VIEW]["model_id"] == widget.model_id
    assert task.client is widget.client
    # Set (or patched) through the handle: the widget's.
    sent: list[Any] = []
    monkeypatch.setattr(task, "send", lambda content, buffers=None: sent.append(content))
    assert widget.send is not TaskWidget.send
    result = await call(task.wait, 15)
    assert task.result == result and task.done and task.status == "succeeded"
    steps = await call(lambda: task.steps)
    assert steps and all(set(s) == {"event_type", "step", "data", "timestamp"} for s in steps)
    assert (await call(task.to_dict))["steps"] == steps
    assert (await task.wait_async(5)) == result and (await task) == result
    # cancel() used to return the task's record: its keys still read it.
    outcome = await call(task.cancel)
    assert outcome["status"] == "succeeded" and outcome["result"] == result
    with pytest.raises(AttributeError, match="'TaskHandle' object has no attribute 'nope'"):
        _ = task.nope
    with pytest.raises(AttributeError):
        task.status = "failed"  # type: ignore[misc]


# -- display ------------------------------------------------------------------------------


async def test_the_handle_shows_the_live_view_through_its_rich_repr(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import IPython.display

    shown: list[dict[str, Any]] = []

    class Handle:
        def update(self, bundle: dict[str, Any], raw: bool = False) -> None:
            shown.append(bundle)

    def fake_display(bundle: dict[str, Any], raw: bool = False, display_id: bool = False) -> Any:
        shown.append(bundle)
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    task = await start("echo", "ping", display=True)
    await call(task.wait, 10)
    bundle = task._repr_mimebundle_()
    # The widget's own output: its view, the static copy, and a text that names the handle.
    assert bundle[WIDGET_VIEW]["model_id"] == task.widget.model_id
    assert "<b>succeeded</b>" in bundle["text/html"]
    assert bundle["text/plain"] == repr(task)
    assert shown and shown[0][WIDGET_VIEW]["model_id"] == task.widget.model_id
    # At the end of another cell, the handle displays the view again.
    before = len(shown)
    task._ipython_display_()
    assert len(shown) > before and shown[-1]["text/plain"] == repr(task)


# -- cancel() says what it did -------------------------------------------------------------


async def test_cancel_returns_a_short_status(start: Any) -> None:
    running = await start("hang-llm", "q")
    outcome = await call(running.cancel)
    assert isinstance(outcome, CancelOutcome) and outcome == "cancel requested"
    assert outcome.requested and outcome["task_id"] == running.task_id
    assert (await call(running.wait, 10))["status"] == "cancelled"

    finished = await start("echo", "ping")
    await call(finished.wait, 10)
    again = await call(finished.cancel)
    assert again == "already succeeded" and not again.requested
    assert repr(again) == "'already succeeded'"  # one short line in a cell, no record dump
    assert finished.status == "succeeded"
    assert (await call(running.cancel)) == "already cancelled"


def test_cancel_of_a_local_run_says_the_same() -> None:
    task = local_agent(latency=30).run("q", share=False)
    try:
        assert task.cancel() == "cancel requested"
        assert task.wait(10)["status"] == "cancelled"
        assert task.cancel() == "already cancelled"
    finally:
        task.widget.close()


# -- mistakes, said in one line -----------------------------------------------------------


async def test_an_unknown_agent_is_one_short_error(server: ServerInfo) -> None:
    before = await call(task_count, server)
    with pytest.raises(AgentNotFound) as raised:
        await call(lambda: ak.run("dmeo", "q", server=server, display=False))
    error = raised.value
    assert str(error).startswith("Unknown agent 'dmeo'. Available agents: ")
    assert "demo" in str(error) and "HTTP 404" not in str(error)
    assert isinstance(error, AgentKitAPIError) and error.code == "unknown_agent"
    assert isinstance(error, LookupError)
    # Raised afresh: nothing chained, no frame of the HTTP client.
    assert error.__cause__ is None and error.__suppress_context__
    files = [frame.filename for frame in _frames(error)]
    assert not [f for f in files if f.endswith(("client.py", "widget.py"))], files
    assert await call(task_count, server) == before


async def test_an_empty_input_is_refused_before_anything_is_sent(server: ServerInfo) -> None:
    before = await call(task_count, server)
    for empty in ("", "   \n"):
        with pytest.raises(ValueError, match=r"^The input is empty: ask the agent something"):
            await call(lambda e=empty: ak.run("demo", e, server=server, display=False))
    with pytest.raises(TypeError, match=r"^The input must be text \(a str\), not NoneType"):
        ak.run("demo", None, server=server, display=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^The input is empty"):
        local_agent().run(" ", server=server)
    with pytest.raises(ValueError, match=r"^The input is empty"):
        local_agent().start("", server=server)
    assert await call(task_count, server) == before  # no task, no kernel task registered


async def test_a_wait_that_times_out_says_the_run_goes_on(start: Any) -> None:
    task = await start("hang-llm", "q")
    with pytest.raises(TaskStillRunning) as raised:
        await call(task.wait, 0.3)
    message = str(raised.value)
    assert message == (
        f"Task {task.task_id} (hang-llm) is still running after 0.3 s; it goes on in the "
        "background. Call .wait() again to wait for its result, or .cancel() to stop it."
    )
    assert isinstance(raised.value, TimeoutError) and raised.value.__cause__ is None
    with pytest.raises(TaskStillRunning, match="still running after 0.2 s"):
        await task.wait_async(0.2)
    assert task.status == "running" and not task.done
    await call(task.cancel)
    assert (await call(task.wait, 10))["status"] == "cancelled"


def _frames(error: BaseException) -> list[Any]:
    import traceback

    return list(traceback.extract_tb(error.__traceback__))


# -- in a real kernel: Tab and tracebacks as JupyterLab shows them ----------------------------


async def test_in_a_kernel_tab_offers_the_api_and_errors_show_no_internal_frames(
    jp_serverapp: Any,
    http_server_client: Any,
    jp_http_port: int,
    jp_base_url: str,
    jp_start_kernel: Any,
) -> None:
    env = {
        **os.environ,
        "AGENTKIT_SERVER_URL": f"http://127.0.0.1:{jp_http_port}{jp_base_url}",
        "AGENTKIT_SERVER_TOKEN": jp_serverapp.identity_provider.token,
    }
    _, client = await jp_start_kernel(env=env)

    async def execute(code: str) -> dict[str, Any]:
        reply = await client.execute_interactive(code, output_hook=lambda msg: None, timeout=30)
        return dict(reply["content"])

    assert (await execute("import agentkit_jupyter as ak"))["status"] == "ok"
    assert (await execute("task = ak.run('echo', 'ping', display=False)"))["status"] == "ok"

    # Tab after `task.`: the handle's API, not the DOMWidget's.
    reply = await client.complete("task.", 5, reply=True, timeout=30)
    matches = {m.removeprefix("task.") for m in reply["content"]["matches"]}
    assert matches == public_api() and HANDLE_API <= matches, matches
    reply = await client.complete("ak.r", 4, reply=True, timeout=30)
    assert {m.removeprefix("ak.") for m in reply["content"]["matches"]} == {"run"}

    # Each mistake: one frame (the user's line) and one short last line.
    cases = {
        "ak.run('dmeo', 'q')": ("AgentNotFound", "Unknown agent 'dmeo'. Available agents:"),
        "ak.run('demo', '  ')": ("EmptyInput", "The input is empty: ask the agent something"),
        "slow = ak.run('hang-llm', 'q', display=False)\nslow.wait(0.3)": (
            "TaskStillRunning",
            "is still running after 0.3 s; it goes on in the background.",
        ),
    }
    for code, (name, text) in cases.items():
        error = await execute(code)
        assert error["status"] == "error" and error["ename"] == name, error
        assert text in error["evalue"]
        shown = ANSI.sub("", "\n".join(error["traceback"]))
        assert "agentkit_jupyter" not in shown and "site-packages" not in shown, shown
        assert "During handling" not in shown and "direct cause" not in shown, shown
        assert shown.count("Cell In[") == 1, shown
    assert (await execute("print(slow.cancel()); slow.wait(10)"))["status"] == "ok"
