"""Run LLM agents in Jupyter and watch every ReAct step arrive live."""

from .core import Agent, AgentPool, CancellationToken, StepEvent, tool

__version__ = "0.1.0"

__all__ = ["Agent", "AgentPool", "CancellationToken", "StepEvent", "__version__", "tool"]
