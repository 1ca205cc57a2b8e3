"""Human in the loop (issue 14) in a real JupyterLab, in headless Chromium.

The task view's approval cards (approve with edited arguments, reject with a
reason, approve for the task), the Pause / Step / Resume buttons, a read-only
viewer (the server's ``connected`` greeting says ``can_write: false``), and the
side panel's badge and JupyterLab notification for a task that waits elsewhere.

``demo-approval`` (built in) counts test orders, then calls ``delete_rows`` and
``send_email``, each waiting for a decision; its next thought after a rejection
quotes the reason.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentkit_jupyter.protocol import ErrorCode

from .conftest import (
    LabServer,
    open_notebook,
    run_cell,
    running_lab,
    screenshot_path,
    task_view,
    wait_status,
    wait_until,
)

pytestmark = pytest.mark.browser

TASK_STREAM = re.compile(r".*/agentkit/ws/tasks/.*")
BUSY = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='busy']"
PANEL_TAB = ".jp-SideBar .lm-TabBar-tab[data-id='agentkit-tasks-panel']"


def _card(view: Any, tool: str, state: str = "pending") -> Any:
    card = view.locator(f".ak-approval[data-tool='{tool}'][data-state='{state}']")
    card.wait_for()
    return card


def _focused_class(page: Any) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.className"))


def _relay_task_sockets(
    page: Any, on_page_message: Any = None, on_server_message: Any = None
) -> None:
    """Pass the task WebSockets through, letting the test look at (and change) frames."""

    def handler(route: Any) -> None:
        server = route.connect_to_server()

        def to_server(message: Any) -> None:
            if on_page_message is None or on_page_message(route, message):
                server.send(message)

        def to_page(message: Any) -> None:
            route.send(on_server_message(message) if on_server_message else message)

        route.on_message(to_server)
        server.on_message(to_page)

    page.route_web_socket(TASK_STREAM, handler)


def test_approve_with_edited_arguments_while_the_kernel_is_busy(
    page: Any, lab_server: LabServer
) -> None:
    # The server's refusal of an edit shows on the card, which stays pending: the
    # first approve is answered, as the server answers an edit that fails the tool's
    # schema, without reaching it (the demo's tools have no constraint the browser
    # does not check already); the second goes through.
    sent: list[dict[str, Any]] = []

    def on_page_message(route: Any, message: Any) -> bool:
        frame = json.loads(message)
        if frame.get("type") in ("approve", "reject", "pause", "resume"):
            sent.append(frame)
        if frame.get("type") == "approve" and len(sent) == 1:
            route.send(
                json.dumps(
                    {
                        "type": "error",
                        "data": {
                            "code": "invalid_arguments",
                            "message": "Invalid arguments for delete_rows: limit: at most 10",
                            "call_id": frame["call_id"],
                        },
                    }
                )
            )
            return False
        return True

    _relay_task_sockets(page, on_page_message)
    name = lab_server.write_notebook(
        "approve.ipynb",
        [
            "import agentkit_jupyter\n"
            "w = agentkit_jupyter.run('demo-approval', 'Clean up the test orders')",
            "import time\ntime.sleep(30)",
        ],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    run_cell(page, 1)
    page.wait_for_selector(BUSY)

    card = _card(view, "delete_rows")
    wait_status(view, "waiting")
    assert view.locator(".ak-status").inner_text() == "Waiting for approval"
    assert view.locator(".ak-cancel").is_enabled()  # Cancel works while a call waits
    assert card.get_attribute("role") == "group"
    assert "delete_rows" in card.evaluate(
        "n => document.getElementById(n.getAttribute('aria-labelledby')).textContent"
    )
    # The form from the tool's schema: required fields marked, values filled in.
    fields = card.locator(".ak-field")
    assert [f.get_attribute("data-name") for f in fields.all()] == ["table", "status", "limit"]
    assert card.locator(".ak-field[data-name='table'] .ak-field-input").input_value() == "orders"
    assert card.locator(".ak-field[data-name='table'] .ak-required").count() == 1
    assert card.locator(".ak-field[data-name='limit'] .ak-required").count() == 0
    assert (
        card.locator(".ak-field[data-name='table'] input").get_attribute("aria-required") == "true"
    )
    card.scroll_into_view_if_needed()
    view.screenshot(path=str(screenshot_path("approval-card.png")))

    # Checked in the browser first: a limit that is not a whole number is not sent.
    limit = card.locator(".ak-field[data-name='limit'] input")
    limit.fill("ten")
    card.locator(".ak-approve").click()
    error = card.locator(".ak-field[data-name='limit'] .ak-field-error")
    error.wait_for()
    assert "whole number" in error.inner_text()
    assert limit.get_attribute("aria-invalid") == "true"
    assert _focused_class(page).startswith("ak-field-input")
    assert sent == []

    # By keyboard: the limit, then Tab (the reason), Tab (Approve), Enter.
    limit.focus()
    page.keyboard.press("Control+a")
    page.keyboard.type("25")
    assert limit.get_attribute("aria-invalid") is None
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert "ak-approve" in _focused_class(page).split()
    page.keyboard.press("Enter")
    refusal = card.locator(".ak-approval-error")
    refusal.wait_for()
    assert "refused these arguments" in refusal.inner_text()
    assert "at most 10" in refusal.inner_text()
    assert card.get_attribute("data-state") == "pending"
    assert sent[0]["arguments"] == {"table": "orders", "status": "test", "limit": 25}

    limit.fill("7")
    card.locator(".ak-approve").click()
    decided = _card(view, "delete_rows", "decided")
    assert decided.get_attribute("data-decision") == "edited"
    assert "Approved with edits" in decided.locator(".ak-approval-label").text_content()
    assert '"limit":7' in decided.locator(".ak-approval-args").inner_text()
    assert sent[1] == {
        "type": "approve",
        "call_id": sent[0]["call_id"],
        "scope": "once",
        "arguments": {"table": "orders", "status": "test", "limit": 7},
    }
    # The focus was in the card: it goes to the decision, not to the page.
    assert "ak-approval-decision" in _focused_class(page)
    call = view.locator(f".ak-call[data-call-id='{sent[0]['call_id']}']")
    call.locator(".ak-observation").wait_for()
    assert "Deleted 7 'test' rows" in call.locator(".ak-observation").inner_text()

    # The email: edited as JSON, checked for syntax and required arguments first.
    email = _card(view, "send_email")
    assert page.locator(BUSY).count() == 1  # all of this while the kernel sleeps
    email.locator(".ak-approval-mode").click()
    assert email.locator(".ak-approval-mode").get_attribute("aria-pressed") == "true"
    text = email.locator(".ak-approval-json-input")
    assert _focused_class(page) == "ak-approval-json-input"
    args = json.loads(text.input_value())
    text.fill('{"to": "ops@example.com",')
    email.locator(".ak-approve").click()
    assert "Not valid JSON" in email.locator(".ak-approval-json .ak-field-error").inner_text()
    text.fill(json.dumps({"to": "ops@example.com", "subject": "x"}))
    email.locator(".ak-approve").click()
    assert '"body" is required' in email.locator(".ak-approval-json .ak-field-error").inner_text()
    assert len(sent) == 2
    text.fill(json.dumps({**args, "to": "ops@example.com"}))
    email.locator(".ak-approve").click()
    done = _card(view, "send_email", "decided")
    assert done.get_attribute("data-decision") == "edited"
    assert "ops@example.com" in done.locator(".ak-approval-args").inner_text()

    wait_status(view, "succeeded")
    assert "(with the arguments you edited)" in view.locator(".ak-final").inner_text()
    assert view.locator(".ak-approval[data-state='pending']").count() == 0
    task = lab_server.task(view.get_attribute("data-task-id"))
    decisions = [
        e["data"]["data"]
        for e in task["events"]
        if e["type"] == "step" and e["data"]["event_type"] == "approval_decided"
    ]
    assert [d["decision"] for d in decisions] == ["edited", "edited"]
    assert decisions[0]["arguments"]["limit"] == 7
    assert page.locator(BUSY).count() == 1


def test_reject_with_a_reason_from_a_notification_and_the_panel(
    page: Any, lab_server: LabServer
) -> None:
    page.goto(f"{lab_server.url}lab?reset&token={lab_server.token}")
    page.locator(PANEL_TAB).wait_for()
    page.wait_for_timeout(500)  # the plugins are up
    started = lab_server.api(
        "POST", "agentkit/api/tasks", json={"agent": "demo-approval", "input": "Tidy the orders"}
    )
    started.raise_for_status()
    task_id = started.json()["task_id"]

    # Not shown anywhere on the page: JupyterLab's notification says it waits.
    toast = page.locator(".Toastify__toast", has_text="waits for your approval")
    toast.wait_for(timeout=20_000)
    assert "delete_rows" in toast.inner_text()

    # The side panel marks it, with the tool's name.
    page.locator(PANEL_TAB).click()
    row = page.locator(f"#agentkit-tasks-panel .ak-task-row[data-task-id='{task_id}']")
    row.wait_for()
    badge = row.locator(".ak-task-approval")
    badge.wait_for()
    assert badge.inner_text().strip().endswith("delete_rows")
    assert row.locator(".ak-task-status").inner_text() == "waiting"
    assert "decision on delete_rows" in (
        row.locator(".ak-task-open").get_attribute("aria-label") or ""
    )

    # The notification's button opens the task.
    toast.get_by_role("button", name="Open task").click()
    view = page.locator(f"#agentkit-task-{task_id} .ak-task")
    view.wait_for()
    card = _card(view, "delete_rows")
    reason = "the test orders are still used by the QA team"
    card.locator(".ak-approval-reason-input").fill(reason)
    card.locator(".ak-reject").click()
    decided = _card(view, "delete_rows", "decided")
    assert decided.get_attribute("data-decision") == "rejected"
    assert reason in decided.locator(".ak-approval-reason-text").inner_text()
    assert " by " in decided.locator(".ak-approval-by").inner_text()
    rejected = view.locator(".ak-observation--rejected")
    rejected.wait_for()
    assert "Not run" in rejected.locator(".ak-observation-label").inner_text()
    assert reason in rejected.locator(".ak-output").inner_text()
    # The model's next thought quotes the reason.
    thought = view.locator(".ak-step[data-step='3'] .ak-thought")
    thought.wait_for()
    wait_until(lambda: reason in thought.inner_text(), timeout=10)
    assert "You rejected the deletion" in thought.inner_text()

    # The email is approved for the rest of the task; the run ends.
    email = _card(view, "send_email")
    email.locator(".ak-approve-task").click()
    done = _card(view, "send_email", "decided")
    assert done.get_attribute("data-scope") == "task"
    assert "for this task" in done.locator(".ak-approval-label").text_content()
    wait_status(view, "succeeded")
    # Nothing waits any more: the badge and the notification are gone.
    wait_until(lambda: badge.count() == 0 or badge.is_hidden(), timeout=10)
    wait_until(lambda: toast.count() == 0, timeout=10)
    assert lab_server.task(task_id)["status"] == "succeeded"


def test_pause_step_twice_and_resume(page: Any, lab_server: LabServer) -> None:
    page.goto(f"{lab_server.url}lab?reset&token={lab_server.token}")
    page.locator(PANEL_TAB).click()
    # Paused at once (REST, as another viewer might), before its first tool call.
    started = lab_server.api(
        "POST", "agentkit/api/tasks", json={"agent": "demo", "input": "Compare Paris and Berlin"}
    )
    started.raise_for_status()
    task_id = started.json()["task_id"]
    lab_server.api("POST", f"agentkit/api/tasks/{task_id}/pause", json={}).raise_for_status()
    row = page.locator(f"#agentkit-tasks-panel .ak-task-row[data-task-id='{task_id}']")
    row.locator(".ak-task-open").click()
    view = page.locator(f"#agentkit-task-{task_id} .ak-task")
    view.wait_for()
    wait_status(view, "paused", timeout=15)
    assert view.locator(".ak-status").inner_text() == "Paused"
    assert view.locator(".ak-paused").count() == 1
    pause = view.locator(".ak-pause")
    resume, step = view.locator(".ak-resume"), view.locator(".ak-single-step")
    assert pause.is_hidden() and resume.is_visible() and step.is_visible()
    assert view.locator(".ak-cancel").is_enabled()
    assert lab_server.task(task_id)["status"] == "paused"

    def events(kind: str) -> int:
        task = lab_server.task(task_id)
        return sum(
            1 for e in task["events"] if e["type"] == "step" and e["data"]["event_type"] == kind
        )

    for n in (1, 2):
        if n == 1:
            step.click()
        else:
            step.focus()
            page.keyboard.press("Enter")
        paused = view.locator(".ak-paused")
        wait_until(lambda: paused.count() == n + 1, timeout=15)  # noqa: B023
        wait_status(view, "paused")
        assert view.locator(".ak-resumed").count() == n
        assert "1 more call" in view.locator(".ak-resumed").nth(n - 1).inner_text()
        assert step.get_attribute("aria-disabled") == "false"
    assert "ak-single-step" in _focused_class(page).split()  # the focus stayed on Step
    assert events("paused") == 3 and events("resumed") == 2
    assert lab_server.task(task_id)["status"] == "paused"
    assert view.locator(".ak-final").is_hidden()

    resume.click()
    wait_status(view, "succeeded", timeout=30)
    assert view.locator(".ak-resumed").count() == 3
    assert "0.54 times the population" in view.locator(".ak-final").inner_text()
    assert view.locator(".ak-run-controls .ak-control:visible").count() == 0


def test_pause_and_resume_by_keyboard_keep_the_focus(page: Any, lab_server: LabServer) -> None:
    name = lab_server.write_notebook(
        "pause.ipynb",
        ["import agentkit_jupyter\nw = agentkit_jupyter.run('demo-slow', 'the archive')"],
    )
    open_notebook(page, lab_server, name)
    run_cell(page, 0)
    view = task_view(page)
    view.wait_for()
    pause = view.locator(".ak-pause")
    pause.wait_for()
    pause.focus()
    page.keyboard.press("Enter")
    wait_status(view, "paused", timeout=15)
    assert view.locator(".ak-status").inner_text() == "Paused"
    assert view.locator(".ak-paused").count() == 1
    # The focused Pause went away: the focus is on Resume, which took its place.
    assert pause.is_hidden()
    assert "ak-resume" in _focused_class(page).split()
    page.keyboard.press("Enter")
    wait_status(view, "running", timeout=15)
    assert view.locator(".ak-resumed").count() == 1
    assert "ak-pause" in _focused_class(page).split()
    view.locator(".ak-cancel").click()
    wait_status(view, "cancelled", timeout=15)


@pytest.fixture(scope="module")
def read_only_lab(
    chromium_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    """A JupyterLab whose authorizer lets the browser read tasks, not change them
    (tests/browser/read_only_authorizer.py); its kernels keep every right."""
    home = tmp_path_factory.mktemp("read-only-lab")
    shutil.copy(Path(__file__).with_name("read_only_authorizer.py"), home)
    with running_lab(
        home, "--ServerApp.authorizer_class=read_only_authorizer.BrowserReadOnlyAuthorizer"
    ) as server:
        yield server


def test_a_read_only_viewer_sees_the_cards_without_buttons(
    browser: Any, read_only_lab: LabServer
) -> None:
    """A viewer Jupyter's authorizer lets read only: the server's greeting says
    can_write false, the view offers no decision, pause or cancel, and the server
    refuses a decision sent anyway; someone who may decides, and the view shows it."""
    lab = read_only_lab
    context = browser.new_context(viewport={"width": 1280, "height": 960})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        name = lab.write_notebook(
            "watch.ipynb",
            ["import agentkit_jupyter\nw = agentkit_jupyter.run('demo-approval', 'Just watching')"],
        )
        open_notebook(page, lab, name)
        run_cell(page, 0)
        view = task_view(page)
        view.wait_for()
        card = _card(view, "delete_rows")
        wait_status(view, "waiting")
        wait_until(lambda: view.get_attribute("data-writable") == "false", timeout=10)
        assert card.locator("button").count() == 0
        assert card.locator("input, textarea, select").count() == 0
        assert "someone who may change this run" in card.inner_text()
        assert view.locator(".ak-run-controls").is_hidden()
        assert view.locator(".ak-cancel").is_hidden()

        # The server, not the page, refuses: a decision sent from this browser anyway.
        task_id = view.get_attribute("data-task-id")
        call_id = card.get_attribute("data-call-id")
        url = lab.url.replace("http", "ws", 1) + f"agentkit/ws/tasks/{task_id}?token={lab.token}"
        frames = page.evaluate(SEND_A_DECISION, [url, call_id])
        greeting = next(f for f in frames if f["type"] == "connected")
        assert greeting["can_write"] is False
        refused = [f for f in frames if f["type"] == "error"]
        assert refused and refused[0]["data"]["code"] == ErrorCode.FORBIDDEN.value, frames
        assert lab.task(str(task_id))["status"] == "waiting"

        # Decided elsewhere (REST, by someone who may): the card shows it.
        answer = lab.api(
            "POST",
            f"agentkit/api/tasks/{task_id}/approvals/{call_id}",
            json={"decision": "reject", "reason": "read-only test"},
        )
        assert answer.status_code == 200, answer.text
        decided = _card(view, "delete_rows", "decided")
        assert "read-only test" in decided.inner_text()
        email = _card(view, "send_email")
        assert email.locator("button").count() == 0
        call_id = email.get_attribute("data-call-id")
        lab.api(
            "POST",
            f"agentkit/api/tasks/{task_id}/approvals/{call_id}",
            json={"decision": "approve"},
        ).raise_for_status()
        assert _card(view, "send_email", "decided").get_attribute("data-decision") == "approved"
        wait_status(view, "succeeded")
    finally:
        lab.interrupt_kernels()
        context.close()


# Opens the task's WebSocket from the page (the browser's own user agent) and sends
# an approve as soon as it is greeted; resolves with the frames it got.
SEND_A_DECISION = """async ([url, callId]) => {
  const ws = new WebSocket(url);
  const frames = [];
  return await new Promise(resolve => {
    const done = () => { ws.close(); resolve(frames); };
    ws.onmessage = event => {
      const frame = JSON.parse(event.data);
      frames.push(frame);
      if (frame.type === 'connected') {
        ws.send(JSON.stringify({type: 'approve', call_id: callId}));
      }
      if (frame.type === 'error') done();
    };
    ws.onclose = () => resolve(frames);
    setTimeout(done, 15000);
  });
}"""


WIDGET_JS = Path(__file__).resolve().parents[2] / "agentkit_jupyter" / "static" / "widget.js"
FAKE_ORIGIN = "http://agentkit-widget.test"
FAKE_PAGE = """<!doctype html><html><body><div id="out"></div><script type="module">
const listeners = new Set();
window.__sent = [];
const traits = {task_id: 'feedfacefeedface', agent: 'fake', transport: 'relay'};
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

