"""Runs as data (issue 15) in headless Chromium: tokens and cost, forks, comparisons.

- The anywidget module alone in a blank page with a fake model (as in
  ``test_approval_view.py``): a finished run fed through the relay shows tokens in
  and out and its cost from the ``usage`` steps (copied ones not counted); "Fork from
  here" sends the kernel relay's ``fork`` message, a ``relay_error`` refusal shows in
  the form, ``relay_forked`` opens the fork's view below, relayed with its ``task_id``,
  its copied steps muted up to a "Live from here" divider. The same module with a
  ``CompareWidget`` model (``kind`` "compare"): both sides, the deltas, the rows with
  the diff's deletions on side A and insertions on side B, a missing side, copied
  cells, "Only differences".
- A real JupyterLab: a notebook output (the plugin's renderer, REST) forked from a
  step with a tool's result replaced (the server's refusal of bad arguments shown in
  the form first), the fork's view below with its copied steps, "Compare with
  parent"; the side panel's tokens, cost and "fork of" link, two tasks selected and
  compared in a main-area tab; a ``COMPARE_MIMETYPE`` output.
- The anywidget in JupyterLab without the plugin's renderer (as VS Code shows it):
  "Fork from here" through the kernel, the fork's view below.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    LabServer,
    open_notebook,
    run_cell,
    task_view,
    wait_status,
    wait_until,
    without_task_renderer,
)

pytestmark = pytest.mark.browser

WIDGET_JS = Path(__file__).resolve().parents[2] / "agentkit_jupyter" / "static" / "widget.js"
FAKE_ORIGIN = "http://agentkit-widget.test"
PARENT = "feedfacefeedface"
FORK = "f0f0f0f0f0f0f0f0"
PANEL_TAB = ".jp-SideBar .lm-TabBar-tab[data-id='agentkit-tasks-panel']"
COMPARE_MIME = "application/vnd.agentkit.compare+json"

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


def _usage(prompt: int, completion: int, cost: float | None) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost": cost,
        "total_prompt_tokens": prompt,
        "total_completion_tokens": completion,
        "total_cost": cost,
        "duration_ms": 812.0,
    }


def _run(task_id: str, copied_until: int = 0) -> list[dict[str, Any]]:
    """A finished run: look up a city, then answer. Events up to ``copied_until``
    are a fork's copies."""
    events = [
        ("usage", 1, _usage(100, 20, 0.0001)),
        ("thought", 1, {"text": "I look Paris up."}),
        ("tool_call", 1, {"call_id": "c1", "name": "lookup_city", "arguments": {"city": "Paris"}}),
        (
            "observation",
            1,
            {
                "call_id": "c1",
                "name": "lookup_city",
                "output": '{"population": 2102650}',
                "is_error": False,
                "duration_ms": 3.0,
            },
        ),
        ("usage", 2, _usage(150, 30, 0.0002)),
        ("final_answer", 2, {"output": "Paris has 2,102,650 people.", "total_steps": 2}),
    ]
    return [
        _step(task_id, seq, kind, step, data, copied=seq <= copied_until)
        for seq, (kind, step, data) in enumerate(events, start=1)
    ]


def _feed(
    page: Any, task_id: str, messages: list[dict[str, Any]], status: str, **record: Any
) -> None:
    page.evaluate(
        "batch => window.__feed(batch)",
        {
            "type": "relay_batch",
            "task_id": task_id,
            "task": {
                "task_id": task_id,
                "agent": "fake",
                "status": status,
                "input": "Paris?",
                **record,
            },
            "messages": messages,
        },
    )


def _sent(page: Any, kind: str) -> list[dict[str, Any]]:
    return [m for m in page.evaluate("window.__sent") if m.get("type") == kind]


def _result(task_id: str, seq: int, tokens: tuple[int, int], cost: float | None) -> dict[str, Any]:
    return {
        "type": "result",
        "seq": seq,
        "task_id": task_id,
        "data": {
            "status": "succeeded",
            "task_id": task_id,
            "output": "Paris has 2,102,650 people.",
            "total_steps": 2,
            "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]},
            "cost": cost,
        },
    }


