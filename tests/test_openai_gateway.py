"""OpenAIGateway against a real chat-completions server on loopback (tests/llm_server.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import pytest
from llm_server import FakeLLMServer, FakeToolCall, RecordedRequest, Reply

from agentkit_jupyter.core import (
    CancellationToken,
    EventType,
    LLMError,
    ModelRequest,
    ModelTurn,
    ReActEngine,
    StepEvent,
    TokenDelta,
    tool,
)
from agentkit_jupyter.core.openai_gateway import PLACEHOLDER_API_KEY, OpenAIGateway

SECRET = "sk-test-0123456789abcdefSECRET"
MODEL = "test-model"
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


def gateway(server: FakeLLMServer, **kwargs: Any) -> OpenAIGateway:
    kwargs.setdefault("api_key", SECRET)
    kwargs.setdefault("timeout", 5.0)
    return OpenAIGateway(server.url, **kwargs)


async def collect(
    gw: OpenAIGateway, messages: list[dict[str, Any]] | None = None, tools: Sequence[Any] = ()
) -> tuple[list[str], ModelTurn]:
    """Stream one request; returns the token texts and the final turn, closes the gateway."""
    request = ModelRequest(MODEL, list(messages or QUESTION), list(tools))
    tokens: list[str] = []
    turns: list[ModelTurn] = []
    try:
        async for item in gw.stream(request):
            if isinstance(item, TokenDelta):
                assert not turns, "a token after the turn"
                tokens.append(item.text)
            else:
                turns.append(item)
    finally:
        await gw.aclose()
    assert len(turns) == 1, "exactly one ModelTurn ends the stream"
    return tokens, turns[0]


def failing(gw: OpenAIGateway) -> LLMError:
    """Run one request that must fail; returns the LLMError."""
    with pytest.raises(LLMError) as info:
        asyncio.run(collect(gw))
    assert SECRET not in str(info.value)
    return info.value


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: first number
        b: second number
    """
    return a + b


async def run_engine(
    gw: OpenAIGateway,
    token: CancellationToken | None = None,
    on_event: Any = None,
) -> list[StepEvent]:
    engine = ReActEngine(gw)
    events: list[StepEvent] = []
    try:
        async for event in engine.execute_stream(
            QUESTION, [add], MODEL, "calc", "You add numbers.", cancellation_token=token
        ):
            events.append(event)
            if on_event is not None:
                on_event(event)
    finally:
        await gw.aclose()
    return events


def types(events: list[StepEvent]) -> list[str]:
    """Event types without the ``usage`` accounting after each model call."""
    return [e.event_type.value for e in events if e.event_type != "usage"]


# -- streaming --------------------------------------------------------------------------


def test_streams_text_in_chunks_and_reports_usage(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="Two plus three is five.", usage=(21, 6)))

    tokens, turn = asyncio.run(collect(gateway(llm_server)))

    assert tokens == ["Two ", "plus ", "three ", "is ", "five."]
    assert turn.text == "Two plus three is five."
    assert turn.tool_calls == ()
    assert (turn.usage.prompt_tokens, turn.usage.completion_tokens) == (21, 6)
    [request] = llm_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    body = request.body
    assert body["model"] == MODEL
    assert body["messages"] == QUESTION
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert "tools" not in body  # omitted when there are none
    assert "temperature" not in body


def test_tool_call_streamed_in_pieces(llm_server: FakeLLMServer) -> None:
    call = FakeToolCall("add", {"a": 2, "b": 3}, id="call_abc", pieces=5)
    llm_server.enqueue(Reply(tool_calls=[call], usage=(30, 9)))

    tokens, turn = asyncio.run(collect(gateway(llm_server), tools=[add.spec()]))

    assert tokens == []
    assert turn.text == ""
    [parsed] = turn.tool_calls
    assert (parsed.call_id, parsed.name) == ("call_abc", "add")
    assert parsed.parsed_arguments() == {"a": 2, "b": 3}
    assert turn.usage.total_tokens == 39
    request = llm_server.requests[0]
    assert request.body["tools"] == [add.spec()]
    # role, id + name, 4 pieces of arguments, finish, usage
    assert request.events_sent == 8


