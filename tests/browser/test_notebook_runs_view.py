"""A run loaded from a notebook (issue 18, part 2) in a real JupyterLab: a notebook whose
output carries a finished ``demo`` run (record and log, as the widget saves it) is
loaded with ``agentkit_jupyter.load()`` into a fresh server with an empty history;
its task's widget (``TaskWidget(id)`` in a cell, the plugin's view by task id) shows
its steps, tool calls, answer and where it was imported from; the side panel marks
it imported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

import agentkit_jupyter as ak
from agentkit_jupyter.core import AgentPool, demo_agents
from agentkit_jupyter.kernel.client import ServerInfo
from agentkit_jupyter.kernel.static_html import render_static_html
from agentkit_jupyter.protocol import RUN_LOG_MIMETYPE, TASK_MIMETYPE
from agentkit_jupyter.tasks import TaskHub
from agentkit_jupyter.tasks.notebook_runs import pack_run_log

from .conftest import LabServer, open_notebook, run_cell, running_lab, task_view, wait_status

pytestmark = pytest.mark.browser

PANEL = "#agentkit-tasks-panel"
TAB = ".jp-SideBar .lm-TabBar-tab[data-id='agentkit-tasks-panel']"


@pytest.fixture(scope="module")
def lab_server(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh JupyterLab: nothing in its history (overrides the session's server)."""
    with running_lab(tmp_path_factory.mktemp("lab-fresh")) as server:
        yield server


async def _demo_run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A finished run of the demo agent, made elsewhere (no server of this test)."""
    hub = TaskHub(AgentPool(demo_agents()))
    task = hub.create_task("demo", "Compare Paris and Rome")
    await task.wait()
    messages = [json.loads(entry.data) for entry in task.log.read_after(0, 10_000)]
    return task.to_dict(), messages


def _saved_notebook(path: Path) -> tuple[str, list[dict[str, Any]]]:
    # A thread of its own: Playwright's sync API holds this thread's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        record, messages = pool.submit(asyncio.run, _demo_run()).result(60)
    output = nbformat.v4.new_output(
        "display_data",
        data={
            "text/plain": "TaskHandle(...)",
            "text/html": render_static_html(record, messages),
            TASK_MIMETYPE: {"task_id": record["task_id"], "agent": "demo"},
            RUN_LOG_MIMETYPE: pack_run_log(record, messages),
        },
    )
    cell = nbformat.v4.new_code_cell('task = ak.run("demo", "Compare Paris and Rome")')
    cell.outputs = [output]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    return str(record["task_id"]), messages


def test_the_loaded_tasks_widget_shows_its_steps(
    page: Any, lab_server: LabServer, tmp_path: Path
) -> None:
    assert lab_server.tasks() == []
    task_id, messages = _saved_notebook(tmp_path / "analysis.ipynb")
    ids = ak.load(tmp_path / "analysis.ipynb", server=ServerInfo(lab_server.url, lab_server.token))
    assert ids == {task_id: task_id}
    assert lab_server.task(task_id)["events"] == messages

    name = lab_server.write_notebook(
        "loaded.ipynb", [f"import agentkit_jupyter as ak\nak.TaskWidget({task_id!r})"]
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    wait_status(view, "succeeded")
    steps = view.locator(".ak-step")
    page.wait_for_function(
        "el => el.querySelectorAll('.ak-step').length >= 2", arg=view.element_handle()
    )
    tools = view.locator(".ak-tool-name").all_text_contents()
    assert tools.count("lookup_city") == 2 and "calculator" in tools, tools
    assert steps.count() >= 2
    assert "0.77 times the population of Rome" in view.locator(".ak-final").inner_text()
    assert "Imported from analysis.ipynb" in view.locator(".ak-imported").inner_text()

    page.locator(TAB).click()
    panel = page.locator(PANEL)
    row = panel.locator(f".ak-task-row[data-task-id='{task_id}']")
    row.wait_for()
    assert row.get_attribute("data-imported") == "true"
    assert row.locator(".ak-task-imported").is_visible()