def test_widget_tokens_cost_and_a_fork_through_the_kernel_relay(page: Any) -> None:
    _open_fake_widget(page, {"task_id": PARENT, "agent": "fake", "transport": "relay"})
    view = page.locator(f".ak-task[data-task-id='{PARENT}']")
    view.wait_for()
    assert {"type": "relay", "after": 0, "task_id": PARENT} in _sent(page, "relay")

    # Live: the header counts the usage steps as they come.
    _feed(page, PARENT, _run(PARENT)[:2], "running")
    tokens = view.locator(".ak-meta-tokens")
    wait_until(lambda: tokens.inner_text() == "100 tokens in · 20 out")
    assert view.locator(".ak-meta-cost").inner_text() == "$0.0001"
    # No fork while it runs.
    assert view.locator(".ak-fork-open:visible").count() == 0
    _feed(page, PARENT, [*_run(PARENT)[2:], _result(PARENT, 7, (250, 50), 0.0123)], "succeeded")
    wait_status(view, "succeeded")
    # Finally the result's figures.
    wait_until(lambda: tokens.inner_text() == "250 tokens in · 50 out")
    assert view.locator(".ak-meta-cost").inner_text() == "$0.0123"
    assert view.locator(".ak-meta-cost").get_attribute("data-cost") == "0.0123"
    # A usage step is not a step of its own: Step 1, and the answer's Step 2.
    assert view.locator(".ak-steps > .ak-step-group .ak-step").count() == 1

    # Finished, and the relay may write: "Fork from here" on the step and the answer.
    step1 = view.locator(".ak-step[data-step='1']")
    assert step1.locator(".ak-fork-open").is_visible()
    assert view.locator(".ak-final .ak-fork-open").is_visible()

    # Edit the call's arguments (JSON: the run showed no schema).
    step1.locator(".ak-fork-open").click()
    form = step1.locator(".ak-fork-form")
    form.wait_for()
    assert step1.locator(".ak-fork-open").get_attribute("aria-expanded") == "true"
    assert form.locator(".ak-fork-choice[data-mode='input']").count() == 1  # step 1 only
    form.locator(".ak-fork-choice[data-mode='arguments'] input[type='radio']").check()
    editor = form.locator(".ak-approval-json-input")
    assert json.loads(editor.input_value()) == {"city": "Paris"}
    editor.fill('{"city": ')
    form.locator(".ak-fork-submit").click()
    assert "Not valid JSON" in form.inner_text()
    assert _sent(page, "fork") == []  # checked here first
    editor.fill('{"city": "Lyon"}')
    form.locator(".ak-fork-submit").click()
    wait_until(lambda: len(_sent(page, "fork")) == 1)
    assert _sent(page, "fork")[0] == {
        "type": "fork",
        "at_seq": 3,  # the tool_call's seq
        "edit": {"arguments": {"city": "Lyon"}},
        "task_id": PARENT,
    }
    assert form.get_attribute("data-state") == "sending"
    # The kernel refuses: said in the form, which stays open; not as a notice.
    page.evaluate(
        "m => window.__feed(m)",
        {
            "type": "relay_error",
            "task_id": PARENT,
            "error": "Seq 3 is not a tool call of a finished step.",
            "code": "invalid_fork",
        },
    )
    error = form.locator(".ak-fork-error")
    error.wait_for()
    assert error.get_attribute("role") == "alert"
    assert error.inner_text() == (
        "The server cannot fork here: Seq 3 is not a tool call of a finished step."
    )
    assert view.locator(".ak-notice").is_hidden()

    # "No change" on the answer's step: asked again from its final_answer (seq 6).
    form.locator(".ak-fork-cancel").click()
    assert step1.locator(".ak-fork-form").count() == 0
    view.locator(".ak-final .ak-fork-open").click()
    answer_form = view.locator(".ak-final .ak-fork-form")
    answer_form.wait_for()
    assert answer_form.locator(".ak-fork-choice").count() == 1  # nothing else to change
    assert "ask the model again" in answer_form.inner_text()
    answer_form.locator(".ak-fork-submit").click()
    wait_until(lambda: len(_sent(page, "fork")) == 2)
    assert _sent(page, "fork")[1] == {"type": "fork", "at_seq": 6, "task_id": PARENT}
    page.evaluate(
        "m => window.__feed(m)", {"type": "relay_forked", "task_id": PARENT, "fork_id": FORK}
    )

    # The fork's view opens below the parent's, relayed with its own task id.
    fork = page.locator(f"#out > .ak-forks > .ak-task[data-task-id='{FORK}']")
    fork.wait_for()
    assert view.locator(".ak-fork-form").count() == 0
    wait_until(lambda: {"type": "relay", "after": 0, "task_id": FORK} in _sent(page, "relay"))
    messages = _run(FORK, copied_until=5)
    messages[-1]["data"]["data"]["output"] = "Paris has about 2.1 million people."
    live_usage = _step(FORK, 6, "usage", 2, _usage(40, 10, None))
    final = {**messages[-1], "seq": 7}
    result = _result(FORK, 8, (40, 10), None)
    result["data"]["output"] = final["data"]["data"]["output"]
    _feed(
        page,
        FORK,
        [*messages[:-1], live_usage, final, result],
        "succeeded",
        parent_id=PARENT,
        forked_at_seq=6,
        fork_kind="fork",
    )
    wait_status(fork, "succeeded")
    assert fork.get_attribute("data-parent-id") == PARENT
    info = fork.locator(".ak-fork-info")
    assert info.is_visible()
    assert "Forked from feedface at step 2" in info.inner_text()
    assert "1 step copied from it" in info.inner_text()
    # No REST on the relay: no "Compare with parent" here.
    assert info.locator(".ak-compare-parent").is_hidden()
    # The copied step is drawn as such; the live part starts under a divider.
    copied = fork.locator(".ak-step[data-step='1']")
    assert "ak-step--copied" in (copied.get_attribute("class") or "")
    assert copied.locator(".ak-copied").count() >= 3  # thought, call (with result)
    divider = fork.locator(".ak-fork-divider")
    assert divider.count() == 1
    assert "Live from here" in divider.inner_text()
    assert fork.locator(".ak-final-text").inner_text() == "Paris has about 2.1 million people."
    # Its own usage only (the copied steps' was the parent's), and a cost not known.
    assert fork.locator(".ak-meta-tokens").inner_text() == "40 tokens in · 10 out"
    cost = fork.locator(".ak-meta-cost")
    assert cost.inner_text() == "cost —"
    assert cost.get_attribute("data-cost") == "unknown"
    assert "not spent again" in (fork.locator(".ak-meta-tokens").get_attribute("title") or "")
    # The fork can be forked in turn (it is finished too).
    assert fork.locator(".ak-final .ak-fork-open").is_visible()