@pytest.mark.parametrize("interleave", [False, True], ids=["sequential", "interleaved"])
def test_two_tool_calls_in_one_turn(llm_server: FakeLLMServer, interleave: bool) -> None:
    calls = [
        FakeToolCall("add", {"a": 1, "b": 2}, id="call_1", pieces=4),
        FakeToolCall("add", {"a": 30, "b": 40}, id="call_2", pieces=3),
    ]
    llm_server.enqueue(Reply(text="Let me add both.", tool_calls=calls, interleave=interleave))

    tokens, turn = asyncio.run(collect(gateway(llm_server), tools=[add.spec()]))

    assert "".join(tokens) == "Let me add both."
    assert turn.text == "Let me add both."
    assert [(c.call_id, c.name, c.parsed_arguments()) for c in turn.tool_calls] == [
        ("call_1", "add", {"a": 1, "b": 2}),
        ("call_2", "add", {"a": 30, "b": 40}),
    ]


def test_extra_body_and_temperature_are_sent(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="ok"))
    gw = gateway(llm_server, temperature=0.2, extra_body={"top_k": 5, "seed": 7})

    asyncio.run(collect(gw))

    body = llm_server.requests[0].body
    assert body["temperature"] == 0.2
    assert (body["top_k"], body["seed"]) == (5, 7)


def test_include_usage_false_drops_stream_options(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="ok"))

    _, turn = asyncio.run(collect(gateway(llm_server, include_usage=False)))

    assert "stream_options" not in llm_server.requests[0].body
    assert turn.usage.total_tokens == 0


# -- keys -------------------------------------------------------------------------------


def test_local_server_without_key_gets_a_placeholder(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="ok"))

    asyncio.run(collect(OpenAIGateway(llm_server.url)))

    assert llm_server.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


