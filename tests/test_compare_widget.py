"""``agentkit_jupyter.compare(a, b)``: the CompareWidget of two real runs (handles or task
ids), its traits, its output bundle and its static HTML copy, against a real Jupyter
server (blocking calls in a thread, as in test_task_handle.py); and two runs of this
process the server never saw."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import agentkit_jupyter as ak
from agentkit_jupyter import protocol
from agentkit_jupyter.core import ScriptedGateway, ScriptedTurn, tool
from agentkit_jupyter.kernel.client import AgentKitClient, ServerInfo
from agentkit_jupyter.kernel.compare import CompareWidget, compare
from agentkit_jupyter.kernel.handle import TaskHandle
from agentkit_jupyter.kernel.static_compare import render_compare_html
from agentkit_jupyter.kernel.widget import WIDGET_VIEW_MIMETYPE


@pytest.fixture
def server(
    jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> ServerInfo:
    return ServerInfo(
        f"http://127.0.0.1:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token
    )


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Widgets to close after the test."""
    made: list[Any] = []
    yield made
    for widget in made:
        widget.close()


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def started(server: ServerInfo, closing: list[Any], agent: str, text: str) -> TaskHandle:
    handle: TaskHandle = await call(ak.run, agent, text, server=server, display=False)
    closing.append(handle.widget)
    await call(handle.wait, 30)
    return handle