COMPARISON: dict[str, Any] = {
    "a": {
        "task_id": PARENT,
        "agent": "demo",
        "status": "succeeded",
        "input": "Compare Paris and Berlin",
        "output": "Paris has 0.57 times the population of Berlin.",
        "steps": 3,
        "tokens_in": 300,
        "tokens_out": 60,
        "cost": 0.0012,
        "duration_s": 2.5,
        "parent_id": None,
    },
    "b": {
        "task_id": FORK,
        "agent": "demo",
        "status": "succeeded",
        "input": "Compare Paris and Berlin",
        "output": "Paris has 1.11 times the population of Berlin.",
        "steps": 3,
        "tokens_in": 120,
        "tokens_out": 30,
        "cost": None,
        "duration_s": 1.0,
        "parent_id": PARENT,
    },
    "rows": [
        {
            "step": 1,
            "key": "thought",
            "a": {"kind": "thought", "seq": 2, "text": "I look both up."},
            "b": {"kind": "thought", "seq": 1, "text": "I look both up.", "copied": True},
            "same": True,
            "diffs": {},
        },
        {
            "step": 1,
            "key": "tool:lookup_city:1",
            "a": {
                "kind": "tool",
                "seq": 3,
                "tool": "lookup_city",
                "arguments": {"city": "Paris"},
                "observation": '{"population": 2102650}',
                "is_error": False,
            },
            "b": {
                "kind": "tool",
                "seq": 2,
                "tool": "lookup_city",
                "arguments": {"city": "Paris"},
                "observation": '{"population": 4000000}',
                "is_error": False,
            },
            "same": False,
            "diffs": {
                "observation": [
                    {"op": "equal", "text": '{"population": '},
                    {"op": "delete", "text": "2102650"},
                    {"op": "insert", "text": "4000000"},
                    {"op": "equal", "text": "}"},
                ]
            },
        },
        {
            "step": 2,
            "key": "tool:calculator:1",
            "a": {
                "kind": "tool",
                "seq": 6,
                "tool": "calculator",
                "arguments": {"expression": "2102650 / 3677472"},
                "observation": "0.57",
            },
            "b": None,
            "same": False,
            "diffs": {},
        },
        {
            "step": 3,
            "key": "answer",
            "a": {"kind": "answer", "seq": 9, "text": "Paris has 0.57 times the population."},
            "b": {"kind": "answer", "seq": 7, "text": "Paris has 1.11 times the population."},
            "same": False,
            "diffs": {
                "text": [
                    {"op": "equal", "text": "Paris has "},
                    {"op": "delete", "text": "0.57"},
                    {"op": "insert", "text": "1.11"},
                    {"op": "equal", "text": " times the population."},
                ]
            },
        },
    ],
    "deltas": {"steps": 0, "tokens_in": -180, "tokens_out": -30, "cost": None, "duration_s": -1.5},
}


