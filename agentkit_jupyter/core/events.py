"""The step events a run emits: the contract every other layer only moves around."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# The event types are part of the wire contract: defined there, used here.
from ..protocol import TERMINAL_EVENT_TYPES, EventType


class ErrorCode(StrEnum):
    """Stable codes of ``error`` events (end of a run) and of failed observations."""

    # End the run
    LLM_ERROR = "llm_error"
    LLM_TIMEOUT = "llm_timeout"
    # The model's stream ended cleanly but without a complete turn (no finish).
    MODEL_STREAM_ENDED = "model_stream_ended"
    EMPTY_RESPONSE = "empty_response"
    MAX_STEPS_EXCEEDED = "max_steps_exceeded"
    INTERNAL_ERROR = "internal_error"
    # Become an observation with is_error; the loop goes on
    TOOL_ERROR = "tool_error"
    TOOL_TIMEOUT = "tool_timeout"
    INVALID_ARGUMENTS = "invalid_arguments"
    UNKNOWN_TOOL = "unknown_tool"
    # A person rejected the call, or nobody approved it in time: it did not run.
    REJECTED = "rejected"
    NOT_APPROVED = "not_approved"


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One thing that happened in a run.

    ``data`` by ``event_type``:

    - ``token``: ``delta`` (a piece of the model's text as it streams)
    - ``thought``: ``text``, ``usage`` (``prompt_tokens``, ``completion_tokens``)
    - ``tool_call``: ``call_id``, ``name``, ``arguments``
    - ``observation``: ``call_id``, ``name``, ``output``, ``is_error``, ``duration_ms``,
      and ``error_code`` when ``is_error``
    - ``final_answer``: ``output``, ``total_steps``, ``total_tokens``, ``usage``
    - ``error``: ``message``, ``code``
    - ``cancelled``: ``reason``, ``interrupted``, ``tools``, ``background``, ``message``
    - ``approval_requested``: ``call_id``, ``tool``, ``arguments``, ``policy``, ``schema``,
      ``timeout``; ``approval_decided``: ``call_id``, ``decision``, ``arguments``,
      ``reason``, ``by``, ``scope``; ``paused`` / ``resumed``: ``by``, ``reason``
      (and ``steps`` for ``resumed``); see ``protocol``
    """

    event_type: EventType
    step: int
    data: dict[str, Any]
    timestamp: float = field(default_factory=time.time)

    @property
    def is_terminal(self) -> bool:
        return self.event_type in TERMINAL_EVENT_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type.value,
            "step": self.step,
            "data": self.data,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StepEvent:
        return cls(
            event_type=EventType(raw["event_type"]),
            step=int(raw["step"]),
            data=dict(raw.get("data") or {}),
            timestamp=float(raw.get("timestamp", time.time())),
        )


__all__ = ["TERMINAL_EVENT_TYPES", "ErrorCode", "EventType", "StepEvent"]