def test_key_falls_back_to_the_environment(
    llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    llm_server.enqueue(Reply(text="ok"))

    asyncio.run(collect(OpenAIGateway(llm_server.url)))

    assert llm_server.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_no_key_and_no_base_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIGateway()


def test_repr_never_shows_the_key(llm_server: FakeLLMServer) -> None:
    gw = gateway(llm_server)
    try:
        assert SECRET not in repr(gw)
        assert gw.endpoint == f"http://127.0.0.1:{llm_server.port}"
    finally:
        asyncio.run(gw.aclose())


def test_missing_openai_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` fail
    with pytest.raises(ImportError, match=r"pip install 'agentkit-jupyter\[openai\]'"):
        OpenAIGateway("http://127.0.0.1:1/v1")


def test_core_does_not_import_openai() -> None:
    code = (
        "import sys, agentkit_jupyter.core, agentkit_jupyter.core.openai_gateway; "
        "sys.exit('openai' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- retries ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retries_failures_then_succeeds(llm_server: FakeLLMServer, status: int) -> None:
    llm_server.enqueue(Reply.failure(status), Reply.failure(status), Reply(text="finally"))

    tokens, turn = asyncio.run(collect(gateway(llm_server, max_retries=3)))

    assert turn.text == "finally"
    assert "".join(tokens) == "finally"
    requests = llm_server.requests
    assert len(requests) == 3
    assert [r.headers.get("x-stainless-retry-count") for r in requests] == ["0", "1", "2"]
    assert all(r.body == requests[0].body for r in requests)
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in requests)


def test_retries_back_off_exponentially_without_retry_after(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(
        Reply.failure(500, retry_after_ms=None),
        Reply.failure(500, retry_after_ms=None),
        Reply(text="ok"),
    )
    started = time.monotonic()

    asyncio.run(collect(gateway(llm_server, max_retries=2)))

    # openai's backoff: 0.5 s then 1 s, each minus up to 25 % jitter
    assert time.monotonic() - started >= 1.1
    assert len(llm_server.requests) == 3


def test_connection_dropped_before_the_answer_is_retried(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(drop=True), Reply(text="ok"))

    _, turn = asyncio.run(collect(gateway(llm_server, max_retries=1)))

    assert turn.text == "ok"
    assert len(llm_server.requests) == 2


def test_gives_up_after_max_retries(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(*(Reply.failure(503, "overloaded") for _ in range(3)))

    error = failing(gateway(llm_server, max_retries=2))

    assert error.code == "llm_error"
    assert "HTTP 503" in str(error)
    assert "overloaded" in str(error)
    assert "2 retries" in str(error)
    assert len(llm_server.requests) == 3


def test_rate_limit_after_retries_says_so(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(*(Reply.failure(429, "slow down") for _ in range(2)))

    error = failing(gateway(llm_server, max_retries=1))

    assert "HTTP 429 (rate limited; gave up after 1 retry)" in str(error)
    assert len(llm_server.requests) == 2


def test_unreachable_endpoint_is_an_llm_error() -> None:
    with FakeLLMServer() as server:
        url = server.url  # a port nobody listens on once the server is closed
    gw = OpenAIGateway(url, api_key=SECRET, max_retries=1)
    gw_error = failing(gw)
    assert gw_error.code == "llm_error"
    assert "Could not connect" in str(gw_error)


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_is_explained_without_showing_it(
    llm_server: FakeLLMServer, status: int
) -> None:
    llm_server.enqueue(Reply.failure(status, f"Incorrect API key provided: {SECRET}"))

    error = failing(gateway(llm_server))

    assert error.code == "llm_error"
    assert "refused the API key" in str(error)
    assert f"HTTP {status}" in str(error)
    assert len(llm_server.requests) == 1  # not retried


def test_other_status_is_reported_and_the_key_redacted(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply.failure(400, f"bad request from key {SECRET}: unknown field"))

    error = failing(gateway(llm_server))

    assert error.code == "llm_error"
    assert "HTTP 400" in str(error)
    assert "unknown field" in str(error)
    assert "***" in str(error)


def test_unknown_model_hints_at_the_name(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply.failure(404, "model not found"))

    error = failing(gateway(llm_server))

    assert "HTTP 404" in str(error) and repr(MODEL) in str(error)


def test_connection_closed_mid_stream(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="one two three four five six", close_after=3))
    gw = gateway(llm_server, max_retries=3)
    tokens: list[str] = []

    async def run() -> None:
        try:
            async for item in gw.stream(ModelRequest(MODEL, QUESTION, [])):
                assert isinstance(item, TokenDelta), "no turn after a broken stream"
                tokens.append(item.text)
        finally:
            await gw.aclose()

    with pytest.raises(LLMError) as info:
        asyncio.run(run())

    assert info.value.code == "llm_error"
    assert "closed mid-stream" in str(info.value)
    assert tokens == ["one ", "two "]  # the role chunk and two words arrived
    assert len(llm_server.requests) == 1  # a started stream is not retried


def test_stream_without_finish_is_an_error(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="cut short", end_early=True))

    error = failing(gateway(llm_server))

    assert error.code == "model_stream_ended"
    assert "ended before the model finished" in str(error)


# -- timeouts ---------------------------------------------------------------------------


def test_timeout_before_the_answer(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="late", delay=5))
    started = time.monotonic()

    error = failing(gateway(llm_server, timeout=0.5, max_retries=0))

    assert error.code == "llm_timeout"
    assert "0.5 s" in str(error)
    assert time.monotonic() - started < 3


def test_timeouts_are_retried(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="late", delay=5), Reply(text="late", delay=5))

    error = failing(gateway(llm_server, timeout=0.3, max_retries=1))

    assert error.code == "llm_timeout"
    assert len(llm_server.requests) == 2


def test_stall_mid_stream_is_a_timeout(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="slow", first_chunk_delay=5))

    error = failing(gateway(llm_server, timeout=0.5, max_retries=2))

    assert error.code == "llm_timeout"
    assert "stopped sending data" in str(error)
    assert len(llm_server.requests) == 1
    assert llm_server.requests[0].disconnected.wait(2)


# -- cancellation -----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["before_headers", "after_headers", "mid_stream"])
def test_cancelling_the_consumer_releases_the_connection(
    llm_server: FakeLLMServer, where: str
) -> None:
    reply = {
        "before_headers": Reply(text="never", delay=10),
        "after_headers": Reply(text="never", first_chunk_delay=10),
        "mid_stream": Reply(text="a b c d e f g h", chunk_delay=10),
    }[where]
    llm_server.enqueue(reply)
    gw = gateway(llm_server)
    seen: list[Any] = []

    async def consume() -> None:
        async for item in gw.stream(ModelRequest(MODEL, QUESTION, [])):
            seen.append(item)

    async def run() -> None:
        try:
            task = asyncio.create_task(consume())
            await asyncio.to_thread(llm_server.wait_for_requests, 1)
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await gw.aclose()

    asyncio.run(run())

    request = llm_server.requests[0]
    assert request.disconnected.wait(2), "the server never saw the client hang up"
    assert all(isinstance(item, TokenDelta) for item in seen)


def test_abandoned_stream_is_closed(llm_server: FakeLLMServer) -> None:
    # the first word comes 0.5 s after the role chunk, the next ones much later
    llm_server.enqueue(Reply(text="a b c d e f g h", chunk_delay=0.5))
    gw = gateway(llm_server)

    async def run() -> None:
        try:
            stream = gw.stream(ModelRequest(MODEL, QUESTION, []))
            first = await anext(stream)  # type: ignore[call-overload]
            assert isinstance(first, TokenDelta)
            await stream.aclose()  # type: ignore[attr-defined]
        finally:
            await gw.aclose()

    asyncio.run(run())
    assert llm_server.requests[0].disconnected.wait(2)


# -- through the engine -----------------------------------------------------------------


def test_engine_runs_a_tool_and_answers(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(
        Reply(
            text="I will add them.",
            tool_calls=[FakeToolCall("add", {"a": 2, "b": 3}, id="call_add", pieces=4)],
            usage=(40, 12),
        ),
        Reply(text="2 + 3 = 5.", usage=(60, 8)),
    )

    events = asyncio.run(run_engine(gateway(llm_server)))

    kinds = types(events)
    assert kinds[-1] == "final_answer", events[-1].data
    assert kinds.index("tool_call") < kinds.index("observation") < kinds.index("final_answer")
    tokens = [e.data["delta"] for e in events if e.event_type is EventType.TOKEN]
    assert "".join(tokens) == "I will add them.2 + 3 = 5."
    assert kinds[: kinds.index("thought")] == ["token"] * 4  # streamed before the turn ended
    [call] = [e for e in events if e.event_type is EventType.TOOL_CALL]
    assert call.data == {"call_id": "call_add", "name": "add", "arguments": {"a": 2, "b": 3}}
    [observation] = [e for e in events if e.event_type is EventType.OBSERVATION]
    assert observation.data["output"] == "5" and observation.data["is_error"] is False
    final = events[-1].data
    assert final["output"] == "2 + 3 = 5."
    assert final["total_steps"] == 2
    assert final["total_tokens"] == 40 + 12 + 60 + 8
    assert final["usage"] == {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}

    first, second = llm_server.requests
    assert first.body["messages"][0] == {"role": "system", "content": "You add numbers."}
    assert first.body["tools"][0]["function"]["name"] == "add"
    assistant, tool_message = second.messages[-2:]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "I will add them."
    assert assistant["tool_calls"] == [
        {
            "id": "call_add",
            "type": "function",
            "function": {"name": "add", "arguments": json.dumps({"a": 2, "b": 3})},
        }
    ]
    assert tool_message == {"role": "tool", "tool_call_id": "call_add", "content": "5"}


def test_engine_runs_two_tool_calls_of_one_turn(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(
        Reply(
            tool_calls=[
                FakeToolCall("add", {"a": 1, "b": 1}, id="c1"),
                FakeToolCall("add", {"a": 2, "b": 2}, id="c2"),
            ],
            interleave=True,
        ),
        Reply(text="2 and 4."),
    )

    events = asyncio.run(run_engine(gateway(llm_server)))

    assert types(events)[-1] == "final_answer"
    tool_messages = [m for m in llm_server.requests[1].messages if m["role"] == "tool"]
    assert tool_messages == [
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "tool", "tool_call_id": "c2", "content": "4"},
    ]


@pytest.mark.parametrize("where", ["delay", "first_chunk_delay"])
def test_engine_cancel_while_the_server_delays(llm_server: FakeLLMServer, where: str) -> None:
    llm_server.enqueue(Reply(text="too late", **{where: 10.0}))
    token = CancellationToken()
    cancelled_at: list[float] = []
    received_at: list[float] = []

    async def cancel_soon() -> None:
        await asyncio.to_thread(llm_server.wait_for_requests, 1)
        await asyncio.sleep(0.3)
        cancelled_at.append(time.perf_counter())
        token.cancel("user pressed stop")

    def on_event(event: StepEvent) -> None:
        if event.event_type is EventType.CANCELLED:
            received_at.append(time.perf_counter())

    async def run() -> list[StepEvent]:
        canceller = asyncio.create_task(cancel_soon())
        events = await run_engine(gateway(llm_server), token, on_event)
        await canceller
        return events

    events = asyncio.run(run())

    assert types(events)[-1] == "cancelled"
    assert events[-1].data["interrupted"] == "llm_call"
    assert events[-1].data["reason"] == "user pressed stop"
    latency = received_at[0] - cancelled_at[0]
    print(f"cancel() -> cancelled event: {latency * 1000:.1f} ms")
    assert latency < 1.0
    assert llm_server.requests[0].disconnected.wait(2), "the server never saw the hang-up"
    assert len(llm_server.requests) == 1


def test_engine_timeout_is_an_llm_timeout_error(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply(text="too late", delay=5))
    started = time.monotonic()

    events = asyncio.run(run_engine(gateway(llm_server, timeout=0.5, max_retries=0)))

    assert types(events) == ["error"]
    assert events[0].data["code"] == "llm_timeout"
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "reply",
    [
        Reply.failure(401, f"Incorrect API key provided: {SECRET}"),
        Reply.failure(400, f"cannot use {SECRET} here"),
        Reply(text="partial answer", close_after=2),
    ],
    ids=["401", "400", "closed"],
)
def test_engine_errors_never_show_the_key(llm_server: FakeLLMServer, reply: Reply) -> None:
    llm_server.enqueue(reply)

    events = asyncio.run(run_engine(gateway(llm_server, max_retries=0)))

    error = events[-1]
    assert error.event_type is EventType.ERROR
    assert error.data["code"] == "llm_error"
    assert SECRET not in json.dumps([e.data for e in events])


# -- the fake server itself -------------------------------------------------------------


def test_fake_server_answers_non_streamed_json(llm_server: FakeLLMServer) -> None:
    import openai

    llm_server.enqueue(Reply(text="plain", tool_calls=[FakeToolCall("add", {"a": 1, "b": 2})]))

    async def run() -> Any:
        async with openai.AsyncOpenAI(base_url=llm_server.url, api_key="k") as client:
            return await client.chat.completions.create(model=MODEL, messages=QUESTION)  # type: ignore[arg-type]

    completion = asyncio.run(run())

    message = completion.choices[0].message
    assert message.content == "plain"
    assert message.tool_calls[0].function.arguments == '{"a": 1, "b": 2}'
    assert completion.usage.total_tokens == 19
    assert llm_server.requests[0].body.get("stream") in (None, False)


def test_fake_server_records_every_request(llm_server: FakeLLMServer) -> None:
    llm_server.enqueue(Reply.failure(500), Reply(text="ok"))

    asyncio.run(collect(gateway(llm_server)))
    recorded: list[RecordedRequest] = llm_server.wait_for_requests(2)

    assert [r.reply.status if r.reply else None for r in recorded] == [500, 200]
    assert all(r.answered.is_set() for r in recorded)
    assert llm_server.pending_replies == 0
