"""The embedded default model: plays a script, needs no network and no key."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .llm import LLMError, LLMGateway, Message, ModelRequest, ModelTurn, TokenDelta, ToolCall, Usage

_TOKEN = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class ScriptContext:
    """What a scripted turn may look at to shape its text and tool calls: the messages
    since the latest question (a follow-up starts the script again), and the
    conversation before it."""

    messages: list[Message]
    history: list[Message] = field(default_factory=list)

    @property
    def question(self) -> str:
        for message in self.messages:
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""

    @property
    def observations(self) -> list[str]:
        """Tool outputs so far, oldest first."""
        return [str(m.get("content") or "") for m in self.messages if m.get("role") == "tool"]


@dataclass(frozen=True, slots=True)
class ScriptedTurn:
    """One model turn: text, and tool calls as ``(name, arguments)`` pairs."""

    text: str = ""
    tool_calls: Sequence[tuple[str, dict[str, Any] | str]] = field(default_factory=tuple)


ScriptStep = ScriptedTurn | Callable[[ScriptContext], ScriptedTurn]


class ScriptedGateway(LLMGateway):
    """Plays turn N of the script on the model's N-th call for a question.

    The turn is picked from the number of assistant messages since the latest user
    message, so one gateway serves any number of concurrent runs, and a follow-up
    question (a conversation that goes on) is answered by the script from its start.
    ``token_delay`` paces the streamed text; ``latency`` delays the first token,
    like a slow endpoint.
    """

    provider_name = "agentkit.scripted"

    def __init__(
        self, script: Sequence[ScriptStep], *, token_delay: float = 0.0, latency: float = 0.0
    ) -> None:
        if not script:
            raise ValueError("a script needs at least one turn")
        self.script = list(script)
        self.token_delay = token_delay
        self.latency = latency

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        users = [i for i, m in enumerate(request.messages) if m.get("role") == "user"]
        start = users[-1] if users else 0
        current = request.messages[start:]
        index = sum(1 for m in current if m.get("role") == "assistant")
        if index >= len(self.script):
            raise LLMError(f"the script has only {len(self.script)} turns")
        step = self.script[index]
        context = ScriptContext(current, request.messages[:start])
        turn = step(context) if callable(step) else step
        if self.latency:
            await asyncio.sleep(self.latency)
        pieces = _TOKEN.findall(turn.text)
        for piece in pieces:
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield TokenDelta(piece)
        calls = tuple(
            ToolCall(
                call_id=f"call_{index}_{n}",
                name=name,
                arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
            )
            for n, (name, arguments) in enumerate(turn.tool_calls)
        )
        prompt_tokens = sum(
            len(_TOKEN.findall(str(m.get("content") or ""))) for m in request.messages
        )
        completion_tokens = len(pieces) + sum(len(c.arguments.split()) + 1 for c in calls)
        yield ModelTurn(turn.text, calls, Usage(prompt_tokens, completion_tokens))
