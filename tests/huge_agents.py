"""Agents whose events are huge: a 16 MiB tool output, a 16 MiB answer (issue 20, item 3).

Hosted next to ``support:test_agents`` with
``--AgentKitExtension.agents=support:test_agents --AgentKitExtension.agents=huge_agents:agents``
or ``agentkit_config = {"agents": [..., "huge_agents:agents"]}``.
"""

from __future__ import annotations

from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn, tool

HUGE = 16 * 1024 * 1024


@tool
def count(n: int) -> int:
    """Return n.

    Args:
        n: A number.
    """
    return n


def table_text() -> str:
    """16 MiB of text, as a tool that prints a whole table gives."""
    line = "0123456789abcdef" * 3 + "-row\n"  # 53 characters
    return (line * (HUGE // len(line) + 1))[:HUGE]


@tool
def dump_table() -> str:
    """Return a whole table: 16 MiB of text."""
    return table_text()


def agents() -> list[Agent]:
    return [
        Agent(
            "huge-output",
            ScriptedGateway(
                [
                    ScriptedTurn("First a small lookup.", [("count", {"n": 7})]),
                    ScriptedTurn("Now the whole table.", [("dump_table", {})]),
                    ScriptedTurn("The table has many rows."),
                ]
            ),
            tools=[count, dump_table],
            description="Its second tool call returns 16 MiB",
        ),
        Agent(
            "huge-answer",
            ScriptedGateway(
                [
                    ScriptedTurn("A small lookup first.", [("count", {"n": 1})]),
                    ScriptedTurn("z" * HUGE),
                ]
            ),
            tools=[count],
            description="Answers with 16 MiB of text",
        ),
    ]
