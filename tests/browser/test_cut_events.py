"""An event the server cut to ``max_event_bytes`` (issue 20, item 3), in a real JupyterLab:
the view says "showing M of N characters" and the whole run is still there; "Load all"
fetches ``GET tasks/{id}/events/{seq}`` and shows the whole text in place.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .conftest import LabServer, open_notebook, task_view, wait_until

pytestmark = pytest.mark.browser

TASK_MIME = "application/vnd.agentkit.task+json"
FAKE_ID = "cafecafecafecafe"
WHOLE = "".join(f"row {i:05d}\n" for i in range(5000))  # 50,000 characters
SHOWN = 1000
ANSWER = "The table has 5,000 rows."


def _step(seq: int, step: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "step",
        "seq": seq,
        "task_id": FAKE_ID,
        "data": {"event_type": kind, "step": step, "data": data, "timestamp": 1.0e9 + seq},
    }


def _notebook(lab_server: LabServer, name: str) -> str:
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


def test_a_cut_observation_says_so_and_load_all_shows_it_whole(
    page: Any, lab_server: LabServer
) -> None:
    href = f"agentkit/api/tasks/{FAKE_ID}/events/3"
    observation = {"call_id": "c1", "name": "dump_table", "is_error": False}
    marker = {"fields": {"output": {"chars": len(WHOLE), "shown": SHOWN}}, "bytes": 50_200}
    events = [
        _step(1, 1, "thought", {"text": "First a small lookup, then the whole table."}),
        _step(2, 1, "tool_call", {"call_id": "c1", "name": "dump_table", "arguments": {}}),
        _step(
            3,
            1,
            "observation",
            {**observation, "output": WHOLE[:SHOWN], "truncated": {**marker, "href": href}},
        ),
        _step(4, 2, "final_answer", {"output": ANSWER, "total_steps": 2}),
        {
            "type": "result",
            "seq": 5,
            "task_id": FAKE_ID,
            "data": {"status": "succeeded", "task_id": FAKE_ID, "output": ANSWER},
        },
    ]
    record = {
        "task_id": FAKE_ID,
        "agent": "fake",
        "input": "dump the table",
        "status": "succeeded",
        "created_at": 1.0e9,
        "started_at": 1.0e9,
        "finished_at": 1.0e9 + 5,
        "events": events,
        "next_after": 5,
        "has_more": False,
        "last_seq": 5,
    }
    fetched: list[str] = []
    page.route(
        f"**/agentkit/api/tasks/{FAKE_ID}?**",
        lambda route: route.fulfill(status=200, json=record),
    )
    page.route(
        f"**/agentkit/api/tasks/{FAKE_ID}",
        lambda route: route.fulfill(status=200, json=record),
    )

    def whole(route: Any) -> None:
        fetched.append(route.request.url)
        route.fulfill(status=200, json=_step(3, 1, "observation", {**observation, "output": WHOLE}))

    page.route(re.compile(rf".*/{re.escape(href)}(\?.*)?$"), whole)
    open_notebook(page, lab_server, _notebook(lab_server, "cut.ipynb"))
    view = task_view(page)
    note = view.locator(".ak-cut")
    note.wait_for(timeout=15_000)
    assert "showing 1,000 of 50,000 characters" in note.inner_text()
    warnings = view.locator(".ak-warnings").inner_text()
    assert "does not show everything" in warnings and "shortened by the server" in warnings
    # The steps before the big one are all there.
    assert "First a small lookup" in view.locator(".ak-thought").first.inner_text()
    output = view.locator(".ak-observation .ak-output")
    assert len(output.text_content() or "") == SHOWN
    note.get_by_role("button", name="Load all").click()
    wait_until(lambda: view.locator(".ak-cut").count() == 0, timeout=15)
    assert fetched and fetched[0].split("?")[0].endswith(href)  # (a cache-buster query)
    assert (view.locator(".ak-observation .ak-output").text_content() or "") == WHOLE
    assert view.locator(".ak-warnings [data-key='cut']").count() == 0
    assert view.locator(".ak-observation").count() == 1  # in place, not added
