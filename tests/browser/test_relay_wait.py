"""Cancel while the cell blocks in ``task.wait()``, on the relay path (VS Code, a refused
WebSocket): the kernel is busy in the cell, yet it handles the view's messages, so the
view gets its steps and its Cancel works, and ``wait()`` returns."""

from __future__ import annotations

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


def test_cancel_during_wait_in_the_same_cell(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "relay-wait.ipynb",
        [
            "import agentkit_jupyter\n"
            "w = agentkit_jupyter.run('demo-slow', 'wait for me', "
            "display='widget', transport='relay')\n"
            "print('python sees', w.wait(120)['status'])",
        ],
    )
    without_task_renderer(page)  # the anywidget view, as VS Code shows it
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    # The relay answers while the cell is still blocked in wait().
    view.locator(".ak-step").first.wait_for(timeout=20_000)
    wait_status(view, "running")
    assert view.get_attribute("data-mode") == "relay"
    task_id = view.get_attribute("data-task-id")
    assert lab_server.task(task_id)["status"] == "running"

    elapsed = click_cancel(view)
    assert elapsed < CANCEL_WITHIN, f"cancel took {elapsed:.3f} s from the click"
    assert lab_server.task(task_id)["status"] == "cancelled"
    # wait() returned with the result, in the same cell.
    page.locator(".jp-OutputArea-output pre", has_text="python sees cancelled").wait_for(
        timeout=10_000
    )
