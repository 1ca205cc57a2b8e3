"""The one small interface every model backend implements."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

# Chat messages in the OpenAI chat-completions shape, which every backend here speaks.
Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call requested by the model. ``arguments`` is the raw JSON text."""

    call_id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        return json.loads(self.arguments) if self.arguments.strip() else {}


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens - other.prompt_tokens,
            self.completion_tokens - other.completion_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """A piece of the model's text, streamed before the turn is complete."""

    text: str


@dataclass(frozen=True, slots=True)
class ModelTurn:
    """The model's complete answer for one step: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)

    def as_message(self) -> Message:
        message: Message = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        return message


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str
    messages: list[Message]
    tools: list[dict[str, Any]]  # OpenAI "function" tool specs


class LLMError(Exception):
    """A model call that failed for good (after the gateway's own retries)."""

    def __init__(self, message: str, *, code: str = "llm_error") -> None:
        super().__init__(message)
        self.code = code


class LLMGateway(ABC):
    """A model backend.

    ``stream`` yields any number of :class:`TokenDelta` and ends with exactly one
    :class:`ModelTurn`. It raises :class:`LLMError` when the call fails. The engine
    cancels the consuming task to interrupt a call, so implementations must let
    ``asyncio.CancelledError`` through and release their connection on it.
    """

    # Who serves the model, as OpenTelemetry's gen_ai.provider.name says it ("openai");
    # None: not known (left out of the spans).
    provider_name: str | None = None

    @abstractmethod
    def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default holds none."""


# Query parameters whose name contains one of these hold credentials.
_SECRET_PARAMS = ("key", "token", "secret", "auth", "pass", "sig", "credential")
REDACTED = "[secret]"


def redact_url(url: str) -> str:
    """``url`` as it may be shown or logged: a ``user:password@`` becomes ``[secret]@``
    and the value of a query parameter named like a credential (``api-key``, ``token``,
    ``sig``...) becomes ``[secret]``; the rest is kept."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = REDACTED + "@" + netloc.rpartition("@")[2]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [
                    (name, REDACTED if any(s in name.lower() for s in _SECRET_PARAMS) else value)
                    for name, value in pairs
                ],
                safe="[]",
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:  # not a URL one can take apart: show nothing of it
        return REDACTED
