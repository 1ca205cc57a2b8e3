"""Run LLM agents in Jupyter and watch every ReAct step arrive live.

In a notebook: ``agentkit_jupyter.run("demo", "What is 17 * 23?")`` runs a server
agent; ``Agent(name, gateway, tools=[...]).run(question)`` runs your own agent in
the kernel; both return the live task view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core import AgentPool, CancellationToken, StepEvent, tool

if TYPE_CHECKING:
    from .kernel.agent import Agent
    from .kernel.client import AgentKitClient, ServerInfo
    from .kernel.widget import TaskWidget, run

__version__ = "0.1.0"

# The notebook API is imported on first use: it pulls in ipywidgets and httpx, which
# the server extension does not need.
_LAZY = {
    "Agent": "kernel.agent",
    "AgentKitClient": "kernel.client",
    "ServerInfo": "kernel.client",
    "TaskWidget": "kernel.widget",
    "run": "kernel.widget",
}

__all__ = [
    "Agent",
    "AgentKitClient",
    "AgentPool",
    "CancellationToken",
    "ServerInfo",
    "StepEvent",
    "TaskWidget",
    "__version__",
    "run",
    "tool",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # What ``agentkit_jupyter.<Tab>`` offers: the public API, not the submodules.
    return sorted(__all__)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "agentkit-jupyter"}]


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    from .server.app import AgentKitExtension

    return [{"module": "agentkit_jupyter", "app": AgentKitExtension}]
