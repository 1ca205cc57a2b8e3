"""What a reader sees in the task view (issue 21: markdown, results, steps, collapse,
focus, tabs, badge colours; issue 20: unreadable and missing messages, bidi controls),
in a real JupyterLab, in headless Chromium, on both paths: the plugin's renderer (by
task id) and the anywidget bundle (in a page without that renderer, as VS Code or Colab
show it: ``without_task_renderer``).

The runs are notebook agents played by a scripted model, so the test decides every
word of the model's text and every tool output.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agentkit_jupyter.kernel.static_html import render_static_html

from .conftest import (
    LabServer,
    open_notebook,
    run_cell,
    screenshot_path,
    task_view,
    wait_status,
    wait_until,
    without_task_renderer,
)

pytestmark = pytest.mark.browser

TASK_MIME = "application/vnd.agentkit.task+json"
TASK_STREAM = re.compile(r".*/agentkit/ws/tasks/.*")

# Markdown that tries every way to run script: none of it may execute.
ATTACKS = (
    "<script>window.__akXss = 'script'</script>\n\n"
    "<img src=x onerror=\"window.__akXss = 'img'\">\n\n"
    "[click me](javascript:window.__akXss='link')\n\n"
    "<a href=\"javascript:window.__akXss='raw-link'\">raw link</a>\n\n"
    "<svg onload=\"window.__akXss = 'svg'\"><circle r='4'/></svg>\n\n"
    "<iframe src=\"javascript:parent.__akXss='iframe'\"></iframe>\n\n"
    "<a href='https://example.com/' onclick=\"window.__akXss='onclick'\">a safe link</a>\n\n"
    "See [the docs](https://example.com/docs).\n"
)
THOUGHT = "I look it up with **two tools**:\n\n- `records` for the table\n- `blob` for the rest\n"
ANSWER = (
    "## The answer\n\nParis is **big**.\n\n"
    "```python\ndef grow(x):\n    return x + 1  # more\n```\n\n" + ATTACKS
)
RECORDS = [
    {"city": "Paris", "population": 2102650, "country": "France"},
    {"city": "Berlin", "population": 3878100, "country": "Germany"},
    {"city": "Rome", "population": 2748109, "country": "Italy"},
]
LONG_NUMBER = 12345678901234567890123456789
BIDI_NAME = "invoice_\u202egnp.exe"

AGENT_CELL = f"""
import time
import agentkit_jupyter as ak
from agentkit_jupyter.core.scripted import ScriptedGateway, ScriptedTurn

@ak.tool
def records() -> list:
    \"\"\"City records.\"\"\"
    return {RECORDS!r}

@ak.tool
def blob() -> dict:
    \"\"\"A large JSON value.\"\"\"
    time.sleep(0.3)
    return {{"id": {LONG_NUMBER}, "measure": 3.14159265358979,
             "files": [{BIDI_NAME!r}], "values": list(range(60)),
             "nested": {{"rows": [{{"k": i, "v": "x" * 20}} for i in range(30)]}}}}

@ak.tool
def line() -> str:
    \"\"\"One long line.\"\"\"
    return "a" * 700

def probe(name):
    return ak.Agent(name, ScriptedGateway([
        ScriptedTurn({THOUGHT!r}, [("records", {{}}), ("blob", {{}})]),
        ScriptedTurn("Now one line of text for {BIDI_NAME}.", [("line", {{}})]),
        ScriptedTurn({ANSWER!r}),
    ], token_delay=0.005), tools=[records, blob, line])
