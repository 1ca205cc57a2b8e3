"""Streamed tool output (issue 16) and follow-up questions (issue 21, item 13) in
headless Chromium.

- A real JupyterLab hosting ``tests/support.py``'s agents: a notebook output (the
  plugin's renderer) of ``stream-lines``, whose tool is a generator that yields a
  line and calls ``progress(i, n, msg)`` every 0.25 s. Its progress bar and partial
  output show under the call's card *before* its observation; then the bar goes and
  the output stays, collapsed to its last lines with "Show all", above the result.
  A total that is not known gives an indeterminate bar. The finished task opened
  again (a main-area tab from the side panel: a replay from REST) shows the output too.
- The anywidget module alone in a blank page with a fake model (as in
  ``test_runs_view.py``): an output larger than a view keeps (its start let go and
  said) and cut by the stream (said), pieces written once per frame; then a
  follow-up asked under the answer: the relay's ``fork`` message with the
  final_answer's seq and ``edit.follow_up``, a refusal shown under the field, the
  linked task's view below with the parent's answer drawn as copied (a copied
  ``final_answer`` does not end it: its ``result`` does), its own answer, and the
  field again under it.
- A real JupyterLab: a finished ``demo`` run, "And Rome?" asked under its answer
  (the server's refusal first, routed in the page, shown inline): the linked task's
  view below, live, with Rome's facts; the same from the anywidget view (without
  the plugin's renderer, as VS Code shows it), through the kernel.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    LabServer,
    open_notebook,
    run_cell,
    running_lab,
    screenshot_path,
    task_view,
    wait_status,
    wait_until,
    without_task_renderer,
)

pytestmark = pytest.mark.browser

TESTS = Path(__file__).resolve().parents[1]
WIDGET_JS = TESTS.parent / "agentkit_jupyter" / "static" / "widget.js"
FAKE_ORIGIN = "http://agentkit-widget.test"
PANEL_TAB = ".jp-SideBar .lm-TabBar-tab[data-id='agentkit-tasks-panel']"
PARENT = "feedfacefeedface"
FOLLOW_UP = "f011f011f011f011"


@pytest.fixture(scope="module")
def lab_server(
    chromium_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    """A JupyterLab hosting the test agents (``support:test_agents``) besides the
    demo ones. Overrides the session's ``lab_server`` for this module."""
    home = tmp_path_factory.mktemp("lab-tool-output")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), before]))
    try:
        with running_lab(home, "--AgentKitExtension.agents=support:test_agents") as server:
            yield server
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


# The first moment the call shows its progress bar and part of its output while its
# result has not come: what is shown then (false until then).
LIVE_BEFORE_RESULT = """
view => {
  const live = view.querySelector('.ak-call .ak-live');
  if (!live) return false;
  const bar = live.querySelector('.ak-progress');
  const output = live.querySelector('.ak-live-output');
  const result = live.parentElement.querySelector('.ak-observation');
  if (result || !bar || bar.hidden || !output || !/line 2 of 15/.test(output.textContent)) {
    return false;
  }
  const meter = bar.querySelector('[role="progressbar"]');
  return {
    output: output.textContent,
    progress: bar.querySelector('.ak-progress-text').textContent,
    now: meter.getAttribute('aria-valuenow'),
    max: meter.getAttribute('aria-valuemax'),
    width: meter.querySelector('.ak-progress-fill').style.width,
    indeterminate: bar.dataset.indeterminate,
    state: live.dataset.state,
    status: view.dataset.status,
  };
}
"""

# [the live output precedes the result in the call, the collapsed output is scrolled to its end]
ORDER_AND_TAIL = """
view => {
  const live = view.querySelector('.ak-call .ak-live');
  const result = live.parentElement.querySelector('.ak-observation');
  const pre = live.querySelector('.ak-live-output');
  return [
    !!(live.compareDocumentPosition(result) & Node.DOCUMENT_POSITION_FOLLOWING),
    pre.scrollHeight > pre.clientHeight && pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 2,
  ];
}
"""


