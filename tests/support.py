"""Agents the tests host: fast, hanging, failing, and a firehose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from agentkit_jupyter.core import (
    Agent,
    LLMError,
    LLMGateway,
    ModelRequest,
    ModelTurn,
    ScriptedGateway,
    ScriptedTurn,
    TokenDelta,
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


def test_agents() -> list[Agent]:
    return [
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
    ]
