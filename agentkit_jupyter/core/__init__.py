"""The agent runtime: no Jupyter, no Tornado."""

from .agent import Agent, AgentPool, UnknownAgentError
from .cancellation import CancellationToken, OperationCancelled
from .demo import demo_agents
from .engine import ReActEngine
from .events import ErrorCode, EventType, StepEvent
from .llm import (
    LLMError,
    LLMGateway,
    ModelRequest,
    ModelTurn,
    TokenDelta,
    ToolCall,
    Usage,
    redact_url,
)
from .openai_gateway import OpenAIGateway
from .scripted import ScriptContext, ScriptedGateway, ScriptedTurn
from .tool_output import emit, progress
from .tools import Tool, ToolArgumentError, tool

__all__ = [
    "Agent",
    "AgentPool",
    "CancellationToken",
    "ErrorCode",
    "EventType",
    "LLMError",
    "LLMGateway",
    "ModelRequest",
    "ModelTurn",
    "OpenAIGateway",
    "OperationCancelled",
    "ReActEngine",
    "ScriptContext",
    "ScriptedGateway",
    "ScriptedTurn",
    "StepEvent",
    "TokenDelta",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "Usage",
    "UnknownAgentError",
    "demo_agents",
    "emit",
    "progress",
    "redact_url",
    "tool",
]
