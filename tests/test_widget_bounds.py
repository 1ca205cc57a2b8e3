"""The kernel widget keeps a bounded tail of a task's messages; what is older comes from
the server: ``steps``, the relay from an early seq, and the static copy stay whole."""

from __future__ import annotations

from typing import Any

import pytest
from support import FIREHOSE_STEPS
from test_widget import (  # noqa: F401 - fixtures
    RelayRecorder,
    _check_contiguous,
    attach,
    call,
    front_end,
    server,
    start,
    until,
    widgets,
)

import agentkit_jupyter.kernel.widget as widget_module

CAP = 50


async def test_a_long_task_past_the_widgets_cap_stays_whole(
    start: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(widget_module, "MAX_KEPT_MESSAGES", CAP)
    w = await start("firehose", "go", transport="relay")
    result = await call(w.wait, 60)
    assert result["status"] == "succeeded"

    # The kernel holds only the tail...
    assert len(w._messages) == CAP
    # ...yet the steps are all there, fetched from the server.
    steps = await call(lambda: w.steps)
    calls = [s for s in steps if s["event_type"] == "tool_call"]
    assert len(calls) == FIREHOSE_STEPS
    total = w._last_seq
    assert total > 4 * CAP

    # A view that starts from nothing gets the whole log, in order, without a gap.
    recorder = RelayRecorder(w, monkeypatch)
    front_end(w, {"type": "relay", "after": 0})
    messages = await until(
        lambda: (m := recorder.messages()) and m[-1]["type"] == "result" and m, timeout=30
    )
    _check_contiguous(messages)
    assert len(messages) == total
    assert [m["data"] for m in messages if m["type"] == "step"] == steps

    # The static copy shows the first steps too.
    html = (await call(w.mimebundle))["text/html"]
    assert "step 0 " in html and f"step {FIREHOSE_STEPS - 1} " in html