def visible(fragment: str) -> str:
    """An HTML fragment's text, tags removed and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


async def test_two_handles_compared(server: ServerInfo, closing: list[Any], api: Any) -> None:
    rome = await started(server, closing, "demo", "Compare Paris and Rome")
    berlin = await started(server, closing, "demo", "Compare Paris and Berlin")
    widget = await call(ak.compare, rome, berlin)
    closing.append(widget)

    assert isinstance(widget, CompareWidget)
    assert widget.kind == "compare"
    assert widget._esm == rome.widget._esm  # the one bundle: the view picks by kind
    comparison = widget.comparison
    assert comparison["a"]["task_id"] == rome.task_id
    assert comparison["b"]["task_id"] == berlin.task_id
    assert comparison["a"]["steps"] == comparison["b"]["steps"] == 3
    # The server's route builds the same comparison from the same logs.
    status, served = await api("GET", "compare", params={"a": rome.task_id, "b": berlin.task_id})
    assert status == 200
    assert served["rows"] == comparison["rows"]
    assert served["a"] == comparison["a"] and served["deltas"] == comparison["deltas"]
    keys = [row["key"] for row in widget.rows]
    assert keys == [
        "thought",
        "tool:lookup_city:1",
        "tool:lookup_city:2",
        "thought",
        "tool:calculator:1",
        "answer",
    ]
    assert [row["key"] for row in widget.differences] == [
        "thought",
        "tool:lookup_city:2",
        "thought",
        "tool:calculator:1",
        "answer",
    ]
    assert widget.deltas["steps"] == 0 and widget.deltas["cost"] is None
    assert widget.to_dict() == comparison
    assert repr(widget) == (
        f"CompareWidget(a={rome.task_id!r}, b={berlin.task_id!r}, rows=6, differ=5)"
    )

    bundle = widget._repr_mimebundle_()
    assert set(bundle) == {
        "text/plain",
        "text/html",
        protocol.COMPARE_MIMETYPE,
        WIDGET_VIEW_MIMETYPE,
    }
    assert bundle[protocol.COMPARE_MIMETYPE] == comparison
    assert bundle[WIDGET_VIEW_MIMETYPE]["model_id"] == widget.model_id
    json.dumps(bundle[protocol.COMPARE_MIMETYPE], allow_nan=False)  # strict JSON

    page = bundle["text/html"]
    assert "<script" not in page
    assert rome.task_id in page and berlin.task_id in page
    # Both sides, the differences marked: Rome deleted in run a, Berlin inserted in b.
    assert re.search(r"<del [^>]*>Rome</del>", page)
    assert re.search(r"<ins [^>]*>Berlin</ins>", page)
    text = visible(page)
    assert "Two runs compared" in text and "6 rows, 5 differ" in text
    assert "Compare Paris and Rome" in text and "Compare Paris and Berlin" in text
    assert rome.result is not None and rome.result["output"] in text
    assert "lookup_city #2" in text and "Step 3" in text
    assert "unknown" in text  # the cost, whose price is unknown


async def test_task_ids_and_a_fork(server: ServerInfo, closing: list[Any], api: Any) -> None:
    parent = await started(server, closing, "demo", "What is 17 * 23?")
    messages = await call(parent.messages)
    observation = next(
        m for m in messages if m["type"] == "step" and m["data"]["event_type"] == "observation"
    )
    status, fork = await api(
        "POST",
        "tasks",
        parent.task_id,
        "fork",
        body={"at_seq": observation["seq"], "edit": {"observation": "400"}},
    )
    assert status == 201
    with AgentKitClient(server) as client:
        await call(client.wait, fork["task_id"], 30)
        widget = await call(compare, parent.task_id, fork["task_id"], client=client)
    closing.append(widget)
    comparison = widget.comparison
    assert comparison["b"]["parent_id"] == parent.task_id
    call_row = next(r for r in comparison["rows"] if r["key"] == "tool:calculator:1")
    assert call_row["same"] is False and set(call_row["diffs"]) == {"observation"}
    thought = comparison["rows"][0]
    assert thought["same"] is True and thought["b"]["copied"] is True

    page = widget.mimebundle()["text/html"]
    assert "Run b is a fork of run a." in page
    assert "copied from the parent run" in page
    assert re.search(r"<del [^>]*>391</del>", page)
    assert re.search(r"<ins [^>]*>400</ins>", page)
    # A handle and an id mix.
    mixed = await call(compare, parent, fork["task_id"], server=server)
    closing.append(mixed)
    assert mixed.comparison["rows"] == comparison["rows"]


@tool
def shout(text: str) -> str:
    """Repeat the text, louder.

    Args:
        text: what to repeat.
    """
    return text.upper()


def local_agent(words: str) -> ak.Agent:
    return ak.Agent(
        "local",
        ScriptedGateway(
            [
                ScriptedTurn("I shout it.", [("shout", {"text": words})]),
                lambda ctx: ScriptedTurn(f"It says {ctx.observations[-1]}"),
            ]
        ),
        tools=[shout],
    )


def test_runs_the_server_never_saw_and_hostile_text() -> None:
    one = local_agent("<script>alert(1)</script>").run("q", share=False)
    two = local_agent("hi \u202e there").run("q", share=False)
    try:
        one.wait(10)
        two.wait(10)
        widget = compare(one, two)
        try:
            comparison = widget.comparison
            assert [r["key"] for r in comparison["rows"]] == ["thought", "tool:shout:1", "answer"]
            assert comparison["rows"][0]["same"] is True
            shout_row = comparison["rows"][1]
            assert shout_row["a"]["arguments"] == {"text": "<script>alert(1)</script>"}
            page = widget.mimebundle()["text/html"]
            assert "<script" not in page and "&lt;script&gt;" in page
            assert "\u202e" not in page and "⟨U+202E⟩" in page
        finally:
            widget.close()
    finally:
        one.widget.close()
        two.widget.close()


def test_compare_takes_runs_or_ids() -> None:
    with pytest.raises(TypeError, match="takes runs"):
        compare(42, "x")  # type: ignore[arg-type]


def test_the_static_copy_of_an_empty_and_an_odd_comparison() -> None:
    page = render_compare_html({})
    assert "Neither run has a step yet." in page and "0 rows, 0 differ" in visible(page)
    odd = {
        "a": {"task_id": "a'><b>x", "cost": 0.0042, "duration_s": 1.25, "steps": 2},
        "b": {"task_id": "b", "cost": 0.01, "duration_s": 2.5, "steps": 3},
        "deltas": {"cost": 0.0058, "duration_s": 1.25, "steps": 1},
        "rows": [
            {
                "step": 1,
                "key": "end",
                "a": None,
                "b": {"kind": "end", "seq": 3, "text": "x" * 2000, "is_error": True},
                "same": False,
                "diffs": {},
            }
        ],
    }
    page = render_compare_html(odd)
    assert "a&#x27;&gt;&lt;b&gt;x" in page and "a'><b>x" not in page
    text = visible(page)
    assert "$0.004200" in text and "+$0.005800" in text and "+1.2 s" in text
    assert "not in this run" in text and "Error" in text
    assert "<details>" in page  # a long text is folded
