"""Agents the tests host: fast, hanging, failing, and a firehose."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

from agentkit_jupyter.core import (
    Agent,
    LLMError,
    LLMGateway,
    ModelRequest,
    ModelTurn,
    ScriptContext,
    ScriptedGateway,
    ScriptedTurn,
    TokenDelta,
    progress,
    tool,
)


@tool
async def hang_forever() -> str:
    """Never returns."""
    await asyncio.sleep(3600)
    return "unreachable"


@tool
def blocking_sleep(seconds: float) -> str:
    """Sleep in a worker thread.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return f"slept {seconds}"


@tool
def count(n: int) -> int:
    """Return n.

    Args:
        n: A number.
    """
    return n


@tool
def blob(size: int) -> str:
    """Return a large text.

    Args:
        size: Characters.
    """
    return "x" * size


@tool
def broken_filename() -> str:
    """A file name as os.fsdecode gives it for bytes that are not UTF-8: a lone surrogate."""
    return "report-\udcff.txt and \ud800"


def surrogate_agent() -> Agent:
    """A server agent whose tool output and final answer hold lone surrogates."""
    return Agent(
        "surrogate",
        ScriptedGateway(
            [
                ScriptedTurn("Listing.", [("broken_filename", {})]),
                ScriptedTurn("Found report-\udcff.txt \ud800"),
            ]
        ),
        tools=[broken_filename],
    )


def bulky_agent(steps: int = 300, size: int = 64 * 1024) -> Agent:
    """Emits far more bytes than socket buffers hold, to stall a client that does not read."""
    turns = [ScriptedTurn("", [("blob", {"size": size})]) for _ in range(steps)]
    return Agent(
        "bulky", ScriptedGateway([*turns, ScriptedTurn("done")]), tools=[blob], max_steps=steps + 1
    )


class BrokenGateway(LLMGateway):
    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        raise LLMError("the endpoint answered 500 three times")
        yield  # pragma: no cover


FIREHOSE_STEPS = 200


def firehose_agent(steps: int = FIREHOSE_STEPS) -> Agent:
    turns: list[ScriptedTurn] = [
        ScriptedTurn(f"step {i} " * 5, [("count", {"n": i})]) for i in range(steps)
    ]
    turns.append(ScriptedTurn("done"))
    return Agent(
        "firehose",
        ScriptedGateway(turns),
        tools=[count],
        max_steps=steps + 1,
        description="Many fast steps",
    )


# Every real run of an approved tool, in order: "exactly once" is counted here (the
# test server runs in this process).
APPROVED_RUNS: list[tuple[str, int]] = []


@tool(requires_approval=True)
def guarded_write(label: str, value: int) -> str:
    """Write a value (needs approval).

    Args:
        label: Where to write.
        value: What to write.
    """
    APPROVED_RUNS.append((label, value))
    return f"wrote {value} to {label}"


def _echo_last(ctx: ScriptContext) -> ScriptedTurn:
    last = ctx.observations[-1] if ctx.observations else "nothing"
    return ScriptedTurn(f"The tool said: {last}")


@tool(requires_approval=True)
def stamped_write() -> str:
    """Say when the call started (benchmarks/approvals.py: decision -> tool start)."""
    return f"started {time.time():.6f}"


@tool
async def tick() -> str:
    """A short tool call (benchmarks/approvals.py: pause -> paused)."""
    await asyncio.sleep(0.005)
    return "tick"


@tool
def marked_slow_write(path: str) -> str:
    """Write a line to a file; the first call then takes 60 s (a run killed mid-call).

    Args:
        path: The file.
    """
    first = not os.path.exists(path)
    with open(path, "a", encoding="utf-8") as file:
        file.write("ran\n")
    if first:
        time.sleep(60)
    return f"wrote to {path}"


def resume_agents() -> list[Agent]:
    """Runs that a server restart interrupts (tests/test_resume.py)."""
    return [
        Agent(
            "mark-slow",
            ScriptedGateway(
                [
                    lambda ctx: ScriptedTurn(
                        "Writing.", [("marked_slow_write", {"path": ctx.question})]
                    ),
                    _echo_last,
                ]
            ),
            tools=[marked_slow_write],
        ),
    ]


