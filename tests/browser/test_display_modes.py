"""A saved notebook with a run in every display mode, reopened in JupyterLab after the
server restarted (issue 21, item 2): every output shows its task view with the steps,
none says "Error displaying widget: model not found".

The notebook (tests/display_modes.py) is executed by nbclient against a first
JupyterLab, its kernel shut down, then signed as JupyterLab signs a notebook it saves
(so its outputs are trusted, and an ipywidgets view would be chosen where it ranks
first) and saved without widget state (JupyterLab's default). The first server stops; a
fresh one starts on the same task history and opens the notebook: once with the new
kernel JupyterLab starts for it (whose widget manager knows no model), once with no
kernel at all.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from display_modes import MODES, execute, outputs_by_mode
from nbformat.sign import NotebookNotary

from .conftest import LabServer, running_lab, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
BROKEN = ("model not found", "Error displaying widget", "Loading widget")


@pytest.fixture(scope="module")
def saved(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The executed notebook, and the first server's home (its task history)."""
    home = tmp_path_factory.mktemp("lab-modes")
    with running_lab(home) as first:
        notebook = execute(first.url, first.token, str(first.root))
    return home, notebook


@pytest.fixture(scope="module")
def lab_server(
    saved: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    """The restarted server: a fresh JupyterLab on the first one's task history.
    Overrides the session's ``lab_server`` for this module (the ``page`` fixture's)."""
    home, notebook = saved
    fresh = tmp_path_factory.mktemp("lab-modes-restarted")
    for path in home.glob("tasks.sqlite3*"):  # the history (and its WAL, if any)
        shutil.copy2(path, fresh / path.name)
    with running_lab(fresh) as server:
        NotebookNotary().sign(notebook)
        nbformat.write(notebook, server.root / "modes.ipynb")
        kernelless = nbformat.from_dict(json.loads(nbformat.writes(notebook)))
        for key in ("kernelspec", "language_info"):
            kernelless.metadata.pop(key, None)
        NotebookNotary().sign(kernelless)
        nbformat.write(kernelless, server.root / "modes-no-kernel.ipynb")
        yield server


def _task_ids(notebook: Any) -> dict[str, str]:
    """mode -> the task its cell ran (named by the output's static copy)."""
    found = {}
    for mode, outs in outputs_by_mode(notebook).items():
        copies = ["".join(o["data"]["text/html"]) for o in outs if "text/html" in o["data"]]
        ids = {i for html in copies for i in re.findall(r"data-task-id='([^']+)'", html)}
        assert len(ids) == 1, (mode, outs)
        found[mode] = ids.pop()
    return found


def _check_every_mode(page: Any, lab_server: LabServer, notebook: Any) -> None:
    cells = page.locator(f"{NOTEBOOK} .jp-Cell")
    cells.nth(len(MODES)).wait_for()
    for index, (mode, task_id) in enumerate(_task_ids(notebook).items(), start=1):
        cell = cells.nth(index)
        cell.scroll_into_view_if_needed()
        view = cell.locator(".ak-task")
        try:
            view.wait_for(timeout=15_000)
        except Exception:
            raise AssertionError(f"{mode}: no task view, but {cell.inner_text()!r}") from None
        assert view.count() == 1, mode
        wait_status(view, "succeeded", timeout=15)
        assert view.get_attribute("data-task-id") == task_id, mode
        # The steps are there, read from the restarted server's history.
        events = [e["data"] for e in lab_server.task(task_id)["events"] if e["type"] == "step"]
        calls = [e["data"]["name"] for e in events if e["event_type"] == "tool_call"]
        assert view.locator(".ak-tool-name").all_inner_texts() == calls, mode
        assert view.locator(".ak-final").count() == 1, mode
        assert MODES[mode][2] in calls, mode
    text = page.locator(NOTEBOOK).inner_text()
    assert not [b for b in BROKEN if b in text], text


def test_every_mode_renders_again_with_a_new_kernel(
    page: Any, lab_server: LabServer, saved: tuple[Path, Any]
) -> None:
    page.goto(lab_server.notebook_url("modes.ipynb"))
    # JupyterLab starts a kernel for the notebook: it knows nothing of the widgets.
    page.wait_for_selector(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']",
        timeout=60_000,
    )
    _check_every_mode(page, lab_server, saved[1])


def test_every_mode_renders_again_without_a_kernel(
    page: Any, lab_server: LabServer, saved: tuple[Path, Any]
) -> None:
    before = {k["id"] for k in lab_server.kernels()}
    page.goto(lab_server.notebook_url("modes-no-kernel.ipynb"))
    # No kernelspec in the notebook: JupyterLab asks which kernel; the answer is none.
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=30_000)
    no_kernel = dialog.locator("button", has_text="No Kernel")
    if no_kernel.count():
        no_kernel.first.click()
    else:
        page.keyboard.press("Escape")
    page.locator(".jp-Dialog").wait_for(state="detached")
    _check_every_mode(page, lab_server, saved[1])
    assert {k["id"] for k in lab_server.kernels()} <= before  # none was started
