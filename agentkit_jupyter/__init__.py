"""Run LLM agents in Jupyter and watch every ReAct step arrive live.

In a notebook: ``agentkit_jupyter.run("demo", "What is 17 * 23?")`` runs a server
agent; ``Agent(name, gateway, tools=[...]).run(question)`` runs your own agent in
the kernel; both show the live task view and return a :class:`TaskHandle`
(``status``, ``result``, ``steps``, ``wait()``, ``cancel()``, ``to_json()``...).
``history()`` lists the server's runs as a DataFrame, ``compare(a, b)`` shows two runs
side by side; ``load("analysis.ipynb")`` imports the runs a saved notebook carries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core import AgentPool, CancellationToken, StepEvent, emit, progress, tool

if TYPE_CHECKING:
    from .kernel.agent import Agent
    from .kernel.client import AgentKitClient, ServerInfo
    from .kernel.compare import compare
    from .kernel.handle import AgentNotFound as AgentNotFound
    from .kernel.handle import TaskHandle, run
    from .kernel.handle import TaskStillRunning as TaskStillRunning
    from .kernel.history import history
    from .kernel.notebook_runs import load
    from .kernel.widget import TaskWidget

__version__ = "0.1.0"

# The notebook API is imported on first use: it pulls in ipywidgets and httpx, which
# the server extension does not need.
_LAZY = {
    "Agent": "kernel.agent",
    "AgentKitClient": "kernel.client",
    "ServerInfo": "kernel.client",
    "TaskHandle": "kernel.handle",
    "TaskWidget": "kernel.widget",
    "run": "kernel.handle",
    # Runs as data: the task history as a DataFrame, two runs side by side.
    "history": "kernel.history",
    "compare": "kernel.compare",
    # The runs a saved notebook carries, imported into the server's history.
    "load": "kernel.notebook_runs",
    # Importable from here (`except agentkit_jupyter.AgentNotFound`), not offered by Tab.
    "AgentNotFound": "kernel.handle",
    "TaskStillRunning": "kernel.handle",
}

__all__ = [
    "Agent",
    "AgentKitClient",
    "AgentPool",
    "CancellationToken",
    "ServerInfo",
    "StepEvent",
    "TaskHandle",
    "TaskWidget",
    "__version__",
    "compare",
    "emit",
    "history",
    "load",
    "progress",
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