SCHEMA_A = {
    "type": "object",
    "properties": {
        "mode": {"enum": ["fast", "safe"], "description": "How."},
        "dry_run": {"type": "boolean"},
        "ratio": {"anyOf": [{"type": "number", "maximum": 1}, {"type": "null"}], "default": None},
        "note": {"type": "string"},
    },
    "required": ["mode", "note"],
    "additionalProperties": False,
}
SCHEMA_B = {
    "type": "object",
    "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
    "required": ["rows"],
}


def _step(seq: int, kind: str, step: int, data: Any) -> dict[str, Any]:
    return {
        "type": "step",
        "seq": seq,
        "task_id": "feedfacefeedface",
        "data": {"event_type": kind, "step": step, "data": data, "timestamp": 1_700_000_000 + seq},
    }


def _feed(page: Any, *messages: dict[str, Any], status: str = "running") -> None:
    page.evaluate(
        "batch => window.__feed(batch)",
        {
            "type": "relay_batch",
            "task_id": "feedfacefeedface",
            "task": {"task_id": "feedfacefeedface", "agent": "fake", "status": status},
            "messages": list(messages),
        },
    )


def _controls(page: Any) -> list[dict[str, Any]]:
    return [m for m in page.evaluate("window.__sent") if m.get("type") == "control"]