"""


def _probe_notebook(lab_server: LabServer, name: str, display: str) -> str:
    run = f"w = probe('probe').run('Reading probe: records, JSON and markdown', display={display})"
    return lab_server.write_notebook(name, [AGENT_CELL + "\n" + run])


def _xss_flag(page: Any) -> Any:
    return page.evaluate("window.__akXss")


def _check_markdown(page: Any, view: Any) -> None:
    final = view.locator(".ak-final")
    final.locator(".ak-md h2").wait_for()
    assert final.locator(".ak-md h2").inner_text() == "The answer"
    assert final.locator(".ak-md strong").first.inner_text() == "big"
    thought = view.locator(".ak-thought").first
    assert thought.locator("strong").inner_text() == "two tools"
    assert thought.locator("li").count() == 2
    assert "**" not in view.inner_text() and "## " not in view.inner_text()
    # Nothing that can run survived the sanitizer.
    for selector in ("script", "iframe", "svg", "[onerror]", "[onclick]", "[onload]", "style"):
        assert view.locator(selector).count() == 0, selector
    hrefs = final.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
    assert hrefs and all(h.startswith(("http:", "https:")) for h in hrefs), hrefs
    for text in ("click me", "raw link"):
        link = final.get_by_text(text)
        if link.count():
            link.first.click(modifiers=["Control"])  # a new tab, never this one's script
    page.wait_for_timeout(300)
    assert _xss_flag(page) is None
    # Fenced code: highlighted, with a copy button that copies it.
    code = final.locator(".ak-code pre code")
    assert "return x + 1" in code.inner_text()
    assert code.locator("span").count() >= 2, code.inner_html()
    copy = final.locator(".ak-code .ak-copy")
    copy.click()
    wait_until(lambda: copy.inner_text() in ("Copied", "Copy failed"), timeout=5)
    assert copy.inner_text() == "Copied"
    assert "def grow(x):" in page.evaluate("navigator.clipboard.readText()")


def _check_results_and_steps(view: Any) -> None:
    # One definition of a step (a model turn): two tool steps, the answer's is the third.
    assert view.locator(".ak-meta-steps").inner_text() == "3 steps"
    labels = view.locator(".ak-step-toggle").all_inner_texts()
    assert [label.strip("▾▸ ") for label in labels] == ["Step 1", "Step 2"]
    assert "Step 3" in view.locator(".ak-final-label").inner_text()

    # A list of records is a table.
    table = view.locator(".ak-observation .ak-table")
    assert table.locator("th").all_inner_texts() == ["city", "population", "country"]
    assert table.locator("tbody tr").count() == 3
    assert "Berlin" in table.inner_text()
    # JSON is pretty-printed, its numbers never broken, large values collapsible.
    json_view = view.locator(".ak-observation .ak-json").first
    json_observation = view.locator(".ak-observation").filter(has=view.page.locator(".ak-json"))
    json_observation.locator(".ak-toggle").click()  # a long one starts shortened
    number = json_view.locator(".ak-json-number", has_text=str(LONG_NUMBER))
    assert number.evaluate("n => n.getClientRects().length") == 1
    nested = json_view.locator("details.ak-json-node").filter(has_text="rows").last
    assert nested.evaluate("d => d.open") is False
    nested.locator(":scope > summary").click()
    assert nested.evaluate("d => d.open") is True
    # "1 line", not "1 lines"; Show all still there.
    toggle = view.locator(".ak-toggle", has_text="Show all (1 line, 700 characters)")
    assert toggle.count() == 1
    button = toggle.element_handle()
    button.click()
    assert button.get_attribute("aria-expanded") == "true"

    # Bidi controls are shown, never obeyed.
    assert "\u202e" not in view.inner_text()
    assert "invoice_⟨U+202E⟩gnp.exe" in view.inner_text()
    assert view.locator(".ak-bidi").count() >= 2
    assert "bidirectional" in view.locator(".ak-warning[data-key='bidi']").inner_text()


def _check_collapse_and_timeline(view: Any) -> None:
    bodies = view.locator(".ak-step:not(.ak-step--gap) > .ak-step-body")
    assert bodies.count() == 2
    view.locator(".ak-collapse-all").click()
    assert view.locator(".ak-collapse-all").inner_text() == "Expand all"
    assert all(not b.is_visible() for b in bodies.all())
    summary = view.locator(".ak-step-summary").first
    assert "records" in summary.inner_text() and "blob" in summary.inner_text()
    first = view.locator(".ak-step-toggle").first
    first.click()
    assert first.get_attribute("aria-expanded") == "true" and bodies.first.is_visible()
    assert view.locator(".ak-collapse-all").inner_text() == "Expand all"
    view.locator(".ak-collapse-all").click()
    assert all(b.is_visible() for b in bodies.all())
    # The timeline: one segment per step, model and tool time.
    segments = view.locator(".ak-timeline .ak-tl-step")
    assert segments.count() == 3
    assert "tools" in segments.first.get_attribute("title")
    grow = segments.first.locator(".ak-tl-tools").evaluate("n => Number(n.style.flexGrow)")
    assert grow >= 0.25, grow  # blob sleeps 0.3 s
    assert "model" in (view.locator(".ak-timeline").get_attribute("aria-label") or "")


@pytest.mark.parametrize("display", ["'auto'", "'widget'"], ids=["lab-renderer", "anywidget"])
def test_markdown_results_steps_and_bidi(page: Any, lab_server: LabServer, display: str) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    name = _probe_notebook(lab_server, f"reading-{display.strip(chr(39))}.ipynb", display)
    if display == "'widget'":
        without_task_renderer(page)  # the anywidget view, as VS Code shows it
    open_notebook(page, lab_server, name)
    # 700 px: the width at which one-line JSON used to break mid-number.
    page.set_viewport_size({"width": 700, "height": 1000})
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    wait_status(view, "succeeded")
    expected_mode = "direct"
    assert view.get_attribute("data-mode") == expected_mode
    if display == "'widget'":
        assert page.locator(".agentkit-widget .ak-task").count() == 1
    else:
        assert page.locator(".agentkit-renderer .ak-task").count() == 1
    _check_markdown(page, view)
    _check_results_and_steps(view)
    _check_collapse_and_timeline(view)
    view.screenshot(path=str(screenshot_path(f"reading-{display.strip(chr(39))}.png")))


def test_the_static_copy_renders_markdown_without_running_anything(browser: Any) -> None:
    task = {"task_id": "t1", "agent": "probe", "status": "succeeded", "input": BIDI_NAME}
    events = [
        {"event_type": "thought", "step": 1, "data": {"text": THOUGHT + ATTACKS}},
        {
            "event_type": "tool_call",
            "step": 1,
            "data": {"call_id": "c", "name": "open", "arguments": {"path": BIDI_NAME}},
        },
        {
            "event_type": "observation",
            "step": 1,
            "data": {"call_id": "c", "name": "open", "output": BIDI_NAME, "is_error": False},
        },
        {"event_type": "final_answer", "step": 2, "data": {"output": ANSWER}},
    ]
    messages: list[dict[str, Any]] = [
        {"type": "step", "seq": i + 1, "data": {**e, "timestamp": 0}} for i, e in enumerate(events)
    ]
    messages.append(
        {
            "type": "result",
            "seq": 5,
            "data": {"status": "succeeded", "output": ANSWER, "total_steps": 2},
        }
    )
    html = render_static_html(task, messages)
    assert "<script" not in html and "<iframe" not in html and "<svg" not in html
    # In a tag, never; as escaped text (the model wrote it), yes.
    assert not re.search(r"<[a-z]+[^<>]*(href|src)=[\"']?javascript", html)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content(f"<!doctype html><meta charset='utf-8'><body>{html}</body>")
        page.wait_for_timeout(300)
        # Each step is a <details>: unfolded as a reader does, with a click (no script).
        steps = page.locator(".agentkit-static details > summary")
        assert steps.count() == 1  # step 1; step 2 is the answer, always shown
        for summary in steps.all():
            summary.click()
        for link in page.locator("a").all():
            link.click(modifiers=["Control"])
        page.wait_for_timeout(200)
        assert _xss_flag(page) is None
        copy = page.locator(".agentkit-static")
        assert copy.locator("h2").inner_text() == "The answer"
        assert copy.locator("strong").first.inner_text() == "two tools"
        assert copy.locator("li").count() >= 2
        code = copy.locator("pre code").filter(has_text="def grow")
        assert code.locator("span").count() >= 2  # highlighted, in inline styles
        assert copy.locator("script, iframe, svg, [onerror], [onclick], [onload]").count() == 0
        hrefs = copy.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
        assert set(hrefs) == {"https://example.com/docs"}, hrefs  # raw HTML stays text
        text = copy.inner_text()
        assert "\u202e" not in text and "invoice_⟨U+202E⟩gnp.exe" in text
        assert "2 steps" in text and "step 2" in text
    finally:
        context.close()


# -- messages the view cannot read, and messages it never gets -------------------------

FAKE_ID = "feedfacefeedface"


def _fake_task_notebook(lab_server: LabServer, name: str) -> str:
    lab_server.write_notebook(name, ["# a saved output"])
    notebook = lab_server.read_notebook(name)
    notebook["cells"][0]["outputs"] = [
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {TASK_MIME: {"task_id": FAKE_ID, "agent": "fake"}, "text/plain": "task"},
        }
    ]
    (lab_server.root / name).write_text(json.dumps(notebook))
    return name


def _step(seq: int, step: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "step",
        "seq": seq,
        "task_id": FAKE_ID,
        "data": {"event_type": kind, "step": step, "data": data, "timestamp": 1.0e9 + seq},
    }


def test_unreadable_and_missing_messages_are_said(page: Any, lab_server: LabServer) -> None:
    """A tiny fake server: the task's REST answer starts at seq 3 (1-2 are gone), its
    WebSocket sends a step that is not JSON (NaN), then skips seq 6-7."""
    record = {
        "task_id": FAKE_ID,
        "agent": "fake",
        "input": "poisoned",
        "status": "running",
        "created_at": 1.0e9,
        "started_at": 1.0e9,
        "events": [_step(3, 1, "thought", {"text": "Reading the file."})],
        "next_after": 3,
        "has_more": False,
    }
    page.route(
        f"**/agentkit/api/tasks/{FAKE_ID}**",
        lambda route: route.fulfill(status=200, json=record),
    )

    def fake_stream(ws: Any) -> None:
        connected = {"type": "connected", "task_id": FAKE_ID, "agent": "fake"}
        ws.send(json.dumps({**connected, "status": "running", "last_seq": 9, "after": 3}))
        ws.send(
            '{"type": "step", "seq": 4, "task_id": "feedfacefeedface", "data": {"event_type": '
            '"tool_call", "step": 1, "data": {"call_id": "c", "name": "rm", "arguments": '
            '{"path": "/home/user/important", "retries": NaN}}, "timestamp": 1000000004}}'
        )
        result = {"call_id": "c", "name": "rm", "output": "deleted /home/user/important"}
        ws.send(json.dumps(_step(5, 1, "observation", result)))
        ws.send(json.dumps(_step(8, 2, "thought", {"text": "Done."})))
        ws.send(json.dumps({"type": "step", "seq": 9, "task_id": FAKE_ID, "data": {"step": "x"}}))

    page.route_web_socket(TASK_STREAM, fake_stream)
    name = _fake_task_notebook(lab_server, "poisoned.ipynb")
    open_notebook(page, lab_server, name)  # (and its kernel: none is left starting)
    view = task_view(page)
    view.wait_for()
    view.locator(".ak-unreadable-step").nth(1).wait_for(timeout=15_000)

    unreadable = view.locator(".ak-unreadable-step")
    assert unreadable.count() == 2  # the NaN step and the malformed one
    assert "Unreadable step" in unreadable.first.inner_text()
    assert "/home/user/important" in unreadable.first.inner_text()  # what arrived, as text
    # The result is not shown as if nothing were above it: the unreadable call sits there.
    steps = view.locator(".ak-steps").inner_text()
    assert steps.index("Unreadable step") < steps.index("deleted /home/user/important")
    warnings = view.locator(".ak-warnings").inner_text()
    assert "2 messages of this run could not be read" in warnings
    # Messages 1-2 (before the REST page) and 6-7 (skipped) are said to be missing.
    gaps = view.locator(".ak-step--gap")
    assert gaps.count() == 2
    assert "The start of this run (2 messages)" in gaps.first.inner_text()
    assert "2 messages of this run (6–7)" in gaps.nth(1).inner_text()
    assert "does not show everything: 4 messages" in warnings


# -- the panel, main-area tabs, focus -----------------------------------------------------

SUCCESS_COLOUR = """
el => {
  const probe = document.createElement('span');
  probe.style.color = 'var(--jp-success-color1, #2e7d32)';
  el.parentElement.append(probe);
  const expected = getComputedStyle(probe).color;
  probe.remove();
  return [getComputedStyle(el).color, expected];
}
"""


def _open_panel(page: Any) -> Any:
    page.locator(".jp-SideBar .lm-TabBar-tab[data-id='agentkit-tasks-panel']").click()
    panel = page.locator("#agentkit-tasks-panel")
    panel.wait_for()
    return panel


def test_panel_badges_keep_their_colour_beside_a_widget(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "badge.ipynb",
        [
            "import agentkit_jupyter\nw = agentkit_jupyter.run('demo', 'What is 6 * 7?', "
            "display='widget')"
        ],
    )
    without_task_renderer(page)  # the anywidget view, whose stylesheet joins the page
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    wait_status(view, "succeeded")
    # The anywidget bundle put its stylesheet into the page.
    assert page.locator("#agentkit-jupyter-task-style").count() == 1
    task_id = view.get_attribute("data-task-id")
    panel = _open_panel(page)
    row = panel.locator(f".ak-task-row[data-task-id='{task_id}']")
    row.wait_for()
    wait_until(lambda: row.get_attribute("data-status") == "succeeded", timeout=15)
    badge = row.locator(".ak-task-status")
    colour, expected = badge.evaluate(SUCCESS_COLOUR)
    assert colour == expected, (colour, expected)
    # And the view's stylesheet styles nothing outside a view: not even an element of
    # its own class names elsewhere in the page.
    outside = page.evaluate(
        """() => {
          const probe = document.createElement('span');
          probe.className = 'ak-status ak-cancel ak-input';
          probe.dataset.status = 'succeeded';
          document.body.append(probe);
          const style = getComputedStyle(probe);
          const dot = getComputedStyle(probe, '::before').content;
          const seen = [style.borderTopStyle, style.display, style.marginLeft, dot];
          probe.remove();
          return seen;
        }"""
    )
    assert outside == ["none", "inline", "0px", "none"], outside


def test_task_tab_is_titled_by_its_input_and_the_answer_follows_the_steps(
    page: Any, lab_server: LabServer
) -> None:
    created = lab_server.api(
        "POST", "agentkit/api/tasks", json={"agent": "demo", "input": "Compare Rome and Madrid"}
    ).json()
    task_id = created["task_id"]
    wait_until(lambda: lab_server.task(task_id)["status"] == "succeeded", timeout=30)
    page.goto(f"{lab_server.url}lab?reset&token={lab_server.token}")
    panel = _open_panel(page)
    row = panel.locator(f".ak-task-row[data-task-id='{task_id}']")
    row.wait_for()
    row.locator(".ak-task-open").click()
    main = page.locator(f"#agentkit-task-{task_id} .ak-task")
    main.wait_for()
    wait_status(main, "succeeded")
    tab = page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden)")
    label = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
    wait_until(lambda: label.inner_text() == "Compare Rome and Madrid", timeout=10)
    assert tab.count() == 1
    # The answer sits right under the last step, not at the bottom of the tab.
    gap = main.evaluate(
        """n => n.querySelector('.ak-final').getBoundingClientRect().top
               - n.querySelector('.ak-steps').getBoundingClientRect().bottom"""
    )
    assert 0 <= gap < 20, gap
    tall = main.evaluate("n => n.getBoundingClientRect().height")
    answer_top = main.evaluate(
        "n => n.querySelector('.ak-final').getBoundingClientRect().top"
        " - n.getBoundingClientRect().top"
    )
    assert answer_top < tall * 0.8, (answer_top, tall)


def test_focus_stays_in_the_view_after_cancel(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "focus.ipynb",
        ["import agentkit_jupyter\nw = agentkit_jupyter.run('demo-slow', 'focus question')"],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    wait_status(view, "running")
    cancel = view.locator(".ak-cancel")
    wait_until(cancel.is_enabled, timeout=10)
    cancel.focus()
    page.keyboard.press("Enter")
    wait_status(view, "cancelled", timeout=15)
    assert cancel.is_disabled()
    inside = view.evaluate("n => n.contains(document.activeElement)")
    focused = page.evaluate("document.activeElement && document.activeElement.className")
    assert inside, f"focus went to {focused!r}"
    assert "ak-status" in str(focused)
