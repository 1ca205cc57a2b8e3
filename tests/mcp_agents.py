"""Server agents that use an MCP server configured by name
(``c.AgentKitExtension.mcp_servers``), for tests/test_mcp.py."""

from __future__ import annotations

from agentkit_jupyter.core import Agent, ScriptedGateway, ScriptedTurn
from agentkit_jupyter.core.mcp import MCPServer

SECRET = "mcp-secret-value-0042"


def agents() -> list[Agent]:
    return [
        Agent(
            "mcp-files",
            ScriptedGateway(
                [
                    ScriptedTurn("Echo.", [("echo", {"text": f"hello {SECRET}"})]),
                    lambda ctx: ScriptedTurn(f"The server said: {ctx.observations[-1]}"),
                ]
            ),
            tools=[MCPServer.named("files")],
            description="Uses the configured MCP server 'files'.",
        )
    ]
