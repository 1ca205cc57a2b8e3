"""TaskWidget's Python API against a real Jupyter server with the extension.

The server (pytest-jupyter) runs on this test's event loop, so every call that
blocks on it (the widget's REST calls, ``wait()``) runs in a thread here; the
widget's own watcher thread follows the task's WebSocket meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentkit_jupyter.kernel.client import (
    AgentKitAPIError,
    AgentKitClient,
    ServerInfo,
    ServerNotFoundError,
)
from agentkit_jupyter.kernel.widget import TASK_MIMETYPE, TaskWidget, run
from agentkit_jupyter.protocol import RUN_LOG_MIMETYPE
from agentkit_jupyter.tasks.notebook_runs import unpack_run_log

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
STEP_KEYS = {"event_type", "step", "data", "timestamp"}


@pytest.fixture
def server(
    jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> ServerInfo:
    """The running test server, as a notebook user would name it explicitly."""
    return ServerInfo(
        f"http://127.0.0.1:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token
    )


@pytest.fixture
def widgets() -> Iterator[list[TaskWidget]]:
    """Widgets to close after the test (their watcher and relay threads stop)."""
    made: list[TaskWidget] = []
    yield made
    for widget in made:
        widget.close()


@pytest.fixture
def start(server: ServerInfo, widgets: list[TaskWidget]) -> Callable[..., Any]:
    """``await start(agent, input, **run_kwargs)``: ``run()`` with nothing displayed."""

    async def start_(agent: str, text: str, **kwargs: Any) -> TaskWidget:
        kwargs.setdefault("display", False)
        widget = await asyncio.to_thread(run, agent, text, server=server, **kwargs)
        widgets.append(widget)
        return widget

    return start_


@pytest.fixture
def attach(server: ServerInfo, widgets: list[TaskWidget]) -> Callable[..., Any]:
    """``await attach(task_id, **kwargs)``: ``TaskWidget(task_id, server=...)``."""

    async def attach_(task_id: str, **kwargs: Any) -> TaskWidget:
        widget = await asyncio.to_thread(lambda: TaskWidget(task_id, server=server, **kwargs))
        widgets.append(widget)
        return widget

    return attach_


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking widget call, off the server's loop."""
    return await asyncio.to_thread(fn, *args)