def test_several_pending_cards_odd_fields_and_the_relay_control_message(page: Any) -> None:
    page.route(
        f"{FAKE_ORIGIN}/", lambda route: route.fulfill(body=FAKE_PAGE, content_type="text/html")
    )
    page.route(
        f"{FAKE_ORIGIN}/widget.js",
        lambda route: route.fulfill(path=str(WIDGET_JS), content_type="text/javascript"),
    )
    page.goto(f"{FAKE_ORIGIN}/")
    page.wait_for_function("window.__ready === true")
    view = page.locator(".ak-task")
    view.wait_for()
    assert {"type": "relay", "after": 0, "task_id": "feedfacefeedface"} in page.evaluate(
        "window.__sent"
    )
    _feed(
        page,
        _step(1, "thought", 1, {"text": "Two changes at once."}),
        _step(
            2,
            "tool_call",
            1,
            {"call_id": "a", "name": "tune", "arguments": {"mode": "fast", "note": "n"}},
        ),
        _step(
            3, "tool_call", 1, {"call_id": "b", "name": "load", "arguments": {"rows": [{"x": 1}]}}
        ),
        _step(
            4,
            "approval_requested",
            1,
            {
                "call_id": "a",
                "tool": "tune",
                "arguments": {"mode": "fast", "note": "n"},
                "policy": "agent",
                "schema": SCHEMA_A,
                "timeout": 600,
                "future_field": {"x": [1]},
            },
        ),
        _step(
            5,
            "approval_requested",
            1,
            {
                "call_id": "b",
                "tool": "load",
                "arguments": {"rows": [{"x": 1}]},
                "policy": "tool",
                "schema": SCHEMA_B,
            },
        ),
        # Garbage a newer or broken server might send: shown, never a crash.
        _step(
            6,
            "approval_requested",
            1,
            {"call_id": "c", "tool": 7, "arguments": [1, 2], "schema": "?"},
        ),
        _step(7, "approval_wobbled", 1, {"call_id": "a", "nested": {"deep": [None]}}),
    )
    wait_status(view, "waiting")
    pending = view.locator(".ak-approval[data-state='pending']")
    assert pending.count() == 3
    assert view.locator(".ak-status").inner_text() == "Waiting for approval (3 calls)"
    assert view.get_attribute("data-writable") == "true"  # the kernel relays commands
    a = view.locator(".ak-approval[data-call-id='a']")
    b = view.locator(".ak-approval[data-call-id='b']")
    c = view.locator(".ak-approval[data-call-id='c']")
    # A: a form (an enum and a boolean as choices, a nullable number, strings).
    assert a.locator(".ak-approval-editor").get_attribute("data-mode") == "form"
    assert a.locator(".ak-field[data-name='mode'] select").input_value() == "0"
    assert a.locator(".ak-field[data-name='dry_run'] select option").all_inner_texts() == [
        "(not set)",
        "true",
        "false",
    ]
    assert "Not run if nobody decides by" in a.inner_text()
    # B (a list of records) and C (no schema, not an object): the JSON editor only.
    assert b.locator(".ak-approval-editor").get_attribute("data-mode") == "json"
    assert b.locator(".ak-approval-mode").count() == 0
    assert c.locator(".ak-approval-editor").get_attribute("data-mode") == "json"
    assert view.locator(".ak-other").count() == 1  # the unknown event, as a line

    # A, edited in the form: a ratio above the schema's maximum is refused here.
    a.locator(".ak-field[data-name='ratio'] input").fill("1.5")
    a.locator(".ak-field[data-name='dry_run'] select").select_option(label="true")
    a.locator(".ak-approve").click()
    assert "at most 1" in a.locator(".ak-field[data-name='ratio'] .ak-field-error").inner_text()
    assert _controls(page) == []
    a.locator(".ak-field[data-name='ratio'] input").fill("0.25")
    a.locator(".ak-approve").click()
    wait_until(lambda: len(_controls(page)) == 1)
    assert _controls(page)[0] == {
        "type": "control",
        "task_id": "feedfacefeedface",
        "command": {
            "type": "approve",
            "call_id": "a",
            "scope": "once",
            "arguments": {"mode": "fast", "dry_run": True, "ratio": 0.25, "note": "n"},
        },
    }
    assert "Approving" in a.locator(".ak-approval-sending").inner_text()
    # The kernel passes on the server's refusal: shown on A, which stays pending.
    page.evaluate(
        "m => window.__feed(m)",
        {
            "type": "relay_error",
            "task_id": "feedfacefeedface",
            "error": "mode: no",
            "code": "invalid_arguments",
            "call_id": "a",
        },
    )
    a.locator(".ak-approval-error").wait_for()
    assert a.get_attribute("data-error") == "invalid_arguments"
    a.locator(".ak-approve").focus()
    page.keyboard.press("Enter")
    wait_until(lambda: len(_controls(page)) == 2)
    _feed(
        page,
        _step(
            8,
            "approval_decided",
            1,
            {
                "call_id": "a",
                "decision": "edited",
                "by": "alice",
                "reason": None,
                "scope": "once",
                "arguments": _controls(page)[1]["command"]["arguments"],
            },
        ),
    )
    assert a.get_attribute("data-decision") == "edited"
    assert "alice" in a.locator(".ak-approval-who").inner_text()
    # The focus was in A: it moves to the next card that waits.
    assert page.evaluate("document.activeElement.dataset.callId") == "b"
    wait_status(view, "waiting")

    # B: its JSON checked (types of the top level), then rejected with a reason.
    b.locator(".ak-approval-json-input").fill('{"rows": 3}')
    b.locator(".ak-approve").click()
    assert '"rows" must be a list' in b.locator(".ak-field-error").inner_text()
    b.locator(".ak-approval-reason-input").fill("too many rows")
    b.locator(".ak-reject").click()
    wait_until(lambda: len(_controls(page)) == 3)
    assert _controls(page)[2]["command"] == {
        "type": "reject",
        "call_id": "b",
        "reason": "too many rows",
    }
    _feed(
        page,
        _step(
            9,
            "approval_decided",
            1,
            {
                "call_id": "b",
                "decision": "rejected",
                "by": None,
                "reason": "too many rows",
                "arguments": None,
            },
        ),
        _step(
            10,
            "observation",
            1,
            {
                "call_id": "b",
                "name": "load",
                "is_error": True,
                "error_code": "rejected",
                "output": "Not run: rejected.",
            },
        ),
        _step(
            11,
            "approval_decided",
            1,
            {
                "call_id": "c",
                "decision": "timed_out",
                "by": None,
                "reason": "Nobody approved it within 600 s.",
            },
        ),
        _step(
            12,
            "approval_decided",
            1,
            {
                "call_id": "zzz",
                "decision": "approved",
                "by": "bob",
                "scope": "task",
                "reason": "approved for this task",
            },
        ),
    )
    wait_status(view, "running")
    assert view.locator(".ak-approval[data-state='pending']").count() == 0
    assert b.get_attribute("data-decision") == "rejected"
    assert c.get_attribute("data-decision") == "timed_out"
    assert view.locator(".ak-approval[data-call-id='zzz']").get_attribute("data-scope") == "task"
    assert view.locator(".ak-observation--rejected .ak-observation-label").inner_text() == "Not run"

    # Pause and Step go through the relay too; collapsing a step still works.
    view.locator(".ak-pause").click()
    wait_until(lambda: len(_controls(page)) == 4)
    assert _controls(page)[3]["command"] == {"type": "pause"}
    _feed(page, _step(13, "paused", 1, {"by": "alice", "reason": None}))
    wait_status(view, "paused")
    view.locator(".ak-single-step").click()
    wait_until(lambda: len(_controls(page)) == 5)
    assert _controls(page)[4]["command"] == {"type": "resume", "steps": 1}
    view.locator(".ak-collapse-all").click()
    summary = view.locator(".ak-step[data-step='1'] .ak-step-summary")
    assert "2 tool calls" in summary.inner_text() and "1 not run" in summary.inner_text()
    view.locator(".ak-collapse-all").click()
    _feed(
        page,
        _step(14, "resumed", 1, {"by": "alice", "reason": None, "steps": 1}),
        _step(15, "final_answer", 2, {"output": "Done."}),
        {
            "type": "result",
            "seq": 16,
            "task_id": "feedfacefeedface",
            "data": {"status": "succeeded", "task_id": "feedfacefeedface", "output": "Done."},
        },
    )
    wait_status(view, "succeeded")
    assert view.locator(".ak-run-controls .ak-control:visible").count() == 0