def test_compare_widget_shows_both_runs_and_what_differs(page: Any) -> None:
    _open_fake_widget(page, {"kind": "compare", "comparison": COMPARISON})
    compare = page.locator(".ak-compare")
    compare.wait_for()
    assert page.locator(".ak-task").count() == 0  # not a task view
    assert compare.get_attribute("data-a") == PARENT
    assert compare.get_attribute("data-b") == FORK
    assert compare.get_attribute("data-differing") == "3"
    # The header: both tasks with their totals, and the deltas (b minus a).
    a = compare.locator(".ak-cmp-side[data-side='a']")
    b = compare.locator(".ak-cmp-side[data-side='b']")
    assert "demo" in a.inner_text() and "succeeded" in a.inner_text()
    assert a.locator("dd[data-key='tokens']").inner_text() == "300 in · 60 out"
    assert a.locator("dd[data-key='cost']").inner_text() == "$0.0012"
    assert b.locator("dd[data-key='cost']").inner_text() == "—"  # unknown, not made up
    assert a.locator("dd[data-key='steps']").inner_text() == "3"
    assert a.locator("dd[data-key='duration']").inner_text() == "2.5 s"
    assert "fork of feedface" in b.inner_text()
    deltas = compare.locator(".ak-cmp-deltas")
    assert deltas.locator("[data-key='tokens_in']").inner_text() == "tokens in −180"
    assert deltas.locator("[data-key='steps']").inner_text() == "steps 0"
    assert deltas.locator("[data-key='cost']").inner_text() == "cost —"
    assert deltas.locator("[data-key='duration_s']").inner_text() == "time −1.5 s"
    # The rows: what differs, deleted text on side A, inserted on side B.
    rows = compare.locator(".ak-cmp-row:not(.ak-cmp-row--head)")
    assert rows.count() == 4
    lookup = compare.locator(".ak-cmp-row[data-key='tool:lookup_city:1']")
    assert lookup.get_attribute("data-same") == "false"
    side_a = lookup.locator(".ak-cmp-cell[data-side='a']")
    side_b = lookup.locator(".ak-cmp-cell[data-side='b']")
    assert side_a.locator(".ak-diff-del").all_inner_texts() == ["2102650"]
    assert side_a.locator(".ak-diff-ins").count() == 0
    assert side_b.locator(".ak-diff-ins").all_inner_texts() == ["4000000"]
    assert side_b.locator(".ak-diff-del").count() == 0
    assert side_a.locator(".ak-cmp-obs").inner_text() == '{"population": 2102650}'
    assert side_b.locator(".ak-cmp-obs").inner_text() == '{"population": 4000000}'
    answer = compare.locator(".ak-cmp-row[data-key='answer'] .ak-cmp-cell[data-side='b']")
    assert answer.locator(".ak-diff-ins").inner_text() == "1.11"
    # A row only run A has: an empty cell on side B.
    missing = compare.locator(
        ".ak-cmp-row[data-key='tool:calculator:1'] .ak-cmp-cell[data-side='b']"
    )
    assert missing.get_attribute("data-missing") == "true"
    assert missing.inner_text() == "Not in run B"
    # The fork's copied thought says so.
    thought_b = compare.locator(".ak-cmp-row[data-key='thought'] .ak-cmp-cell[data-side='b']")
    assert thought_b.get_attribute("data-copied") == "true"
    assert "copied" in thought_b.locator(".ak-cmp-copied").inner_text()
    # Only differences: the same row is hidden.
    same = compare.locator(".ak-cmp-row[data-key='thought']")
    assert same.is_visible()
    compare.locator(".ak-cmp-only input").check()
    assert same.is_hidden()
    assert lookup.is_visible()
    # The colours of a deletion and an insertion differ.
    colours = page.evaluate(
        """() => [document.querySelector('.ak-diff-del'), document.querySelector('.ak-diff-ins')]
             .map(n => getComputedStyle(n).backgroundColor)"""
    )
    assert colours[0] != colours[1] and "rgba(0, 0, 0, 0)" not in colours, colours


