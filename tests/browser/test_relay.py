"""The anywidget view fed through the kernel (the relay), in a real JupyterLab.

Each page loads JupyterLab without the plugin's renderer of the task mimetype
(``without_task_renderer``), so it renders the anywidget view, as VS Code or Colab
would. That view then gets the stream either through the kernel because
``transport="relay"`` says so, or because the page's WebSocket to the server is
refused (Playwright's ``route_web_socket`` closes it) and it falls back to the
relay.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import (
    LabServer,
    click_cancel,
    open_notebook,
    run_cell,
    task_view,
    wait_status,
    without_task_renderer,
)

pytestmark = pytest.mark.browser

CANCEL_WITHIN = 1.0
# The task streams only; the kernel's own WebSocket (api/kernels/...) is left alone.
TASK_STREAM = re.compile(r".*/agentkit/ws/tasks/.*")


def _refuse_task_websockets(page: Any) -> list[str]:
    """Close every task WebSocket the page opens, as a proxy refusing them would."""
    refused: list[str] = []

    def handler(route: Any) -> None:
        refused.append(route.url)
        route.close(code=1011, reason="refused by the test")

    page.route_web_socket(TASK_STREAM, handler)
    return refused


def _check_demo_view(view: Any, lab_server: LabServer) -> None:
    wait_status(view, "succeeded")
    task_id = view.get_attribute("data-task-id")
    assert view.locator(".ak-tool-name").all_inner_texts() == [
        "lookup_city",
        "lookup_city",
        "calculator",
    ]
    assert view.locator(".ak-observation").count() == 3
    assert "0.54 times the population" in view.locator(".ak-final").inner_text()
    assert view.locator(".ak-status").inner_text() == "Succeeded"
    assert view.locator(".ak-meta-steps").inner_text() == "3 steps"
    assert "Paris" in view.locator(".ak-input").inner_text()
    assert view.locator(".ak-cancel").is_disabled()
    # The relayed stream is the server's log: every step once, in order.
    task = lab_server.task(task_id)
    assert task["status"] == "succeeded"
    calls = [
        e["data"]["data"]["name"]
        for e in task["events"]
        if e["type"] == "step" and e["data"]["event_type"] == "tool_call"
    ]
    assert calls == view.locator(".ak-tool-name").all_inner_texts()


def test_forced_relay_renders_the_steps_and_the_answer(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "relay.ipynb",
        [
            "import agentkit_jupyter\n"
            "w = agentkit_jupyter.run('demo', 'Compare Paris and Berlin', "
            "display='widget', transport='relay')"
        ],
    )
    # No task WebSocket at all may be opened by this page: the kernel carries it.
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url) if "/agentkit/ws/" in ws.url else None)
    without_task_renderer(page)
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    assert page.locator(".jp-OutputArea .agentkit-widget .ak-task").count() == 1
    _check_demo_view(view, lab_server)
    assert view.get_attribute("data-mode") == "relay"
    assert opened == []
    # The steps arrived over time, not in one final batch.
    timeline = page.evaluate("window.__akTimeline")
    steps = [e["t"] for e in timeline if "ak-step" in e["cls"].split()]
    assert len(steps) == 3 and steps[-1] - steps[0] > 200, timeline


def test_cancel_through_the_relay(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "relay-cancel.ipynb",
        [
            "import agentkit_jupyter\n"
            "w = agentkit_jupyter.run('demo-slow', 'relay question', "
            "display='widget', transport='relay')",
            "print('python sees', w.wait(30)['status'])",
        ],
    )
    without_task_renderer(page)
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    view.locator(".ak-step").first.wait_for()
    wait_status(view, "running")
    assert view.get_attribute("data-mode") == "relay"
    task_id = view.get_attribute("data-task-id")
    assert lab_server.task(task_id)["status"] == "running"

    # Mark the live view and the element the widget rendered it into.
    node = view.element_handle()
    node.evaluate("n => { n.__akMark = true; n.parentElement.__akMark = true; }")

    # Through the kernel: view -> comm -> kernel -> REST cancel -> stream -> comm -> view.
    elapsed = click_cancel(view)
    assert elapsed < CANCEL_WITHIN, f"cancel took {elapsed:.3f} s from the click"
    assert view.locator(".ak-status").inner_text() == "Cancelled"
    assert view.locator(".ak-cancel").is_disabled()
    assert view.locator(".ak-cancelled").count() >= 1
    task = lab_server.task(task_id)
    assert task["status"] == "cancelled" and task["result"]["status"] == "cancelled"
    _check_same_calls(view, task)

    run_cell(page, 1)
    page.locator(".jp-OutputArea-output pre", has_text="python sees cancelled").wait_for()
    # At the end the kernel updated the output in place (the static HTML copy), and
    # JupyterLab rendered the widget again into a new element: the same live view
    # moved there, not a new one rebuilt from the server.
    page.wait_for_function(
        "n => n.isConnected && !n.parentElement.__akMark", arg=node, timeout=10_000
    )
    assert node.evaluate("n => n.__akMark === true")
    assert page.locator(".jp-Cell").first.locator(".ak-task").count() == 1


def test_refused_websocket_falls_back_to_the_relay(page: Any, lab_server: LabServer) -> None:
    refused = _refuse_task_websockets(page)
    name = lab_server.write_notebook(
        "fallback.ipynb",
        [
            "import agentkit_jupyter\n"
            "w = agentkit_jupyter.run('demo', 'Compare Paris and Berlin', display='widget')"
        ],
    )
    without_task_renderer(page)
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    _check_demo_view(view, lab_server)
    # It tried the server first (transport="auto"), then went through the kernel.
    assert refused, "the view never tried the direct WebSocket"
    assert view.get_attribute("data-mode") == "relay"
    # And said so.
    notice = view.locator(".ak-notice").inner_text()
    assert "WebSocket to the server failed" in notice and "kernel relays" in notice, notice


def test_refused_websocket_cancel_falls_back_too(page: Any, lab_server: LabServer) -> None:
    refused = _refuse_task_websockets(page)
    name = lab_server.write_notebook(
        "fallback-cancel.ipynb",
        [
            "import agentkit_jupyter\n"
            "w = agentkit_jupyter.run('demo-slow', 'fallback question', display='widget')"
        ],
    )
    without_task_renderer(page)
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    view.locator(".ak-step").first.wait_for()
    wait_status(view, "running")
    page.wait_for_function(
        "el => el.dataset.mode === 'relay'", arg=view.element_handle(), timeout=15_000
    )
    assert refused
    task_id = view.get_attribute("data-task-id")
    elapsed = click_cancel(view)
    assert elapsed < CANCEL_WITHIN, f"cancel took {elapsed:.3f} s from the click"
    assert lab_server.task(task_id)["status"] == "cancelled"
    # Nothing missing, nothing twice: the relay picked up after what the REST log
    # had already delivered to the view.
    _check_same_calls(view, lab_server.task(task_id))


def _check_same_calls(view: Any, task: dict[str, Any]) -> None:
    kinds = [e["data"]["event_type"] for e in task["events"] if e["type"] == "step"]
    assert view.locator(".ak-call").count() == kinds.count("tool_call")
    assert view.locator(".ak-observation").count() == kinds.count("observation")
    assert view.locator(".ak-cancelled").count() == kinds.count("cancelled") == 1
