"""Run LLM agents in Jupyter and watch every ReAct step arrive live."""

from .core import AgentPool, CancellationToken, StepEvent, tool

__version__ = "0.1.0"

__all__ = ["AgentPool", "CancellationToken", "StepEvent", "__version__", "tool"]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "agentkit-jupyter"}]


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    from .server.app import AgentKitExtension

    return [{"module": "agentkit_jupyter", "app": AgentKitExtension}]


# The notebook API is imported on first use: it pulls in ipywidgets, which the
# server extension does not need. ``Agent`` is the core agent plus ``run()``.
__all__ += ["Agent", "TaskWidget", "run"]


def __getattr__(name: str) -> object:
    if name in ("TaskWidget", "run"):
        from . import widget

        return getattr(widget, name)
    if name == "Agent":
        from .notebook import Agent

        return Agent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
