"""The task view and the Agent tasks panel in a real JupyterLab, in headless Chromium."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import (
    LabServer,
    click_cancel,
    open_notebook,
    run_cell,
    save_notebook,
    screenshot_path,
    task_view,
    wait_status,
    wait_until,
)

pytestmark = pytest.mark.browser

TASK_MIME = "application/vnd.agentkit.task+json"
# The bar: the view shows the run cancelled within a second of the click.
CANCEL_WITHIN = 1.0


def test_demo_steps_arrive_live_and_the_output_is_saved(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "demo.ipynb",
        [
            "import agentkit_jupyter\nw = agentkit_jupyter.run('demo', 'Compare Paris and Berlin')",
            "print(w.wait(30)['status'], len(w.steps))",
        ],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    assert view.get_attribute("data-mode") == "direct"  # the mime renderer, by task id
    wait_status(view, "succeeded")
    task_id = view.get_attribute("data-task-id")

    # Steps appeared one by one, streaming thoughts first, never all at once (the
    # third step streams the answer, then gives way to the answer box).
    timeline = page.evaluate("window.__akTimeline")
    steps = [e["t"] for e in timeline if "ak-step" in e["cls"].split()]
    observations = [e["t"] for e in timeline if "ak-observation" in e["cls"]]
    assert len(steps) == 3 and len(observations) == 3, timeline
    assert steps == sorted(steps) and steps[-1] - steps[0] > 200, timeline
    assert observations[-1] - observations[0] > 200, timeline
    assert any("ak-streaming" in e["cls"] for e in timeline), "no token streaming seen"

    assert view.locator(".ak-step").count() == 2
    assert view.locator(".ak-call").count() == 3
    assert view.locator(".ak-tool-name").all_inner_texts() == [
        "lookup_city",
        "lookup_city",
        "calculator",
    ]
    assert "0.54 times the population" in view.locator(".ak-final").inner_text()
    assert view.locator(".ak-status").inner_text() == "Succeeded"
    assert view.locator(".ak-meta-steps").inner_text() == "3 steps"
    assert "tokens" in view.locator(".ak-meta-tokens").inner_text()
    assert view.locator(".ak-cancel").is_disabled()
    assert lab_server.task(task_id)["status"] == "succeeded"

    # The Python side agrees (wait() and steps through the server API).
    run_cell(page, 1)
    page.locator(".jp-OutputArea-output pre", has_text="succeeded").wait_for()

    # The saved output re-attaches by id, and its static HTML was updated at the end.
    saved = save_notebook(page, lab_server, name)
    data = saved["cells"][0]["outputs"][0]["data"]
    assert data[TASK_MIME] == {"task_id": task_id, "agent": "demo"}
    assert "application/vnd.jupyter.widget-view+json" in data
    html = "".join(data["text/html"])
    assert "succeeded" in html and "0.54 times the population" in html

    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.screenshot(
        path=str(screenshot_path("widget.png"))
    )


def _start_slow(page: Any, lab_server: LabServer, name: str, busy: bool) -> tuple[Any, str]:
    cells = ["import agentkit_jupyter\nw = agentkit_jupyter.run('demo-slow', 'the archive')"]
    if busy:
        cells.append("import time\ntime.sleep(30)")
    lab_server.write_notebook(name, cells)
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    view.locator(".ak-step").first.wait_for()
    wait_status(view, "running")
    task_id = view.get_attribute("data-task-id")
    assert lab_server.task(task_id)["status"] == "running"
    return view, task_id


def _cancel_and_check(view: Any, lab_server: LabServer, task_id: str) -> float:
    elapsed = click_cancel(view)
    assert view.locator(".ak-status").inner_text() == "Cancelled"
    assert view.locator(".ak-cancel").is_disabled()
    assert view.locator(".ak-cancelled").count() >= 1
    task = lab_server.task(task_id)
    assert task["status"] == "cancelled"
    assert task["result"]["status"] == "cancelled"
    return elapsed


def test_cancel_stops_a_slow_run(page: Any, lab_server: LabServer) -> None:
    view, task_id = _start_slow(page, lab_server, "cancel.ipynb", busy=False)
    elapsed = _cancel_and_check(view, lab_server, task_id)
    assert elapsed < CANCEL_WITHIN, f"cancel took {elapsed:.3f} s from the click"


def test_cancel_works_while_the_kernel_is_busy(page: Any, lab_server: LabServer) -> None:
    view, task_id = _start_slow(page, lab_server, "busy.ipynb", busy=True)
    run_cell(page, 1)  # time.sleep(30)
    indicator = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator"
    page.wait_for_selector(f"{indicator}[data-status='busy']")
    steps_before = view.locator(".ak-step").count()
    # The view keeps streaming while the kernel sleeps: it does not go through it.
    wait_until(lambda: view.locator(".ak-step").count() > steps_before, timeout=10)
    elapsed = _cancel_and_check(view, lab_server, task_id)
    assert elapsed < CANCEL_WITHIN, f"cancel took {elapsed:.3f} s from the click"
    assert page.locator(f"{indicator}[data-status='busy']").count() == 1


def test_reload_reattaches_finished_tasks(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "reload.ipynb",
        ["import agentkit_jupyter\nw = agentkit_jupyter.run('demo', 'Compare Rome and Madrid')"],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    wait_status(view, "succeeded")
    task_id = view.get_attribute("data-task-id")
    answer = view.locator(".ak-final").inner_text()
    calls = view.locator(".ak-call").count()
    save_notebook(page, lab_server, name)
    # A new kernel knows nothing of the old widget model: the view re-attaches by id.
    for kernel in lab_server.kernels():
        lab_server.api("DELETE", f"api/kernels/{kernel['id']}")

    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    view = task_view(page)
    view.wait_for()
    wait_status(view, "succeeded", timeout=10)
    assert view.get_attribute("data-task-id") == task_id
    assert view.locator(".ak-call").count() == calls
    assert view.locator(".ak-step").count() == 2
    assert view.locator(".ak-final").inner_text() == answer
    assert "Rome" in view.locator(".ak-input").inner_text()


def test_side_panel_lists_tasks_opens_and_starts_them(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "panel.ipynb",
        [
            "import agentkit_jupyter\n"
            "a = agentkit_jupyter.run('demo', 'Compare Warsaw and Amsterdam')\n"
            "b = agentkit_jupyter.run('demo-slow', 'panel question')"
        ],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    task_view(page, 1).wait_for()
    fast_id = task_view(page, 0).get_attribute("data-task-id")
    slow_id = task_view(page, 1).get_attribute("data-task-id")

    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='agentkit-tasks-panel']")
    tab.click()
    panel = page.locator("#agentkit-tasks-panel")
    panel.wait_for()
    fast = panel.locator(f".ak-task-row[data-task-id='{fast_id}']")
    slow = panel.locator(f".ak-task-row[data-task-id='{slow_id}']")
    fast.wait_for()
    slow.wait_for()
    assert "Warsaw" in fast.inner_text() and "panel question" in slow.inner_text()
    wait_until(lambda: fast.get_attribute("data-status") == "succeeded", timeout=15)
    assert slow.get_attribute("data-status") == "running"

    # Open the slow task in the main area and cancel it there.
    slow.locator(".ak-task-open").click()
    main = page.locator(f"#agentkit-task-{slow_id} .ak-task")
    main.wait_for()
    main.locator(".ak-step").first.wait_for()
    wait_status(main, "running")
    elapsed = click_cancel(main)
    assert elapsed < CANCEL_WITHIN, f"cancel took {elapsed:.3f} s from the click"
    assert lab_server.task(slow_id)["status"] == "cancelled"
    # The notebook's view of the same task (in a background tab now) saw it too.
    notebook_view = page.locator(f".jp-NotebookPanel .ak-task[data-task-id='{slow_id}']")
    wait_status(notebook_view, "cancelled", timeout=5)
    wait_until(lambda: slow.get_attribute("data-status") == "cancelled", timeout=5)

    # Start a demo task from the panel: it opens in the main area.
    panel.locator("select.ak-agent-select").select_option("demo")
    panel.locator("textarea.ak-input-field").fill("Compare Vienna and Lisbon")
    panel.locator("button.ak-start").click()
    started = page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .ak-task")
    started.wait_for()
    wait_status(started, "succeeded")
    assert "Vienna" in started.locator(".ak-final").inner_text()
    new = [t for t in lab_server.tasks() if t["input"] == "Compare Vienna and Lisbon"]
    assert len(new) == 1 and new[0]["status"] == "succeeded"
    panel.locator(f".ak-task-row[data-task-id='{new[0]['task_id']}']").wait_for()


def _luminance(css_color: str) -> float:
    """Relative luminance (0 black .. 1 white) of an `rgb(...)`/`rgba(...)` color."""
    channels = [float(c) for c in css_color[css_color.index("(") + 1 : -1].split(",")[:3]]
    return sum(w * c / 255 for w, c in zip((0.2126, 0.7152, 0.0722), channels, strict=True))


def test_a_saved_output_reattaches_without_a_kernel_and_follows_the_theme(
    page: Any, lab_server: LabServer
) -> None:
    # A task run from elsewhere (REST), and a notebook saved with its output only.
    created = lab_server.api(
        "POST", "agentkit/api/tasks", json={"agent": "demo", "input": "Compare Lisbon and Warsaw"}
    ).json()
    task_id = created["task_id"]
    wait_until(lambda: lab_server.task(task_id)["status"] == "succeeded", timeout=30)
    name = lab_server.write_notebook("saved.ipynb", ["# ran yesterday"])
    notebook = lab_server.read_notebook(name)
    notebook["cells"][0]["outputs"] = [
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {
                TASK_MIME: {"task_id": task_id, "agent": "demo"},
                "text/plain": f"TaskWidget(task_id={task_id!r})",
            },
        }
    ]
    (lab_server.root / name).write_text(json.dumps(notebook))

    theme_file = lab_server.root.parent / "settings" / "@jupyterlab" / "apputils-extension"
    theme_file = theme_file / "themes.jupyterlab-settings"
    colors: dict[str, tuple[str, str, str]] = {}
    try:
        for theme in ("JupyterLab Light", "JupyterLab Dark"):
            theme_file.write_text(json.dumps({"theme": theme}))
            page.goto(lab_server.notebook_url(name))
            view = task_view(page)
            view.wait_for()
            # Re-rendered from the server by task id: no kernel output, no widget model.
            wait_status(view, "succeeded", timeout=15)
            assert view.get_attribute("data-task-id") == task_id
            assert view.locator(".ak-call").count() == 3
            assert "Lisbon" in view.locator(".ak-input").inner_text()
            page.wait_for_function(
                "name => document.body.dataset.jpThemeName === name", arg=theme
            )
            colors[theme] = view.evaluate(
                """n => [getComputedStyle(n).backgroundColor, getComputedStyle(n).color,
                         getComputedStyle(document.body).getPropertyValue('--jp-layout-color1')]"""
            )
    finally:
        theme_file.unlink(missing_ok=True)
    light_bg, light_fg, _ = colors["JupyterLab Light"]
    dark_bg, dark_fg, _ = colors["JupyterLab Dark"]
    assert _luminance(light_bg) > 0.8 and _luminance(light_fg) < 0.4, colors
    assert _luminance(dark_bg) < 0.3 and _luminance(dark_fg) > 0.6, colors