# -- a real JupyterLab ----------------------------------------------------------------


def _wait_task(server: LabServer, task_id: str, status: str = "succeeded") -> dict[str, Any]:
    return wait_until(
        lambda: (t := server.task(task_id)) and t["status"] == status and t, timeout=30
    )


def test_fork_a_notebook_output_from_a_step_and_compare_with_the_parent(
    page: Any, lab_server: LabServer
) -> None:
    name = lab_server.write_notebook(
        "fork.ipynb",
        ["import agentkit_jupyter\nw = agentkit_jupyter.run('demo', 'Compare Paris and Berlin')"],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    wait_status(view, "succeeded")
    parent_id = view.get_attribute("data-task-id")
    record = _wait_task(lab_server, parent_id)
    # Tokens in and out and the cost, as the server counted them.
    tokens = view.locator(".ak-meta-tokens")
    wait_until(
        lambda: (
            tokens.inner_text()
            == f"{record['tokens_in']:,} tokens in · {record['tokens_out']:,} out"
        )
    )
    cost = view.locator(".ak-meta-cost")
    if record["cost"] is None:
        assert cost.inner_text() == "cost —" and cost.get_attribute("data-cost") == "unknown"
    else:
        assert re.fullmatch(r"<?\$\d+\.\d{2,4}", cost.inner_text()), cost.inner_text()
    # The server's greeting says this viewer may write: "Fork from here" on each step.
    wait_until(lambda: view.get_attribute("data-can-fork") == "true", timeout=10)
    step1 = view.locator(".ak-step[data-step='1']")
    assert step1.locator(".ak-fork-open").is_visible()
    assert view.locator(".ak-fork-open:visible").count() == 3  # steps 1, 2 and the answer

    # Arguments the tool refuses: the server says so, in the form.
    step1.locator(".ak-fork-open").click()
    form = step1.locator(".ak-fork-form")
    form.wait_for()
    form.locator(".ak-fork-choice[data-mode='arguments'] input[type='radio']").check()
    # Two calls in the step: which one.
    assert form.locator(".ak-fork-choice[data-mode='arguments'] .ak-fork-call").count() == 1
    form.locator(".ak-approval-json-input").fill('{"city": 5}')
    form.locator(".ak-fork-submit").click()
    error = form.locator(".ak-fork-error")
    error.wait_for()
    assert error.get_attribute("data-code") == "invalid_arguments"
    assert error.inner_text().startswith("The server refused these arguments")
    assert view.locator(".ak-forks .ak-task").count() == 0

    # Replace Paris' result: the fork goes on with a bigger Paris.
    form.locator(".ak-fork-choice[data-mode='observation'] input[type='radio']").check()
    calls = form.locator(".ak-fork-choice[data-mode='observation'] .ak-fork-call")
    calls.select_option(index=0)
    text = form.locator(".ak-fork-observation")
    paris = json.loads(text.input_value())
    assert paris["city"] == "Paris"
    text.fill(json.dumps({**paris, "population": 4_000_000}))
    form.locator(".ak-fork-submit").click()
    fork = view.locator("xpath=..").locator(".ak-forks .ak-task")
    fork.wait_for()
    fork_id = fork.get_attribute("data-task-id")
    assert fork_id != parent_id
    assert view.locator(".ak-fork-form").count() == 0
    wait_status(fork, "succeeded")
    child = lab_server.task(fork_id)
    assert child["parent_id"] == parent_id and child["fork_kind"] == "fork"
    # The fork's line, its copied steps, the divider where it goes on live.
    info = fork.locator(".ak-fork-info")
    assert "Forked from" in info.inner_text() and parent_id[:8] in info.inner_text()
    assert "at step 1" in info.inner_text()
    assert fork.get_attribute("data-parent-id") == parent_id
    copied = fork.locator(".ak-step[data-step='1']")
    assert re.search(r"ak-step--(copied|mixed)", copied.get_attribute("class") or "")
    assert copied.locator(".ak-copied").count() >= 2
    assert fork.locator(".ak-fork-divider").count() == 1
    assert "4,000,000" in fork.locator(".ak-final-text").inner_text()

    # Compare with the parent: the comparison in the fork's view.
    info.locator(".ak-compare-parent").click()
    compare = fork.locator(".ak-compare-slot .ak-compare")
    compare.wait_for()
    assert info.locator(".ak-compare-parent").get_attribute("aria-expanded") == "true"
    assert compare.get_attribute("data-a") == parent_id
    assert compare.get_attribute("data-b") == fork_id
    differing = compare.locator(".ak-cmp-row[data-same='false']")
    assert differing.count() >= 2
    assert compare.locator(".ak-cmp-cell[data-side='a'] .ak-diff-del").count() >= 1
    assert compare.locator(".ak-cmp-cell[data-side='b'] .ak-diff-ins").count() >= 1
    assert compare.locator(".ak-cmp-cell[data-side='b'][data-copied='true']").count() >= 1
    info.locator(".ak-compare-parent").click()
    assert fork.locator(".ak-compare-slot").is_hidden()


def _open_panel(page: Any, server: LabServer) -> Any:
    page.goto(f"{server.url}lab?reset&token={server.token}")
    page.locator(PANEL_TAB).click()
    panel = page.locator("#agentkit-tasks-panel")
    panel.wait_for()
    return panel


def test_panel_shows_cost_links_a_fork_to_its_parent_and_compares_two(
    page: Any, lab_server: LabServer
) -> None:
    parent = lab_server.api(
        "POST", "agentkit/api/tasks", json={"agent": "demo", "input": "Compare Rome and Madrid"}
    ).json()
    parent_id = parent["task_id"]
    record = _wait_task(lab_server, parent_id)
    messages = record["events"]
    answer = next(
        m for m in messages if m["type"] == "step" and m["data"]["event_type"] == "final_answer"
    )
    # A fork that asks for the answer again (no change).
    forked = lab_server.api(
        "POST", f"agentkit/api/tasks/{parent_id}/fork", json={"at_seq": answer["seq"]}
    )
    assert forked.status_code == 201, forked.text
    fork_id = forked.json()["task_id"]
    fork_record = _wait_task(lab_server, fork_id)

    panel = _open_panel(page, lab_server)
    row = panel.locator(f".ak-task-row[data-task-id='{parent_id}']")
    fork_row = panel.locator(f".ak-task-row[data-task-id='{fork_id}']")
    row.wait_for()
    fork_row.wait_for()
    # Tokens (and the cost, when known) from the summary.
    usage = row.locator(".ak-task-usage")
    assert usage.inner_text().endswith("tok") or "$" in usage.inner_text()
    assert f"{record['tokens_in']:,} tokens in" in (usage.get_attribute("title") or "")
    if record["cost"] is None:
        assert "cost unknown" in (usage.get_attribute("title") or "")
    # The fork names its parent; a click shows and opens the parent.
    link = fork_row.locator(".ak-task-fork")
    assert link.inner_text() == f"fork of {parent_id[:8]}"
    assert row.locator(".ak-task-fork").is_hidden()
    link.click()
    tab = page.locator(f".agentkit-task-panel .ak-task[data-task-id='{parent_id}']")
    tab.wait_for()
    assert row.get_attribute("data-highlight") == "true"
    # Select the two and compare: in a main-area tab, the parent as run A.
    button = panel.locator(".ak-compare-tasks")
    assert button.is_disabled()
    fork_row.locator(".ak-task-select").check()
    assert button.is_disabled()
    row.locator(".ak-task-select").check()
    assert button.is_enabled()
    button.click()
    compare = page.locator(".agentkit-compare-panel .ak-compare")
    compare.wait_for()
    assert compare.get_attribute("data-a") == parent_id
    assert compare.get_attribute("data-b") == fork_id
    b = compare.locator(".ak-cmp-side[data-side='b']")
    assert f"{fork_record['tokens_in']:,} in" in b.locator("dd[data-key='tokens']").inner_text()
    # The copied steps are the same; the answer was asked again.
    assert compare.locator(".ak-cmp-cell[data-side='b'][data-copied='true']").count() >= 1
    assert compare.locator(".ak-cmp-row[data-key='answer']").count() == 1
    # A third selection lets the oldest go: two at most.
    other = panel.locator(
        f".ak-task-row:not([data-task-id='{parent_id}']):not([data-task-id='{fork_id}'])"
    )
    if other.count():
        other.first.locator(".ak-task-select").check()
        assert panel.locator(".ak-task-select:checked").count() == 2
        assert not fork_row.locator(".ak-task-select").is_checked()


def test_compare_mimetype_output_renders_in_lab(page: Any, lab_server: LabServer) -> None:
    comparison = copy.deepcopy(COMPARISON)
    source = (
        "import json\nfrom IPython.display import display\n"
        f"display({{{COMPARE_MIME!r}: json.loads({json.dumps(json.dumps(comparison))})}}, raw=True)"
    )
    name = lab_server.write_notebook("compare.ipynb", [source])
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    compare = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea .ak-compare")
    compare.wait_for()
    assert compare.get_attribute("data-differing") == "3"
    lookup = compare.locator(".ak-cmp-row[data-key='tool:lookup_city:1']")
    assert lookup.locator(".ak-cmp-cell[data-side='a'] .ak-diff-del").inner_text() == "2102650"
    assert lookup.locator(".ak-cmp-cell[data-side='b'] .ak-diff-ins").inner_text() == "4000000"
    # In Lab the task ids open their tasks.
    assert compare.locator("button.ak-cmp-id").count() == 2


def test_widget_fork_through_the_kernel_in_lab(page: Any, lab_server: LabServer) -> None:
    pytest.importorskip(
        "agentkit_jupyter.kernel.forking",
        reason="the kernel side of the widget's fork (kernel/forking.py) is not there yet",
    )
    name = lab_server.write_notebook(
        "widget-fork.ipynb",
        [
            "import agentkit_jupyter\n"
            "w = agentkit_jupyter.run('demo', 'Compare Paris and Rome', display='widget')"
        ],
    )
    without_task_renderer(page)
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    assert page.locator(".jp-OutputArea .agentkit-widget .ak-task").count() >= 1
    wait_status(view, "succeeded")
    parent_id = view.get_attribute("data-task-id")
    wait_until(lambda: view.get_attribute("data-can-fork") == "true", timeout=10)
    step1 = view.locator(".ak-step[data-step='1']")
    step1.locator(".ak-fork-open").click()
    form = step1.locator(".ak-fork-form")
    form.wait_for()
    form.locator(".ak-fork-submit").click()  # no change
    fork = page.locator(".jp-OutputArea .agentkit-widget .ak-forks .ak-task")
    fork.wait_for(timeout=30_000)
    wait_status(fork, "succeeded")
    fork_id = fork.get_attribute("data-task-id")
    assert fork_id and fork_id != parent_id
    assert fork.get_attribute("data-parent-id") == parent_id
    assert fork.locator(".ak-step--copied, .ak-step--mixed").count() >= 1
    assert fork.locator(".ak-fork-divider").count() == 1
    assert lab_server.task(fork_id)["parent_id"] == parent_id


def test_compare_widget_from_the_kernel_without_the_plugin(
    page: Any, lab_server: LabServer
) -> None:
    # `compare(a, b)` as VS Code shows it: the anywidget module renders the
    # CompareWidget (`kind` "compare"), not a task view.
    name = lab_server.write_notebook(
        "compare-widget.ipynb",
        [
            "import agentkit_jupyter\n"
            "a = agentkit_jupyter.run('demo', 'Compare Paris and Berlin', display=False)\n"
            "b = agentkit_jupyter.run('demo', 'Compare Paris and Rome', display=False)\n"
            "a.wait(); b.wait()\n"
            "agentkit_jupyter.compare(a, b)"
        ],
    )
    without_task_renderer(page)
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    compare = page.locator(".jp-OutputArea .agentkit-widget .ak-compare")
    compare.wait_for(timeout=60_000)
    assert page.locator(".jp-OutputArea .ak-task").count() == 0
    a_id, b_id = compare.get_attribute("data-a"), compare.get_attribute("data-b")
    assert a_id and b_id and a_id != b_id
    assert lab_server.task(a_id)["input"] == "Compare Paris and Berlin"
    # Berlin and Rome differ: the lookups, the ratio and the answer.
    assert compare.locator(".ak-cmp-row[data-same='false']").count() >= 2
    assert compare.locator(".ak-cmp-cell[data-side='a'] .ak-diff-del").count() >= 1
    assert compare.locator(".ak-cmp-cell[data-side='b'] .ak-diff-ins").count() >= 1
    assert "Berlin" in compare.locator(".ak-cmp-side[data-side='a'] .ak-cmp-input").inner_text()
