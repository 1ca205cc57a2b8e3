"""Tool output that streams: generator tools (sync and async), emit() and progress(),
and prints, each piece a ``tool_output`` / ``tool_progress`` event before the call's
observation; a cancel in the middle stops a generator at its next piece."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from agentkit_jupyter.core import CancellationToken, ReActEngine, emit, progress, tool
from agentkit_jupyter.core.events import EventType, StepEvent
from agentkit_jupyter.core.scripted import ScriptedGateway, ScriptedTurn
from agentkit_jupyter.protocol import MAX_TOOL_OUTPUT_CHARS

STOPPED = threading.Event()


@tool
def count_up(n: int) -> Iterator[str]:
    """Count, a line at a time.

    Args:
        n: how far.
    """
    for i in range(1, n + 1):
        progress(i, n, f"line {i}")
        yield f"line {i}\n"
        time.sleep(0.06)


@tool
async def fetch_pages(pages: int) -> AsyncIterator[str]:
    """Fetch pages.

    Args:
        pages: how many.
    """
    for i in range(pages):
        await asyncio.sleep(0.06)
        yield f"page {i} "


@tool
def noisy_sum(a: int, b: int) -> int:
    """Add, saying so.

    Args:
        a: one.
        b: two.
    """
    print("adding", a, "and", b)
    emit("(checked)")
    return a + b


@tool
def endless() -> Iterator[str]:
    """Never ends by itself."""
    try:
        while True:
            yield "tick "
            time.sleep(0.02)
    finally:
        STOPPED.set()


@tool
def firehose() -> Iterator[str]:
    """Far more output than streams."""
    for _ in range(200):
        yield "x" * 4096


def run(
    calls: list[tuple[str, dict[str, Any]]], tools: list[Any], token: Any = None
) -> list[StepEvent]:
    gateway = ScriptedGateway([ScriptedTurn("Working.", calls), ScriptedTurn("Done.")])

    async def main() -> list[StepEvent]:
        stream = ReActEngine(gateway).execute_stream(
            [{"role": "user", "content": "go"}], tools, "m", "a", None, cancellation_token=token
        )
        return [e async for e in stream]

    return asyncio.run(main())


def of(events: list[StepEvent], kind: EventType) -> list[dict[str, Any]]:
    return [e.data for e in events if e.event_type is kind]


def test_a_sync_generator_streams_its_lines_and_progress_before_its_observation() -> None:
    events = run([("count_up", {"n": 4})], [count_up])
    kinds = [e.event_type for e in events]
    observation = kinds.index(EventType.OBSERVATION)
    outputs = of(events, EventType.TOOL_OUTPUT)
    assert "".join(o["text"] for o in outputs) == "line 1\nline 2\nline 3\nline 4\n"
    assert all(kinds.index(EventType.TOOL_OUTPUT) < observation for _ in outputs)
    assert max(i for i, k in enumerate(kinds) if k is EventType.TOOL_OUTPUT) < observation
    assert [p["progress"] for p in of(events, EventType.TOOL_PROGRESS)] == [1, 2, 3, 4]
    assert of(events, EventType.TOOL_PROGRESS)[-1] == {
        "call_id": "call_0_0",
        "name": "count_up",
        "progress": 4.0,
        "total": 4.0,
        "message": "line 4",
    }
    [obs] = of(events, EventType.OBSERVATION)
    assert obs["output"] == "line 1\nline 2\nline 3\nline 4\n"


def test_an_async_generator_streams_too() -> None:
    events = run([("fetch_pages", {"pages": 3})], [fetch_pages])
    assert "".join(o["text"] for o in of(events, EventType.TOOL_OUTPUT)) == "page 0 page 1 page 2 "
    assert len(of(events, EventType.TOOL_OUTPUT)) >= 2  # streamed, not one piece at the end
    assert of(events, EventType.OBSERVATION)[0]["output"] == "page 0 page 1 page 2 "


def test_prints_and_emit_of_a_plain_tool_are_its_output(capsys: Any) -> None:
    print("the notebook's own line")
    events = run([("noisy_sum", {"a": 2, "b": 3})], [noisy_sum])
    assert (
        "".join(o["text"] for o in of(events, EventType.TOOL_OUTPUT)) == "adding 2 and 3\n(checked)"
    )
    assert of(events, EventType.OBSERVATION)[0]["output"] == "5"
    print("and after")
    out = capsys.readouterr().out
    assert "the notebook's own line" in out and "and after" in out
    assert "adding" not in out  # the tool's print went to its stream, not to stdout


def test_a_cancel_stops_a_generator_tool_at_its_next_piece() -> None:
    STOPPED.clear()
    token = CancellationToken()

    def cancel_soon() -> None:
        time.sleep(0.3)
        token.cancel("enough")

    threading.Thread(target=cancel_soon, daemon=True).start()
    events = run([("endless", {})], [endless], token)
    assert events[-1].event_type is EventType.CANCELLED
    assert of(events, EventType.TOOL_OUTPUT)  # it streamed before the cancel
    assert STOPPED.wait(2)  # the generator was closed, not left running


def test_a_calls_streamed_output_is_bounded() -> None:
    events = run([("firehose", {})], [firehose])
    outputs = of(events, EventType.TOOL_OUTPUT)
    assert sum(len(o["text"]) for o in outputs) == MAX_TOOL_OUTPUT_CHARS
    assert outputs[-1].get("cut") is True
    assert len(outputs) < 50  # pieces written close together are one event
    assert len(of(events, EventType.OBSERVATION)[0]["output"]) == 200 * 4096


def test_the_static_copy_keeps_a_calls_output_and_progress() -> None:
    from agentkit_jupyter.kernel.static_html import render_static_html

    events = run([("count_up", {"n": 3})], [count_up])
    messages = [
        {"type": "step", "seq": n, "data": e.to_dict()} for n, e in enumerate(events, start=1)
    ]
    html = render_static_html({"task_id": "t", "agent": "a", "status": "succeeded"}, messages)
    assert "Progress: 3.0 of 3.0 · line 3" in html
    assert "line 1\nline 2\nline 3\n" in html
    assert html.index("Progress:") < html.index("Result")