async def until(predicate: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return value


# -- run() and attaching by id ------------------------------------------------------


async def test_run_follows_the_task_to_its_result(start: Any) -> None:
    w = await start("demo", "Compare Paris and Berlin")
    assert w.agent == "demo" and w.input == "Compare Paris and Berlin"
    assert w.status in ("queued", "running")
    assert not w.done
    result = await call(w.wait, 15)
    assert result["status"] == "succeeded"
    assert "0.54 times the population" in result["output"]
    assert result["total_steps"] == 3 and result["total_tokens"] > 0
    assert w.status == "succeeded" and w.done
    assert w.result == result
    assert repr(w) == f"TaskWidget(task_id={w.task_id!r}, agent='demo', status='succeeded')"


async def test_attach_by_id_to_a_running_and_to_a_finished_task(
    server: ServerInfo, attach: Any, start: Any
) -> None:
    running = await start("hang-llm", "q")
    w = await attach(running.task_id)
    assert w.task_id == running.task_id and w.agent == "hang-llm" and w.input == "q"
    await until(lambda: w.status == "running")
    assert await call(lambda: w.result) is None

    finished = await start("echo", "ping")
    await call(finished.wait, 10)
    late = await attach(finished.task_id)
    # The record says it ended; the replayed stream brings the result.
    assert late.status == "succeeded"
    assert (await call(late.wait, 10))["output"] == "pong"
    assert (await call(lambda: late.result))["output"] == "pong"
    await call(running.cancel)


async def test_wait_with_a_timeout_and_without(start: Any) -> None:
    w = await start("hang-llm", "q")
    began = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        await call(w.wait, 0.3)
    assert 0.3 <= time.monotonic() - began < 5
    assert str(raised.value) == f"task {w.task_id} did not finish within 0.3 s"
    assert w.status == "running"

    # Without a timeout, wait() returns once the task ends (here by a cancel).
    waiter = asyncio.ensure_future(call(w.wait))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await call(w.cancel)
    assert (await asyncio.wait_for(waiter, 10))["status"] == "cancelled"


async def test_wait_async_and_await(start: Any) -> None:
    w = await start("hang-llm", "q")
    with pytest.raises(TimeoutError, match=rf"^task {w.task_id} did not finish within 0.2 s$"):
        await w.wait_async(timeout=0.2)
    # A timed-out wait leaves the task and later waits alone.
    assert not w.done
    await call(w.cancel)
    assert (await w.wait_async(timeout=10))["status"] == "cancelled"

    echo = await start("echo", "ping")
    result = await asyncio.wait_for(echo, 10)  # `await w` is `await w.wait_async()`
    assert result["status"] == "succeeded" and result["output"] == "pong"
    assert (await echo.wait_async())["output"] == "pong"


# -- steps, cancel, to_json ---------------------------------------------------------


async def test_steps_are_plain_dicts_of_every_event(start: Any, server: ServerInfo) -> None:
    w = await start("demo", "Compare Paris and Berlin")
    await call(w.wait, 15)
    steps = await call(lambda: w.steps)
    assert steps and all(type(s) is dict and set(s) == STEP_KEYS for s in steps)
    assert json.loads(json.dumps(steps)) == steps  # plain JSON data, nothing else
    kinds = [s["event_type"] for s in steps if s["event_type"] != "token"]
    assert kinds.count("tool_call") == 3 and kinds.count("observation") == 3
    assert kinds[-1] == "final_answer"
    calls = [s["data"]["name"] for s in steps if s["event_type"] == "tool_call"]
    assert calls == ["lookup_city", "lookup_city", "calculator"]
    # Exactly the server's log, in order.
    with AgentKitClient(server) as client:
        record = await call(client.get_task, w.task_id)
    assert steps == [m["data"] for m in record["events"] if m["type"] == "step"]


async def test_cancel_a_running_task(start: Any) -> None:
    w = await start("hang-llm", "q")
    await until(lambda: w.status == "running")
    record = await call(w.cancel)
    assert record["task_id"] == w.task_id  # a request: the record may still say running
    result = await call(w.wait, 10)
    assert result["status"] == "cancelled" and result["task_id"] == w.task_id
    assert w.status == "cancelled"
    steps = await call(lambda: w.steps)
    assert steps[-1]["event_type"] == "cancelled"
    assert steps[-1]["data"]["interrupted"] == "llm_call"


async def test_cancel_a_finished_task_leaves_it_as_it_was(start: Any) -> None:
    w = await start("echo", "ping")
    result = await call(w.wait, 10)
    record = await call(w.cancel)  # the server says 409; the widget answers the record
    assert record["status"] == "succeeded" and record["result"] == result
    assert w.status == "succeeded"
    assert (await call(lambda: w.result))["output"] == "pong"


async def test_to_json_round_trip(start: Any) -> None:
    w = await start("demo", "Compare Paris and Berlin")
    result = await call(w.wait, 15)
    text = await call(w.to_json)
    data = json.loads(text)
    assert data["task_id"] == w.task_id and data["agent"] == "demo"
    assert data["input"] == "Compare Paris and Berlin"
    assert data["status"] == "succeeded" and data["result"] == result
    assert data["steps"] == await call(lambda: w.steps)
    assert "events" not in data and "ws_url" not in data
    assert data == await call(w.to_dict)
    # json.dumps keyword arguments pass through.
    pretty = await call(lambda: w.to_json(indent=2, sort_keys=True))
    assert pretty.startswith('{\n  "agent": "demo"') and json.loads(pretty) == data


# -- errors -----------------------------------------------------------------------


async def test_an_unknown_task_id_is_a_clear_error(server: ServerInfo) -> None:
    with pytest.raises(AgentKitAPIError) as raised:
        await call(lambda: TaskWidget("no-such-task", server=server))
    error = raised.value
    assert error.status == 404 and error.code == "unknown_task"
    assert "No task 'no-such-task' on the server at http://127.0.0.1:" in str(error)


async def test_an_unknown_agent_is_a_clear_error(server: ServerInfo) -> None:
    with pytest.raises(AgentKitAPIError) as raised:
        await call(lambda: run("dmeo", "q", server=server, display=False))
    assert raised.value.code == "unknown_agent"
    assert "Unknown agent 'dmeo'" in str(raised.value) and "demo" in str(raised.value)


def test_server_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENTKIT_SERVER_URL", "AGENTKIT_SERVER_TOKEN", "JPY_PARENT_PID"):
        monkeypatch.delenv(name, raising=False)
    for attempt in (lambda: TaskWidget("abc"), lambda: run("demo", "q", display=False)):
        with pytest.raises(ServerNotFoundError) as raised:
            attempt()
        message = str(raised.value)
        assert message.startswith("No Jupyter server with agentkit-jupyter found")
        assert "server=ServerInfo(url, token)" in message and "AGENTKIT_SERVER_URL" in message


def test_server_unreachable() -> None:
    # A port nothing listens on (the discard port, closed on test machines).
    with pytest.raises(ServerNotFoundError, match=r"^Cannot reach the Jupyter server at "):
        TaskWidget("abc", server=ServerInfo("http://127.0.0.1:9/"))


# -- the output: static HTML, task mimetype --------------------------------------------


class FakeHandle:
    """Stands for IPython's DisplayHandle (no IPython shell in these tests)."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundles = [bundle]
        self.updated = threading.Event()

    def update(self, bundle: dict[str, Any], raw: bool = False) -> None:
        assert raw
        self.bundles.append(bundle)
        self.updated.set()


async def test_static_html_in_the_output_is_updated_when_the_task_ends(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import IPython.display

    handles: list[FakeHandle] = []

    def fake_display(bundle: dict[str, Any], raw: bool = False, display_id: bool = False) -> Any:
        assert raw and display_id
        handles.append(FakeHandle(bundle))
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", fake_display)
    w = await start("hang-llm", "What is <b>bold</b>?", display=True)
    assert len(handles) == 1
    first = handles[0].bundles[0]
    assert first[WIDGET_VIEW]["model_id"] == w.model_id
    assert first["text/plain"] == repr(w)
    html = first["text/html"]
    assert f"data-task-id='{w.task_id}'" in html and "hang-llm" in html
    assert "Running: this static copy is updated when the task ends" in html
    assert "What is &lt;b&gt;bold&lt;/b&gt;?" in html  # escaped, never markup
    # An explicit server is not necessarily the page's: no attach-by-id output.
    assert TASK_MIMETYPE not in first
    # No run log while it runs (it would import as a run that never ends).
    assert RUN_LOG_MIMETYPE not in first

    await call(w.cancel)
    await call(w.wait, 10)
    assert await asyncio.to_thread(handles[0].updated.wait, 10)
    final = handles[0].bundles[-1]["text/html"]
    assert "Running:" not in final
    assert "<b>cancelled</b>" in final and "Cancelled:" in final
    assert handles[0].bundles[-1]["text/plain"].endswith("status='cancelled')")
    # The final output carries the run's record and whole log, even with an explicit
    # server (a notebook can be loaded into any server).
    run_log = handles[0].bundles[-1][RUN_LOG_MIMETYPE]
    assert run_log["task"]["task_id"] == w.task_id and run_log["task"]["status"] == "cancelled"
    assert unpack_run_log(run_log).messages[-1]["type"] == "result"

    # Displayed after the end, a widget shows the final copy at once.
    again = w.show()
    assert "Running:" not in again.bundles[-1]["text/html"]


async def test_static_html_of_a_finished_run_has_the_steps_and_answer(start: Any) -> None:
    w = await start("demo", "Compare Paris and Berlin")
    await call(w.wait, 15)
    html = w.mimebundle()["text/html"]
    assert "<b>succeeded</b>" in html and "3 steps" in html
    # each call in its step's body (its summary line names it too)
    assert html.count("<code><b>lookup_city</b></code>") == 2 and "calculator" in html
    assert html.count("<details><summary><b>Step ") == 2  # step 3 is the answer, below
    assert "<b>Answer:</b>" in html and "0.54 times the population" in html


async def test_the_task_mimetype_is_there_when_attaching_by_id(attach: Any, start: Any) -> None:
    w = await start("echo", "ping")
    by_id = await attach(w.task_id, attach_by_id=True)
    assert by_id.mimebundle()[TASK_MIMETYPE] == {"task_id": w.task_id, "agent": "echo"}
    # display="widget" too: a saved output without it cannot render after a restart.
    assert by_id.mimebundle("widget") == by_id.mimebundle()


# -- the relay: the widget's custom messages ---------------------------------------------


class RelayRecorder:
    """Records what the widget sends its front end (``relay_batch``, ``relay_error``)."""

    def __init__(self, widget: TaskWidget, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        monkeypatch.setattr(widget, "send", self.record)

    def record(self, content: dict[str, Any], buffers: Any = None) -> None:
        with self.lock:
            self.sent.append(json.loads(json.dumps(content)))  # what the comm would carry

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [m for batch in self.sent for m in batch.get("messages", [])]


def front_end(widget: TaskWidget, content: Any) -> None:
    """A custom message from the view, as the comm delivers it."""
    widget._on_custom_msg(widget, content, [])


def _check_contiguous(messages: list[dict[str, Any]], first: int = 1) -> None:
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(first, first + len(seqs))), seqs
    assert messages[-1]["type"] == "result"
    assert all(m["type"] == "step" for m in messages[:-1])


async def test_relay_sends_the_log_then_after_a_given_seq(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await start("demo", "Compare Paris and Berlin", transport="relay")
    assert w.transport == "relay"
    await call(w.wait, 15)
    recorder = RelayRecorder(w, monkeypatch)

    front_end(w, {"type": "relay", "task_id": w.task_id, "after": 0})
    messages = await until(lambda: (m := recorder.messages()) and m[-1]["type"] == "result" and m)
    _check_contiguous(messages)
    assert messages[-1]["data"]["status"] == "succeeded"
    batch = recorder.sent[0]
    assert batch["type"] == "relay_batch" and batch["task_id"] == w.task_id
    assert batch["task"]["agent"] == "demo" and batch["task"]["status"] == "succeeded"
    assert "events" not in batch["task"]
    # The stream is the server's log.
    steps = [m["data"] for m in messages if m["type"] == "step"]
    assert steps == await call(lambda: w.steps)

    # A view that has everything up to N asks for the rest only.
    middle = messages[len(messages) // 2]["seq"]
    recorder.sent.clear()
    front_end(w, {"type": "relay", "after": middle})
    rest = await until(lambda: recorder.messages())
    _check_contiguous(rest, first=middle + 1)


async def test_relay_of_a_live_run_and_cancel_through_it(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await start("demo-slow", "the archive", transport="relay")
    recorder = RelayRecorder(w, monkeypatch)
    front_end(w, {"type": "relay", "after": 0})
    # Always an answer, even before the first event: the view learns the record.
    await until(lambda: recorder.sent)
    assert recorder.sent[0]["task"]["agent"] == "demo-slow"
    # Live events keep coming through.
    await until(lambda: len(recorder.messages()) >= 3)
    # The kernel cancels through the server's REST API: a blocking call, so off the loop.
    await asyncio.to_thread(front_end, w, {"type": "cancel", "task_id": w.task_id})
    assert (await call(w.wait, 10))["status"] == "cancelled"
    messages = await until(lambda: (m := recorder.messages()) and m[-1]["type"] == "result" and m)
    _check_contiguous(messages)  # backlog then live: no gap, no duplicate
    assert messages[-1]["data"]["status"] == "cancelled"
    assert messages[-2]["data"]["event_type"] == "cancelled"
    assert not [b for b in recorder.sent if b["type"] == "relay_error"]


async def test_relay_ignores_malformed_messages(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await start("echo", "ping")
    await call(w.wait, 10)
    recorder = RelayRecorder(w, monkeypatch)
    for content in ("garbage", None, [], {"type": "nonsense"}, {"no": "type"}):
        front_end(w, content)
    await asyncio.sleep(0.1)
    assert recorder.sent == []
    # A bad `after` counts as 0: the whole log.
    front_end(w, {"type": "relay", "after": "not a number"})
    messages = await until(lambda: (m := recorder.messages()) and m[-1]["type"] == "result" and m)
    _check_contiguous(messages)


async def test_a_failed_cancel_through_the_relay_is_reported(
    start: Any, server: ServerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await start("hang-llm", "q")
    recorder = RelayRecorder(w, monkeypatch)
    front_end(w, {"type": "relay", "after": 0})
    await until(lambda: recorder.sent)
    # The task disappears from the server: the kernel cannot cancel it any more.
    with AgentKitClient(server) as client:
        await call(client.delete_task, w.task_id)
    await asyncio.to_thread(front_end, w, {"type": "cancel"})
    errors = await until(
        lambda: [b for b in recorder.sent if "Cancel failed" in b.get("error", "")]
    )
    assert errors[0]["type"] == "relay_error" and errors[0]["task_id"] == w.task_id
    assert "unknown_task" in errors[0]["error"], errors
