"""A task interrupted by a server restart, as JupyterLab shows it, in headless Chromium.

The task history is written before the server starts: a task still ``running`` with
one step, as a server that died mid-run leaves it. The server restores it as
``interrupted`` (its result: ``{"status": "interrupted", "error": {"code":
"server_restarted", ...}}``). The side panel must list it as interrupted without a
Cancel button, and a live view of it (opened from the panel, or re-attached by a
notebook output) must say "Interrupted" with the reason, not "Failed".
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import LabServer, running_lab, wait_status, wait_until

pytestmark = pytest.mark.browser

TASK_ID = "0123456789abcdef"
AGENT = "demo-slow"
INPUT = "the interrupted archive"
THOUGHT = "Reading the archive before the server went down."
REASON = "The server stopped while this task was running"
TASK_MIME = "application/vnd.agentkit.task+json"
# The front end as `jlpm build` leaves it in the source tree. An editable install
# copies it into the environment's share/jupyter/labextensions once, at install time:
# the server is pointed at this one (it takes precedence), so the test checks the
# current build, not whatever copy was installed.
BUILT_EXTENSION = Path(__file__).resolve().parents[2] / "agentkit_jupyter" / "labextension"
# [the element's colour, the theme's warning colour] (resolved the same way).
WARN_COLOUR_SCRIPT = """
el => {
  const probe = document.createElement('span');
  probe.style.color = 'var(--jp-warn-color1, #e65100)';
  el.parentElement.append(probe);
  const warn = getComputedStyle(probe).color;
  probe.remove();
  return [getComputedStyle(el).color, warn];
}
"""


def _write_history(db_path: Path) -> None:
    """A task left ``running`` with one step, as a server killed mid-run leaves it."""
    from agentkit_jupyter import protocol
    from agentkit_jupyter.tasks import TaskStore

    started = time.time() - 30
    store = TaskStore(db_path)
    try:
        store.save_task(
            {
                "task_id": TASK_ID,
                "agent": AGENT,
                "input": INPUT,
                "status": protocol.TaskStatus.RUNNING.value,
                "origin": "server",
                "created_at": started,
                "started_at": started,
                "finished_at": None,
                "result": None,
            }
        )
        event: protocol.StepEventData = {
            "event_type": "thought",
            "step": 1,
            "data": {"text": THOUGHT},
            "timestamp": started + 1,
        }
        store.append_event(TASK_ID, 1, protocol.dumps(protocol.step_message(TASK_ID, 1, event)))
        store.flush()
    finally:
        store.close()


def _built_entry() -> str:
    package = BUILT_EXTENSION / "package.json"
    if not package.exists():
        pytest.fail(f"{package} is missing: build the front end (cd labextension && jlpm build)")
    return str(json.loads(package.read_text())["jupyterlab"]["_build"]["load"])


@pytest.fixture(scope="module")
def lab_server(
    chromium_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    """A JupyterLab whose task history already holds the interrupted task.

    Overrides the session's ``lab_server`` for this module (so the ``page`` fixture
    uses it): that one starts with an empty history.
    """
    _built_entry()
    home = tmp_path_factory.mktemp("lab-interrupted")
    extensions = home / "labextensions"
    extensions.mkdir()
    (extensions / "agentkit-jupyter").symlink_to(BUILT_EXTENSION, target_is_directory=True)
    _write_history(home / "tasks.sqlite3")
    with running_lab(home, f"--LabApp.extra_labextensions_path={extensions}") as server:
        yield server


def test_the_server_restored_the_task_as_interrupted(lab_server: LabServer) -> None:
    task = lab_server.task(TASK_ID)
    assert task["status"] == "interrupted"
    assert task["result"]["status"] == "interrupted"
    assert task["result"]["error"]["code"] == "server_restarted"
    # Its step is kept (the result comes after it, on this page or the next).
    assert task["events"][0]["type"] == "step"
    assert task["events"][0]["data"]["data"]["text"] == THOUGHT


def _assert_current_build(page: Any) -> None:
    """The page loaded the front end of the source tree's build (see BUILT_EXTENSION)."""
    config = json.loads(page.locator("#jupyter-config-data").text_content())
    ours = [e for e in config["federated_extensions"] if e["name"] == "agentkit-jupyter"]
    assert [e["load"] for e in ours] == [_built_entry()], ours


def _assert_interrupted_view(view: Any) -> None:
    wait_status(view, "interrupted", timeout=15)
    assert view.locator(".ak-status").inner_text() == "Interrupted"
    assert view.locator(".ak-status").get_attribute("data-status") == "interrupted"
    notice = view.locator(".ak-notice")
    notice.wait_for()
    assert REASON in notice.inner_text()
    assert notice.get_attribute("data-kind") == "warning"
    assert "Failed" not in view.locator(".ak-header").inner_text()
    # Its events up to the restart are kept and shown.
    assert THOUGHT in view.locator(".ak-thought").first.inner_text()
    assert view.locator(".ak-cancel").is_disabled()


def test_side_panel_shows_it_interrupted_without_cancel(page: Any, lab_server: LabServer) -> None:
    page.goto(f"{lab_server.url}lab?reset&token={lab_server.token}")
    _assert_current_build(page)
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='agentkit-tasks-panel']")
    tab.click()
    panel = page.locator("#agentkit-tasks-panel")
    panel.wait_for()
    row = panel.locator(f".ak-task-row[data-task-id='{TASK_ID}']")
    row.wait_for()
    wait_until(lambda: row.get_attribute("data-status") == "interrupted", timeout=10)
    assert row.locator(".ak-task-status").inner_text() == "interrupted"
    assert INPUT in row.inner_text()
    cancel = row.locator(".ak-task-cancel")
    assert cancel.count() == 1
    assert cancel.is_hidden(), "an interrupted task must not offer Cancel"
    # The panel colours it as a warning (as cancelled), not in the default grey.
    colour, warn = row.locator(".ak-task-status").evaluate(WARN_COLOUR_SCRIPT)
    assert colour == warn

    # Its live view, opened from the panel.
    row.locator(".ak-task-open").click()
    view = page.locator(f"#agentkit-task-{TASK_ID} .ak-task")
    view.wait_for()
    _assert_interrupted_view(view)


def test_notebook_output_reattaches_as_interrupted(page: Any, lab_server: LabServer) -> None:
    # A saved output of the task: the mime renderer re-attaches it by id (no kernel needed).
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": 1,
                "id": "cell-0",
                "metadata": {},
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {
                            TASK_MIME: {"task_id": TASK_ID, "agent": AGENT},
                            "text/plain": [f"TaskWidget(task_id={TASK_ID!r})"],
                        },
                    }
                ],
                "source": "w = agentkit_jupyter.run('demo-slow', 'the interrupted archive')",
            }
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (lab_server.root / "interrupted.ipynb").write_text(json.dumps(notebook))
    page.goto(lab_server.notebook_url("interrupted.ipynb"))
    view = page.locator(f".jp-NotebookPanel .jp-OutputArea .ak-task[data-task-id='{TASK_ID}']")
    view.wait_for()
    assert view.get_attribute("data-mode") == "direct"
    _assert_interrupted_view(view)
