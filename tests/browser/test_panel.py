"""The Agent tasks side panel with a long history, in headless Chromium.

Issues 20.6 (the list downloads summaries, incrementally, and draws only what is in
view), 21.4 (the start form), 21.8 (the list: start time, the input on hover, filters,
"Clear finished"), 21.1 (badge colours with the task view's CSS on the page), 13.7 and
13.2 (warnings for agents that failed to load and for a history that cannot be written)
and 20.11 (bidirectional controls shown visibly).

The server starts with 400 finished tasks of 50 KB input and 50 KB output each in its
history (40 MB in all), plus one whose input holds a U+202E.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import LabServer, running_lab, screenshot_path, wait_until

pytestmark = pytest.mark.browser

BUILT_EXTENSION = Path(__file__).resolve().parents[2] / "agentkit_jupyter" / "labextension"
VIEW_CSS = Path(__file__).resolve().parents[2] / "labextension" / "style" / "view.css"
COUNT = 400
BIG = 50_000
AGENTS = ("demo", "demo-slow")
STATUSES = ("succeeded", "failed", "cancelled")
BIDI_ID = "b1d1b1d1b1d1b1d1"
BIDI_INPUT = "rename invoice_\u202egnp.exe please"
PANEL = "#agentkit-tasks-panel"
TAB = ".jp-SideBar .lm-TabBar-tab[data-id='agentkit-tasks-panel']"


def _task_id(index: int) -> str:
    return f"{index:016x}"


def _input(index: int) -> str:
    # A distinct start, then 50 KB: what the row, the hover and the list carry.
    return f"question {index:03d} about {'Lisbon ' * 40}" + "x" * BIG


def _write_history(db_path: Path) -> float:
    from agentkit_jupyter.tasks import TaskStore

    now = time.time()
    store = TaskStore(db_path)
    try:
        for index in range(COUNT):
            created = now - 3600 - (COUNT - index) * 60  # task 399 is the newest of them
            status = STATUSES[index % 3]
            result: dict[str, Any] = {"status": status, "task_id": _task_id(index)}
            if status == "succeeded":
                result.update(output="y" * BIG, total_steps=2, total_tokens=10)
            elif status == "failed":
                result["error"] = {"code": "llm_error", "message": "z" * BIG}
            else:
                result["reason"] = "cancelled by a viewer"
            store.save_task(
                {
                    "task_id": _task_id(index),
                    "agent": AGENTS[index % 2],
                    "input": _input(index),
                    "status": status,
                    "origin": "server",
                    "created_at": created,
                    "started_at": created,
                    "finished_at": created + 5,
                    "result": result,
                }
            )
        store.save_task(
            {
                "task_id": BIDI_ID,
                "agent": "demo",
                "input": BIDI_INPUT,
                "status": "succeeded",
                "origin": "server",
                "created_at": now - 60,
                "started_at": now - 60,
                "finished_at": now - 58,
                "result": {"status": "succeeded", "task_id": BIDI_ID, "output": "done"},
            }
        )
        store.flush()
    finally:
        store.close()
    return now


@pytest.fixture(scope="module")
def lab_server(
    chromium_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    """A JupyterLab whose history holds 401 tasks (overrides the session's server)."""
    if not (BUILT_EXTENSION / "package.json").exists():
        pytest.fail("build the front end first (cd labextension && jlpm build)")
    home = tmp_path_factory.mktemp("lab-panel")
    extensions = home / "labextensions"
    extensions.mkdir()
    (extensions / "agentkit-jupyter").symlink_to(BUILT_EXTENSION, target_is_directory=True)
    _write_history(home / "tasks.sqlite3")
    with running_lab(home, f"--LabApp.extra_labextensions_path={extensions}") as server:
        yield server


def _open_panel(page: Any, server: LabServer) -> Any:
    page.goto(f"{server.url}lab?reset&token={server.token}")
    page.locator(TAB).click()
    panel = page.locator(PANEL)
    panel.wait_for()
    return panel


def _row(panel: Any, task_id: str) -> Any:
    return panel.locator(f".ak-task-row[data-task-id='{task_id}']")


def _scroll(panel: Any, fraction: float) -> None:
    panel.locator(".ak-task-scroller").evaluate(
        "(el, f) => { el.scrollTop = f * (el.scrollHeight - el.clientHeight); }", fraction
    )


def test_400_large_tasks_render_scroll_and_poll_small(page: Any, lab_server: LabServer) -> None:
    answers: list[tuple[str, int]] = []

    def on_response(response: Any) -> None:
        if re.search(r"agentkit/api/tasks(\?|$)", response.url):
            answers.append((response.url, len(response.body())))

    page.on("response", on_response)
    panel = _open_panel(page, lab_server)
    newest = _row(panel, BIDI_ID)
    newest.wait_for()
    assert panel.locator(".ak-task-count").inner_text() == str(COUNT + 1)
    # Only a screenful of rows (plus a few) is in the DOM, not 401.
    drawn = panel.locator(".ak-task-row").count()
    assert 5 <= drawn < 60, drawn
    # The first answer is summaries: 40 MB of texts became well under a megabyte.
    page.wait_for_timeout(100)
    assert answers and answers[0][1] < 1_000_000, answers[0]

    panel.screenshot(path=str(screenshot_path("panel.png")))

    # Scrolling shows later rows: the middle, then the oldest task.
    oldest = _row(panel, _task_id(0))
    assert oldest.count() == 0
    _scroll(panel, 0.5)
    _row(panel, _task_id(COUNT // 2)).wait_for()
    _scroll(panel, 1)
    oldest.wait_for()
    assert "question 000" in oldest.inner_text()
    assert panel.locator(".ak-task-row").count() < 60
    # The panel answers at once: the oldest row opens its task.
    oldest.locator(".ak-task-open").click()
    page.locator(f"#agentkit-task-{_task_id(0)} .ak-task").wait_for()

    # Later polls ask only for changes, and nothing changed: tiny answers.
    # (Playwright delivers the response events while it waits in the page.)
    for _ in range(75):
        if len(answers) >= 3:
            break
        page.wait_for_timeout(200)
    later = answers[1:]
    assert all("since=" in url for url, _ in later), later
    assert all(size < 300 for _, size in later), later


def test_rows_show_start_time_the_input_on_hover_and_bidi_visibly(
    page: Any, lab_server: LabServer
) -> None:
    panel = _open_panel(page, lab_server)
    bidi = _row(panel, BIDI_ID)
    bidi.wait_for()
    # U+202E is written out, so the name reads as it is, not as "invoice_exe.png".
    shown = bidi.locator(".ak-task-input").inner_text()
    assert "invoice_⟨U+202E⟩gnp.exe" in shown
    assert "\u202e" not in bidi.inner_text()
    assert "⟨U+202E⟩" in (bidi.locator(".ak-task-open").get_attribute("title") or "")

    row = _row(panel, _task_id(COUNT - 1))
    row.wait_for()
    # A start time, as a clock time (with its date, since it is not today's or is).
    start = row.locator(".ak-task-start")
    assert re.search(r"\d{1,2}[:.]\d{2}", start.inner_text()), start.inner_text()
    assert start.get_attribute("datetime")
    # Hover: the input as the list has it (500 characters), and how long it is in all.
    title = row.locator(".ak-task-open").get_attribute("title") or ""
    assert f"question {COUNT - 1:03d} about Lisbon" in title
    assert "characters in all" in title and len(title) > 400
    # The input gets most of the row, not ten characters; the agent name on one line.
    widths = row.evaluate(
        """row => {
          const input = row.querySelector('.ak-task-input');
          const agent = row.querySelector('.ak-task-agent');
          return [input.getBoundingClientRect().width, row.getBoundingClientRect().width,
                  agent.getBoundingClientRect().height,
                  parseFloat(getComputedStyle(agent).lineHeight) || 20];
        }"""
    )
    assert widths[0] > 0.7 * widths[1], widths
    assert widths[2] < 1.6 * widths[3], widths


def test_filter_by_agent_and_status(page: Any, lab_server: LabServer) -> None:
    panel = _open_panel(page, lab_server)
    _row(panel, BIDI_ID).wait_for()
    panel.locator("select.ak-filter-agent").select_option("demo-slow")
    wait_until(lambda: _row(panel, BIDI_ID).count() == 0, timeout=5)
    agents = set(panel.locator(".ak-task-agent").all_inner_texts())
    assert agents == {"demo-slow"}
    assert panel.locator(".ak-task-count").inner_text() == f"{COUNT // 2} of {COUNT + 1}"
    panel.locator("select.ak-filter-status").select_option("failed")
    wait_until(
        lambda: set(panel.locator(".ak-task-status").all_inner_texts()) == {"failed"}, timeout=5
    )
    expected = sum(1 for i in range(COUNT) if i % 2 == 1 and i % 3 == 1)
    assert panel.locator(".ak-task-count").inner_text() == f"{expected} of {COUNT + 1}"
    panel.locator("select.ak-filter-agent").select_option("")
    panel.locator("select.ak-filter-status").select_option("")
    _row(panel, BIDI_ID).wait_for()


def test_the_start_form(page: Any, lab_server: LabServer) -> None:
    panel = _open_panel(page, lab_server)
    select = panel.locator("select.ak-agent-select")
    wait_until(lambda: select.locator("option").count() > 0, timeout=10)
    before = len(lab_server.tasks())

    # Start with an empty input: refused with a message, nothing runs. (Once the
    # launcher is up: JupyterLab focuses it when it opens.)
    page.locator(".jp-Launcher").first.wait_for()
    panel.locator("button.ak-start").click()
    notice = panel.locator(".ak-form-notice")
    assert notice.inner_text() == "Type what the agent should do first."
    field = panel.locator("textarea.ak-input-field")
    assert field.get_attribute("aria-invalid") == "true"
    page.wait_for_function("el => document.activeElement === el", arg=field.element_handle())
    time.sleep(0.5)
    assert len(lab_server.tasks()) == before

    # Ctrl+Enter is said, next to Start.
    assert "Ctrl+Enter" in panel.locator(".ak-input-hint").inner_text()

    # The selected agent's description is shown under the select, and follows it.
    described = {
        a["name"]: a["description"]
        for a in lab_server.api("GET", "agentkit/api/agents").json()["agents"]
    }
    for name in ("demo-slow", "demo"):
        select.select_option(name)
        assert panel.locator(".ak-agent-description").inner_text() == described[name]

    # The select shows a caret; the input and its resize grip stay inside the panel.
    caret = panel.locator(".ak-select-wrap").first.evaluate(
        """el => { const s = getComputedStyle(el, '::after');
                   return [s.content, s.borderTopWidth]; }"""
    )
    assert caret[0] != "none" and caret[1] != "0px", caret
    bounds = panel.evaluate(
        """panel => {
          const field = panel.querySelector('textarea.ak-input-field');
          const style = getComputedStyle(panel);
          const inner = panel.getBoundingClientRect().right - parseFloat(style.paddingRight);
          return [field.getBoundingClientRect().right, inner, getComputedStyle(field).resize];
        }"""
    )
    assert bounds[0] <= bounds[1] + 0.5, bounds
    assert bounds[2] == "vertical"


# GET requests of JupyterLab carry a cache-busting query.
AGENTS_URL = re.compile(r"/agentkit/api/agents(\?[^/]*)?$")
STATUS_URL = re.compile(r"/agentkit/api/status(\?[^/]*)?$")
AGENTS_WITH_ERRORS = {
    "agents": [{"name": "demo", "description": "The demo", "tools": []}],
    "errors": [
        {"source": "entry point 'broken' (broken_pkg:agent)", "message": "ModuleNotFoundError: x"}
    ],
}
STATUS_FAILING = {
    "protocol": 1,
    "history": {
        "state": "failing",
        "path": "/tmp/tasks.sqlite3",
        "error": {"message": "database or disk is full", "since": 1795604586.0, "failures": 3},
        "pending": 12,
        "warnings": [],
        "damaged_tasks": [],
        "skipped_records": 0,
    },
    "tasks": {"total": 1, "running": 0, "logs_in_memory": 0},
}


def test_warnings_for_broken_agents_and_an_unwritable_history(
    page: Any, lab_server: LabServer
) -> None:
    # The real server: everything loaded, the history takes writes: no warning.
    panel = _open_panel(page, lab_server)
    _row(panel, BIDI_ID).wait_for()
    time.sleep(0.5)
    assert panel.locator(".ak-panel-warning:visible").count() == 0

    def fulfil(body: Any, status: int = 200) -> Any:
        return lambda route: route.fulfill(
            status=status, content_type="application/json", body=json.dumps(body)
        )

    page.route(AGENTS_URL, fulfil(AGENTS_WITH_ERRORS))
    page.route(STATUS_URL, fulfil(STATUS_FAILING))
    panel = _open_panel(page, lab_server)
    agents = panel.locator(".ak-panel-warning[data-kind='agents']")
    agents.wait_for()
    assert "1 agent source failed to load" in agents.inner_text()
    assert "broken_pkg:agent" in agents.inner_text()
    history = panel.locator(".ak-panel-warning[data-kind='history']")
    history.wait_for()
    assert "task history cannot be written" in history.inner_text()
    assert "database or disk is full" in history.inner_text()
    assert "12 changes not saved yet" in history.inner_text()

    # A server without the status route (404) and with no `errors` field: no warning.
    page.unroute(AGENTS_URL)
    page.unroute(STATUS_URL)
    page.route(AGENTS_URL, fulfil({"agents": AGENTS_WITH_ERRORS["agents"]}))
    page.route(STATUS_URL, fulfil({"error": {"code": "not_found"}}, 404))
    panel = _open_panel(page, lab_server)
    _row(panel, BIDI_ID).wait_for()
    time.sleep(0.5)
    assert panel.locator(".ak-panel-warning:visible").count() == 0
    assert panel.locator(".ak-list-notice").inner_text() == ""


# [the badge's colour, the theme's colour for its status] (resolved the same way).
BADGE_COLOURS = """
(el, variable) => {
  const probe = document.createElement('span');
  probe.style.color = `var(${variable})`;
  document.body.append(probe);
  const expected = getComputedStyle(probe).color;
  probe.remove();
  return [getComputedStyle(el).color, expected];
}
"""


def test_badges_keep_their_colours_with_the_view_css_on_the_page(
    page: Any, lab_server: LabServer
) -> None:
    theme_file = lab_server.root.parent / "settings" / "@jupyterlab" / "apputils-extension"
    theme_file = theme_file / "themes.jupyterlab-settings"
    expected = {
        "succeeded": "--jp-success-color1",
        "failed": "--jp-error-color1",
        "cancelled": "--jp-warn-color1",
    }
    try:
        for theme in ("JupyterLab Light", "JupyterLab Dark"):
            theme_file.write_text(json.dumps({"theme": theme}))
            panel = _open_panel(page, lab_server)
            page.wait_for_function("name => document.body.dataset.jpThemeName === name", arg=theme)
            # What the anywidget path does: view.css injected into the page after ours.
            page.add_style_tag(content=VIEW_CSS.read_text())
            for index in (COUNT - 1, COUNT - 2, COUNT - 3):
                status = STATUSES[index % 3]
                badge = _row(panel, _task_id(index)).locator(".ak-task-status")
                badge.wait_for()
                assert badge.inner_text() == status
                colour, want = badge.evaluate(BADGE_COLOURS, expected[status])
                assert colour == want, (theme, status, colour, want)
    finally:
        theme_file.unlink(missing_ok=True)


def test_clear_finished_asks_then_deletes_what_the_filter_shows(
    page: Any, lab_server: LabServer
) -> None:
    panel = _open_panel(page, lab_server)
    _row(panel, BIDI_ID).wait_for()
    panel.locator("select.ak-filter-agent").select_option("demo-slow")
    panel.locator("select.ak-filter-status").select_option("cancelled")
    doomed = {_task_id(i) for i in range(COUNT) if i % 2 == 1 and i % 3 == 2}
    wait_until(
        lambda: panel.locator(".ak-task-count").inner_text() == f"{len(doomed)} of {COUNT + 1}",
        timeout=5,
    )

    # Asked first; Cancel keeps everything.
    panel.locator("button.ak-clear-finished").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert f"Delete {len(doomed)} finished tasks of demo-slow" in dialog.inner_text()
    dialog.locator(".jp-Dialog-button", has_text="Cancel").click()
    dialog.wait_for(state="detached")
    assert doomed <= {t["task_id"] for t in lab_server.tasks()}

    # Delete: those tasks are gone from the server and the list, the others stay.
    panel.locator("button.ak-clear-finished").click()
    page.locator(".jp-Dialog .jp-Dialog-button", has_text="Delete").click()
    notice = panel.locator(".ak-list-notice")
    wait_until(lambda: f"Deleted {len(doomed)} finished tasks." in notice.inner_text(), timeout=30)
    left = {t["task_id"] for t in lab_server.tasks()}
    assert not doomed & left
    assert len(left) == COUNT + 1 - len(doomed)
    # The list follows with its next refresh (a busy machine can lag the notice).
    wait_until(lambda: panel.locator(".ak-task-row").count() == 0, timeout=10)
    assert panel.locator(".ak-empty").inner_text() == "No task matches the filter."
    panel.locator("select.ak-filter-status").select_option("")
    assert (
        panel.locator(".ak-task-count").inner_text() == f"{COUNT // 2 - len(doomed)} of {len(left)}"
    )