def _lines(n: int, of: int = 15) -> str:
    return "".join(f"line {i} of {of}\n" for i in range(1, n + 1))


def _assert_finished_output(view: Any) -> None:
    """The call's output after its result: all 15 lines, collapsed, above the result."""
    live = view.locator(".ak-call .ak-live")
    assert live.get_attribute("data-state") == "done"
    assert live.locator(".ak-progress").is_hidden()
    output = live.locator(".ak-live-output")
    assert output.text_content() == _lines(15)
    assert "ak-live-output--collapsed" in (output.get_attribute("class") or "")
    assert live.get_attribute("data-lines") == "15"
    toggle = live.locator(".ak-live-toggle")
    assert toggle.inner_text() == "Show all (15 lines)"
    assert toggle.get_attribute("aria-expanded") == "false"
    assert toggle.get_attribute("aria-controls") == output.get_attribute("id")
    above, tail = view.evaluate(ORDER_AND_TAIL)
    assert above, "the live output is not above the call's result"
    assert tail, "the collapsed output does not show its last lines"
    result = view.locator(".ak-call .ak-observation .ak-output")
    assert result.text_content() == _lines(15)


def test_live_output_and_progress_before_the_observation(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "stream.ipynb",
        [
            "import agentkit_jupyter\nw = agentkit_jupyter.run('stream-lines', 'Write the lines')",
            "u = agentkit_jupyter.run('stream-unknown-total', 'Write some lines')",
        ],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()

    # While the tool runs: its bar and its first lines, and no result yet.
    live = page.wait_for_function(
        LIVE_BEFORE_RESULT, arg=view.element_handle(), timeout=30_000, polling="raf"
    ).json_value()
    assert live["output"].startswith(_lines(2)), live
    assert "line 15 of 15" not in live["output"]
    assert live["state"] == "running" and live["status"] == "running"
    assert live["indeterminate"] == "false"
    assert live["max"] == "15" and 0 <= float(live["now"]) < 15, live
    assert live["progress"].startswith("writing line "), live
    assert live["progress"].endswith(" / 15"), live
    assert 0 < float(live["width"].rstrip("%")) < 100, live
    # (With AGENTKIT_UPDATE_SCREENSHOT=1: docs/tool-output.png; else a temp folder.)
    view.screenshot(path=str(screenshot_path("tool-output.png")))
    call = view.locator(".ak-call").first
    assert call.locator(".ak-tool-name").inner_text() == "stream_lines"
    # The output is named for assistive technology; the bar too.
    assert call.locator("[role='progressbar']").get_attribute("aria-label") == (
        "Progress of stream_lines"
    )

    # The result: the bar goes, the output stays above it, collapsed to its last lines.
    wait_status(view, "succeeded")
    _assert_finished_output(view)
    view.screenshot(path=str(screenshot_path("tool-output-done.png")))
    assert view.locator(".ak-final-text").inner_text() == "All 15 lines written."
    toggle = view.locator(".ak-live-toggle")
    toggle.click()
    output = view.locator(".ak-live-output")
    assert "ak-live-output--collapsed" not in (output.get_attribute("class") or "")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert toggle.inner_text() == "Show less"
    toggle.click()
    assert "ak-live-output--collapsed" in (output.get_attribute("class") or "")
    task_id = view.get_attribute("data-task-id")

    # A total that is not known: an indeterminate bar, the count said.
    run_cell(page, 1)
    unknown = task_view(page, 1)
    unknown.wait_for()
    bar = unknown.locator(".ak-live .ak-progress[data-indeterminate='true']")
    bar.wait_for(timeout=30_000)
    meter = bar.locator("[role='progressbar']")
    assert meter.get_attribute("aria-valuenow") is None
    assert meter.get_attribute("aria-valuetext")
    wait_until(lambda: "so far" in bar.inner_text(), timeout=15)
    wait_status(unknown, "succeeded")
    assert unknown.locator(".ak-live .ak-progress").is_hidden()
    assert unknown.locator(".ak-live-output").text_content() == _lines(6, of=6)

    # Replayed: the finished task opened again (a tab from the side panel, from REST).
    page.locator(PANEL_TAB).click()
    panel = page.locator("#agentkit-tasks-panel")
    row = panel.locator(f".ak-task-row[data-task-id='{task_id}']")
    row.wait_for()
    row.locator(".ak-task-open").click()
    tab = page.locator(f"#agentkit-task-{task_id} .ak-task")
    tab.wait_for()
    wait_status(tab, "succeeded")
    tab.locator(".ak-call .ak-live[data-state='done']").wait_for()
    _assert_finished_output(tab)


# -- the anywidget module alone, with a fake model ------------------------------------

# A blank page that renders the widget module with a fake model: `window.__sent` is
# what the view sends the kernel, `window.__feed(m)` what the kernel sends the view.
FAKE_PAGE = """<!doctype html><html><body><div id="out"></div><script type="module">
const listeners = new Set();
window.__sent = [];
const traits = %s;
const model = {
  get: key => traits[key],
  send: content => window.__sent.push(JSON.parse(JSON.stringify(content))),
  on: (event, callback) => listeners.add(callback),
  off: (event, callback) => listeners.delete(callback),
};
window.__feed = message => listeners.forEach(callback => callback(message));
const widget = await import('/widget.js');
widget.default.render({model, el: document.getElementById('out')});
window.__ready = true;
</script></body></html>"""


def _open_fake_widget(page: Any, traits: dict[str, Any]) -> None:
    body = FAKE_PAGE % json.dumps(traits)
    page.route(f"{FAKE_ORIGIN}/", lambda route: route.fulfill(body=body, content_type="text/html"))
    page.route(
        f"{FAKE_ORIGIN}/widget.js",
        lambda route: route.fulfill(path=str(WIDGET_JS), content_type="text/javascript"),
    )
    page.goto(f"{FAKE_ORIGIN}/")
    page.wait_for_function("window.__ready === true")


def _step(
    task_id: str, seq: int, kind: str, step: int, data: Any, copied: bool = False
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": kind,
        "step": step,
        "data": data,
        "timestamp": 1_700_000_000 + seq,
    }
    if copied:
        event["copied"] = True
    return {"type": "step", "seq": seq, "task_id": task_id, "data": event}


def _feed(
    page: Any, task_id: str, messages: list[dict[str, Any]], status: str, **record: Any
) -> None:
    page.evaluate(
        "batch => window.__feed(batch)",
        {
            "type": "relay_batch",
            "task_id": task_id,
            "task": {"task_id": task_id, "agent": "fake", "status": status, **record},
            "messages": messages,
        },
    )


def _sent(page: Any, kind: str) -> list[dict[str, Any]]:
    return [m for m in page.evaluate("window.__sent") if m.get("type") == kind]


def _result(task_id: str, seq: int, output: str) -> dict[str, Any]:
    return {
        "type": "result",
        "seq": seq,
        "task_id": task_id,
        "data": {"status": "succeeded", "task_id": task_id, "output": output, "total_steps": 2},
    }


FLOOD_LINES = 5000
CALL = {"call_id": "c1", "name": "dump"}


def _parent_run() -> list[dict[str, Any]]:
    """A run whose tool streams far more than a view keeps, then answers (seq 1-9)."""
    flood = "".join(f"{i:06d} {'x' * 72}\n" for i in range(1, FLOOD_LINES + 1))
    events = [
        ("thought", 1, {"text": "I dump the table."}),
        ("tool_call", 1, {**CALL, "arguments": {"table": "orders"}}),
        ("tool_progress", 1, {**CALL, "progress": 1, "total": 4, "message": "reading"}),
        ("tool_output", 1, {**CALL, "text": "header\n"}),
        ("tool_output", 1, {**CALL, "text": flood}),
        # The last piece the stream carries (the bound reached: `cut`).
        ("tool_output", 1, {**CALL, "text": "the last piece\n", "cut": True}),
        (
            "observation",
            1,
            {**CALL, "output": "5000 rows", "is_error": False, "duration_ms": 900.0},
        ),
        ("final_answer", 2, {"output": "The table has 5000 rows.", "total_steps": 2}),
    ]
    return [
        _step(PARENT, seq, kind, step, data) for seq, (kind, step, data) in enumerate(events, 1)
    ]


def test_widget_bounds_the_output_and_asks_a_follow_up_through_the_relay(page: Any) -> None:
    _open_fake_widget(page, {"task_id": PARENT, "agent": "fake", "transport": "relay"})
    view = page.locator(f"#out > .ak-task[data-task-id='{PARENT}']")
    view.wait_for()
    messages = _parent_run()

    # Running: the progress, then pieces that arrive in separate frames.
    _feed(page, PARENT, messages[:4], "running", input="How many orders?")
    live = view.locator(".ak-call[data-call-id='c1'] .ak-live")
    live.wait_for()
    wait_until(lambda: live.locator(".ak-live-output").text_content() == "header\n")
    assert live.locator(".ak-progress-text").inner_text() == "reading · 1 / 4"
    assert live.locator("[role='progressbar']").get_attribute("aria-valuenow") == "1"

    # Five thousand lines in one piece: the view keeps the last ones and says so.
    _feed(page, PARENT, messages[4:6], "running")
    dropped = live.locator(".ak-live-dropped")
    dropped.wait_for()
    text = live.locator(".ak-live-output").text_content()
    kept = text.count("\n")
    assert 0 < kept <= 2000, kept
    assert text.endswith(f"{FLOOD_LINES:06d} {'x' * 72}\nthe last piece\n")
    assert len(text) <= 256 * 1024
    assert "not shown here" in dropped.inner_text()
    assert int(live.get_attribute("data-dropped") or 0) == FLOOD_LINES + 2 - kept
    assert live.locator(".ak-live-toggle").inner_text() == f"Show all ({kept:,} lines)"
    # The stream's cut: said under the output.
    cut = live.locator(".ak-live-cut")
    cut.wait_for()
    assert "cut" in cut.inner_text() and "262,144 characters" in cut.inner_text()
    assert live.get_attribute("data-cut") == "true"

    # The result, the answer: the bar goes, the output stays; a follow-up can be asked.
    _feed(
        page, PARENT, [*messages[6:], _result(PARENT, 9, "The table has 5000 rows.")], "succeeded"
    )
    wait_status(view, "succeeded")
    assert live.get_attribute("data-state") == "done"
    assert live.locator(".ak-progress").is_hidden()
    assert view.get_attribute("data-can-follow-up") == "true"
    field = view.locator(".ak-follow-up-slot textarea.ak-follow-up-text")
    assert field.is_visible()
    assert field.get_attribute("placeholder") == "Ask a follow-up…"
    form = view.locator(".ak-follow-up")
    assert form.get_attribute("aria-label") == "Ask a follow-up question"

    # Nothing typed: said under the field, nothing sent.
    field.click()
    page.keyboard.press("Enter")
    error = form.locator(".ak-follow-up-error")
    error.wait_for()
    assert error.inner_text() == "Type a question first."
    assert field.get_attribute("aria-invalid") == "true"
    assert _sent(page, "fork") == []

    # Enter sends: a fork at the final_answer's seq with the question as follow_up.
    field.fill("And last year?")
    assert error.is_hidden()
    page.keyboard.press("Enter")
    wait_until(lambda: len(_sent(page, "fork")) == 1)
    assert _sent(page, "fork")[0] == {
        "type": "fork",
        "at_seq": 8,
        "edit": {"follow_up": "And last year?"},
        "task_id": PARENT,
    }
    assert form.get_attribute("data-state") == "sending"
    # The kernel refuses: said under the field, which keeps the question; not a notice.
    page.evaluate(
        "m => window.__feed(m)",
        {
            "type": "relay_error",
            "task_id": PARENT,
            "error": "The run has no answer yet to follow up on.",
            "code": "invalid_fork",
        },
    )
    error.wait_for()
    assert error.get_attribute("data-code") == "invalid_fork"
    assert (
        error.inner_text()
        == "The server cannot fork here: The run has no answer yet to follow up on."
    )
    assert field.input_value() == "And last year?"
    assert view.locator(".ak-notice").is_hidden()

    # The Send button, this time accepted: the linked task's view opens below.
    form.locator(".ak-follow-up-send").click()
    wait_until(lambda: len(_sent(page, "fork")) == 2)
    page.evaluate(
        "m => window.__feed(m)",
        {"type": "relay_forked", "task_id": PARENT, "fork_id": FOLLOW_UP},
    )
    child = page.locator(f"#out > .ak-forks > .ak-task[data-task-id='{FOLLOW_UP}']")
    child.wait_for()
    wait_until(lambda: field.input_value() == "")
    wait_until(lambda: {"type": "relay", "after": 0, "task_id": FOLLOW_UP} in _sent(page, "relay"))

    # Its copied steps (the parent's answer among them) come first: the run goes on.
    copies = [
        _step(
            FOLLOW_UP, m["seq"], m["data"]["event_type"], m["data"]["step"], m["data"]["data"], True
        )
        for m in messages
    ]
    record = {
        "input": "And last year?",
        "parent_id": PARENT,
        "forked_at_seq": 8,
        "fork_kind": "fork",
    }
    _feed(page, FOLLOW_UP, copies, "running", **record)
    copied_answer = child.locator(".ak-step[data-step='2'] .ak-answer-copied")
    copied_answer.wait_for()
    assert "ak-copied" in (copied_answer.get_attribute("class") or "")
    assert (
        copied_answer.locator(".ak-answer-copied-text").inner_text() == "The table has 5000 rows."
    )
    # A copied final_answer ends nothing: no answer of its own yet, still running.
    assert child.get_attribute("data-status") == "running"
    assert child.locator(".ak-final").is_hidden()
    assert child.locator(".ak-follow-up-slot").is_hidden()
    assert child.locator(".ak-call .ak-live").get_attribute("data-state") == "done"
    assert "ak-copied" in (child.locator(".ak-call .ak-live").get_attribute("class") or "")
    info = child.locator(".ak-fork-info")
    assert info.get_attribute("data-kind") == "follow-up"
    assert info.locator(".ak-fork-badge").inner_text() == "Follow-up"
    assert "Follows up on feedface's answer" in info.inner_text()

    # Then its own turn, live, and its result.
    live_events = [
        _step(FOLLOW_UP, 9, "token", 3, {"delta": "Last year "}),
        _step(
            FOLLOW_UP,
            10,
            "final_answer",
            3,
            {"output": "Last year it had 4200 rows.", "total_steps": 3},
        ),
    ]
    _feed(
        page,
        FOLLOW_UP,
        [*live_events, _result(FOLLOW_UP, 11, "Last year it had 4200 rows.")],
        "succeeded",
        **record,
    )
    wait_status(child, "succeeded")
    assert child.locator(".ak-final-text").inner_text() == "Last year it had 4200 rows."
    divider = child.locator(".ak-fork-divider")
    assert divider.count() == 1
    assert "Live from here" in divider.inner_text()
    assert divider.locator(".ak-follow-up-question").text_content() == "Follow-up: And last year?"
    # The conversation goes on: the field again under the follow-up's answer.
    assert child.get_attribute("data-can-follow-up") == "true"
    assert child.locator(".ak-follow-up-slot .ak-follow-up-text").is_visible()
    # (The views of forks are beside a view, not in it: this is the parent's field.)
    assert view.locator(".ak-follow-up-slot .ak-follow-up-text").is_visible()


# -- a follow-up in JupyterLab --------------------------------------------------------


def test_follow_up_question_under_a_finished_run_in_lab(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "follow-up.ipynb",
        ["import agentkit_jupyter\nw = agentkit_jupyter.run('demo', 'Compare Paris and Berlin')"],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    wait_status(view, "succeeded")
    parent_id = view.get_attribute("data-task-id")
    # The field once the server's greeting says this viewer may write.
    wait_until(lambda: view.get_attribute("data-can-follow-up") == "true", timeout=10)
    field = view.locator(".ak-follow-up-slot .ak-follow-up-text")
    assert field.is_visible()
    events = lab_server.task(parent_id)["events"]
    answer_seq = next(
        m["seq"]
        for m in events
        if m["type"] == "step" and m["data"]["event_type"] == "final_answer"
    )

    # The server refuses the first time (answered in the page): said inline.
    refusals: list[Any] = []

    def refuse_once(route: Any) -> None:
        if refusals:
            route.continue_()
            return
        refusals.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(
            status=429,
            content_type="application/json",
            body=json.dumps({"error": {"code": "too_many_creations", "message": "Retry in 2 s."}}),
        )

    page.route(re.compile(rf"/agentkit/api/tasks/{parent_id}/fork(\?[^/]*)?$"), refuse_once)
    field.fill("And Rome?")
    page.keyboard.press("Enter")
    error = view.locator(".ak-follow-up-error")
    error.wait_for()
    assert refusals == [{"at_seq": answer_seq, "edit": {"follow_up": "And Rome?"}}]
    assert error.get_attribute("data-code") == "too_many_creations"
    assert error.inner_text().startswith("Too many tasks were started just now")
    forks = view.locator("xpath=..").locator(".ak-forks .ak-task")
    assert forks.count() == 0

    # Again: the linked task's view below, live, with Rome's facts.
    view.locator(".ak-follow-up-send").click()
    child = forks.first
    child.wait_for()
    child_id = child.get_attribute("data-task-id")
    assert child_id and child_id != parent_id
    wait_status(child, "succeeded")
    assert "Rome is in Italy" in child.locator(".ak-final-text").inner_text()
    assert child.locator(".ak-input").inner_text().endswith("And Rome?")
    # The parent's run, copied, its answer among it (not the follow-up's answer).
    copied_answer = child.locator(".ak-answer-copied")
    assert copied_answer.count() == 1
    assert "Berlin" in copied_answer.inner_text()
    assert child.locator(".ak-step--copied").count() >= 2
    assert "Follow-up: And Rome?" in child.locator(".ak-fork-divider").text_content()
    assert child.locator(".ak-fork-info .ak-fork-badge").inner_text() == "Follow-up"
    record = lab_server.task(child_id)
    assert record["parent_id"] == parent_id
    assert record["forked_at_seq"] == answer_seq
    assert record["input"] == "And Rome?"
    # The conversation can go on from the follow-up's answer.
    wait_until(lambda: child.get_attribute("data-can-follow-up") == "true", timeout=10)
    assert child.locator(".ak-follow-up-slot .ak-follow-up-text").is_visible()


def test_follow_up_from_the_widget_through_the_kernel(page: Any, lab_server: LabServer) -> None:
    # The anywidget view as VS Code shows it: the follow-up goes through the kernel
    # (the relay's `fork` message), and the linked task's view opens below.
    name = lab_server.write_notebook(
        "widget-follow-up.ipynb",
        [
            "import agentkit_jupyter\n"
            "w = agentkit_jupyter.run('demo', 'Compare Paris and Berlin', display='widget')"
        ],
    )
    without_task_renderer(page)
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = page.locator(".jp-OutputArea .agentkit-widget > .ak-task")
    view.wait_for()
    wait_status(view, "succeeded")
    parent_id = view.get_attribute("data-task-id")
    wait_until(lambda: view.get_attribute("data-can-follow-up") == "true", timeout=10)
    view.locator(".ak-follow-up-text").fill("And Rome?")
    view.locator(".ak-follow-up-send").click()
    child = page.locator(".jp-OutputArea .agentkit-widget > .ak-forks > .ak-task")
    child.wait_for(timeout=30_000)
    wait_status(child, "succeeded")
    child_id = child.get_attribute("data-task-id")
    assert child_id and child_id != parent_id
    assert "Rome is in Italy" in child.locator(".ak-final-text").inner_text()
    assert child.locator(".ak-answer-copied.ak-copied").count() == 1
    record = lab_server.task(child_id)
    assert record["parent_id"] == parent_id and record["input"] == "And Rome?"
    assert child.get_attribute("data-can-follow-up") == "true"
