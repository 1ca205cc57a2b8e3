"""A model stream that ends without its turn, goes silent, or splits an emoji: the engine
against a real chat-completions server on loopback (tests/llm_server.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from llm_server import FakeLLMServer, FakeToolCall, Reply

from agentkit_jupyter.core import (
    EventType,
    LLMGateway,
    ModelRequest,
    ModelTurn,
    ReActEngine,
    StepEvent,
    TokenDelta,
    tool,
)
from agentkit_jupyter.core.openai_gateway import OpenAIGateway
from agentkit_jupyter.protocol import dumps

QUESTION = [{"role": "user", "content": "Smile, please."}]


class ForgetfulGateway(LLMGateway):
    """Streams the endpoint's text with httpx and returns at ``[DONE]`` without ever
    yielding the :class:`ModelTurn`, as a buggy third-party gateway does."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        body = {"model": request.model, "messages": request.messages, "stream": True}
        async with httpx.AsyncClient(timeout=10) as client:
            async with client.stream(
                "POST", f"{self.base_url}/chat/completions", json=body
            ) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    for choice in json.loads(line[6:])["choices"]:
                        text = choice["delta"].get("content")
                        if text:
                            yield TokenDelta(text)


async def run(engine: ReActEngine, tools: list[Any] | None = None) -> list[StepEvent]:
    events: list[StepEvent] = []
    # A guard only: before the fix the first test hangs here forever.
    async with asyncio.timeout(20):
        async for event in engine.execute_stream(QUESTION, tools or [], "m", "a", None):
            events.append(event)
    await engine.gateway.aclose()
    return events


@pytest.mark.parametrize("idle_timeout", [None, 120.0])
def test_a_gateway_that_ends_without_its_turn_ends_the_step_at_once(
    llm_server: FakeLLMServer, idle_timeout: float | None
) -> None:
    llm_server.enqueue(Reply(text="half an answer"))
    engine = ReActEngine(ForgetfulGateway(llm_server.url), llm_idle_timeout=idle_timeout)

    events = asyncio.run(run(engine))

    assert [e.event_type for e in events][-1] is EventType.ERROR
    assert "".join(e.data["delta"] for e in events if e.event_type is EventType.TOKEN) == (
        "half an answer"
    )
    error = events[-1].data
    assert error["code"] == "model_stream_ended"
    assert "ended without a complete answer" in error["message"]


def test_an_openai_stream_without_finish_is_model_stream_ended(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="cut short", end_early=True))
    engine = ReActEngine(OpenAIGateway(llm_server.url, timeout=30), llm_idle_timeout=None)

    events = asyncio.run(run(engine))

    assert events[-1].event_type is EventType.ERROR
    assert events[-1].data["code"] == "model_stream_ended"


def test_a_stream_that_goes_silent_still_hits_the_idle_timeout(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="one two three", chunk_delay=30))
    engine = ReActEngine(OpenAIGateway(llm_server.url, timeout=60), llm_idle_timeout=0.5)

    events = asyncio.run(run(engine))

    assert events[-1].event_type is EventType.ERROR
    assert events[-1].data["code"] == "llm_timeout"
    assert "sent nothing for 0.5 s" in events[-1].data["message"]


@tool
def wink(face: str) -> str:
    """Wink back.

    Args:
        face: the face to wink at
    """
    return f"winked at {face}"


def test_an_emoji_split_across_two_chunks_arrives_whole(llm_server: FakeLLMServer) -> None:
    # JSON escapes the emoji as a surrogate pair; each chunk carries one half.
    llm_server.enqueue(
        Reply(
            chunks=["Let me wink ", "\ud83d", "\ude09", " back."],
            tool_calls=[FakeToolCall("wink", {"face": "\U0001f600"}, pieces=8)],
        ),
        Reply(chunks=["Done ", "\ud83d", "\ude00", "!"]),
    )
    engine = ReActEngine(OpenAIGateway(llm_server.url, timeout=30))

    events = asyncio.run(run(engine, [wink]))

    by_type = {e.event_type: e for e in events}
    assert by_type[EventType.THOUGHT].data["text"] == "Let me wink \U0001f609 back."
    assert by_type[EventType.TOOL_CALL].data["arguments"] == {"face": "\U0001f600"}
    assert by_type[EventType.OBSERVATION].data["output"] == "winked at \U0001f600"
    assert by_type[EventType.FINAL_ANSWER].data["output"] == "Done \U0001f600!"
    tokens = [e.data["delta"] for e in events if e.event_type is EventType.TOKEN]
    assert "".join(tokens) == "Let me wink \U0001f609 back.Done \U0001f600!"
    # Every event is valid text as it is, and on the wire nothing became U+FFFD.
    for event in events:
        json.dumps(event.data, ensure_ascii=False).encode("utf-8")
        assert "\ufffd" not in dumps(event.to_dict())


class FloodGateway(LLMGateway):
    """Streams tokens as fast as it can, counting what it made."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.made = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        for _ in range(self.tokens):
            self.made += 1
            yield TokenDelta("t ")
        yield ModelTurn("t " * self.tokens)


def test_a_model_faster_than_the_run_waits_instead_of_piling_up_tokens() -> None:
    from agentkit_jupyter.core.engine import MODEL_QUEUE_SIZE

    gateway = FloodGateway(100_000)

    async def main() -> tuple[int, int, list[StepEvent]]:
        stream = ReActEngine(gateway).execute_stream(QUESTION, [], "m", "a", None)
        events = [await anext(stream)]
        await asyncio.sleep(0.3)  # a slow consumer: the gateway runs meanwhile
        made_while_paused = gateway.made
        events.extend([event async for event in stream])
        return made_while_paused, len(events), events

    made, count, events = asyncio.run(main())
    assert made <= 1 + MODEL_QUEUE_SIZE + 1  # one consumed, a full queue, one in hand
    assert events[-1].event_type is EventType.FINAL_ANSWER
    assert count == 100_002  # the tokens, the call's usage, the answer