def approval_agents() -> list[Agent]:
    """A tool call that waits for a decision; the answer repeats what the tool said."""

    def ask(label: str) -> ScriptedTurn:
        return ScriptedTurn("Writing.", [("guarded_write", {"label": label, "value": 1})])

    return [
        Agent(
            "approve-me",
            ScriptedGateway([lambda ctx: ask(ctx.question), _echo_last]),
            tools=[guarded_write],
        ),
        Agent(
            "approve-quick-timeout",
            ScriptedGateway([lambda ctx: ask(ctx.question), _echo_last]),
            tools=[guarded_write],
            approval_timeout=0.3,
        ),
        Agent(
            "approve-twice",
            ScriptedGateway(
                [lambda ctx: ask(ctx.question), lambda ctx: ask(ctx.question), _echo_last]
            ),
            tools=[guarded_write],
        ),
        Agent(
            "bench-approval",
            ScriptedGateway([ScriptedTurn("", [("stamped_write", {})]), _echo_last]),
            tools=[stamped_write],
        ),
        Agent(
            "bench-steps",
            ScriptedGateway([ScriptedTurn("", [("tick", {})])] * 400 + [ScriptedTurn("done")]),
            tools=[tick],
            max_steps=401,
        ),
        Agent(
            "steps",
            ScriptedGateway(
                [ScriptedTurn(f"step {i}", [("count", {"n": i})]) for i in range(6)]
                + [ScriptedTurn("all steps done")],
                token_delay=0.02,
            ),
            tools=[count],
            max_steps=7,
        ),
    ]


@tool
def stream_lines(lines: int, delay: float, total_known: bool = True) -> Iterator[str]:
    """Write numbered lines one at a time, saying how far it is.

    Args:
        lines: How many lines.
        delay: Seconds between two lines.
        total_known: Whether the progress says its total.
    """
    for i in range(1, lines + 1):
        progress(i - 1, lines if total_known else None, f"writing line {i}")
        yield f"line {i} of {lines}\n"
        time.sleep(delay)
    progress(lines, lines if total_known else None, "all lines written")


@tool
def flood_lines(lines: int, width: int) -> Iterator[str]:
    """Write many long lines at once (more than a view keeps, more than a call streams).

    Args:
        lines: How many lines.
        width: Characters per line.
    """
    for i in range(1, lines + 1):
        yield f"{i:06d} " + "x" * max(0, width - 8) + "\n"


def streaming_agents() -> list[Agent]:
    """Tools whose output streams (tests/browser/test_tool_output_view.py)."""

    def call(name: str, **arguments: object) -> ScriptedTurn:
        return ScriptedTurn(f"Calling {name}.", [(name, arguments)])

    return [
        Agent(
            "stream-lines",
            ScriptedGateway(
                [call("stream_lines", lines=15, delay=0.25), ScriptedTurn("All 15 lines written.")]
            ),
            tools=[stream_lines],
            description="A tool that writes 15 lines, 0.25 s apart, with its progress",
        ),
        Agent(
            "stream-unknown-total",
            ScriptedGateway(
                [
                    call("stream_lines", lines=6, delay=0.3, total_known=False),
                    ScriptedTurn("Done, without knowing how many there would be."),
                ]
            ),
            tools=[stream_lines],
        ),
        Agent(
            "stream-flood",
            ScriptedGateway([call("flood_lines", lines=5000, width=80), ScriptedTurn("Flooded.")]),
            tools=[flood_lines],
        ),
    ]


def test_agents() -> list[Agent]:
    return [
        *approval_agents(),
        *resume_agents(),
        Agent("echo", ScriptedGateway([ScriptedTurn("pong")]), description="Answers at once"),
        Agent(
            "hang-llm",
            ScriptedGateway([ScriptedTurn("never")], latency=3600),
            description="The model never answers",
        ),
        Agent(
            "hang-tool",
            ScriptedGateway([ScriptedTurn("Calling.", [("hang_forever", {})])]),
            tools=[hang_forever],
        ),
        Agent(
            "paced",
            ScriptedGateway(
                [ScriptedTurn(f"thinking {i}", [("count", {"n": i})]) for i in range(40)]
                + [ScriptedTurn("finished")],
                token_delay=0.01,
            ),
            tools=[count],
            max_steps=41,
        ),
        Agent("broken", BrokenGateway()),
        firehose_agent(),
        bulky_agent(),
        surrogate_agent(),
        Agent(
            "long-stream",
            ScriptedGateway([ScriptedTurn("word " * 20_000)], token_delay=0.0005),
            description="Streams tokens fast for several seconds",
        ),
        *streaming_agents(),
    ]
