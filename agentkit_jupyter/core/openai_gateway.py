"""A gateway for any OpenAI-compatible chat-completions endpoint.

Works with OpenAI itself and with local servers that speak the same API (vLLM, Ollama,
llama.cpp server, LM Studio). Built on the official ``openai`` package, an optional
extra: ``pip install 'agentkit-jupyter[openai]'``. Nothing here imports ``openai`` until
an :class:`OpenAIGateway` is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from .llm import LLMError, LLMGateway, ModelRequest, ModelTurn, TokenDelta, ToolCall, Usage

if TYPE_CHECKING:
    from openai import AsyncOpenAI, AsyncStream
    from openai.types.chat import ChatCompletionChunk

__all__ = ["OpenAIGateway"]

# Sent when a local server needs no key: the client refuses to start without one.
PLACEHOLDER_API_KEY = "not-needed"
_DETAIL_LIMIT = 300


class OpenAIGateway(LLMGateway):
    """Streams chat completions from an OpenAI-compatible endpoint.

    ``base_url`` is the API root, for example ``http://localhost:11434/v1`` for Ollama
    or ``http://localhost:8000/v1`` for vLLM; ``None`` means OpenAI (or
    ``OPENAI_BASE_URL``). ``api_key`` falls back to ``OPENAI_API_KEY``; a local
    endpoint gets a placeholder when there is none.

    ``timeout`` (seconds) bounds connecting and each wait for data, so it also fires
    when a stream stalls. ``max_retries`` is handed to the ``openai`` client, which
    retries with exponential backoff (and honours ``Retry-After``) on 408, 409, 429,
    5xx, connection errors and timeouts that happen before the response starts; a
    stream that fails after it started is not retried. ``extra_body`` is merged into
    every request body (server-specific options such as vLLM's ``top_k``);
    ``temperature`` is sent only when set. ``include_usage=False`` drops
    ``stream_options`` for servers that reject it (the turn then reports no usage).
    """

    # Any OpenAI-compatible endpoint: the GenAI conventions name it by its client.
    provider_name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        extra_body: dict[str, Any] | None = None,
        temperature: float | None = None,
        include_usage: bool = True,
    ) -> None:
        try:
            import openai
        except ImportError as exc:
            raise ImportError(
                "OpenAIGateway needs the 'openai' package: pip install 'agentkit-jupyter[openai]'"
            ) from exc

        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        endpoint = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if key is None:
            if endpoint is None:
                raise ValueError(
                    "No API key for OpenAI: pass api_key= or set OPENAI_API_KEY "
                    "(a local server needs only base_url=)."
                )
            key = PLACEHOLDER_API_KEY

        self.base_url = endpoint
        self.timeout = timeout
        self.max_retries = max_retries
        self.extra_body = dict(extra_body) if extra_body else None
        self.temperature = temperature
        self.include_usage = include_usage
        self._secret = key
        self._client: AsyncOpenAI = openai.AsyncOpenAI(
            api_key=key, base_url=endpoint, timeout=timeout, max_retries=max_retries
        )
        self._endpoint = _display_url(str(self._client.base_url))

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIGateway(endpoint={self._endpoint!r})"

    @property
    def endpoint(self) -> str:
        """Scheme, host and port of the endpoint, as shown in messages (no credentials)."""
        return self._endpoint

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        import openai

        options: dict[str, Any] = {}
        if request.tools:
            options["tools"] = request.tools
        if self.include_usage:
            options["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.extra_body:
            options["extra_body"] = self.extra_body

        try:
            response: AsyncStream[ChatCompletionChunk] = await self._client.chat.completions.create(
                model=request.model,
                messages=cast(Any, request.messages),
                stream=True,
                **options,
            )
        except openai.OpenAIError as exc:
            raise self._translate(exc, started=False, model=request.model) from None

        builder = _TurnBuilder()
        try:
            try:
                async for chunk in response:
                    text = builder.add(chunk)
                    if text:
                        yield TokenDelta(text)
            except openai.OpenAIError as exc:
                raise self._translate(exc, started=True, model=request.model) from None
        finally:
            # Normal end, error, cancellation or an abandoned iterator: release the
            # connection. A cancelled request cannot be reused, so the client drops it.
            await _close_quietly(response)

        if not builder.finished:
            raise LLMError(
                f"The stream from {self._endpoint} ended before the model finished its answer "
                "(it was cut short mid-stream).",
                code="model_stream_ended",
            )
        held = builder.flush()
        if held:
            yield TokenDelta(held)
        yield builder.turn()

    async def aclose(self) -> None:
        await self._client.close()

    # -- errors ---------------------------------------------------------------------

    def _translate(self, exc: Exception, *, started: bool, model: str) -> LLMError:
        """A clear :class:`LLMError` for an ``openai`` exception; never shows the key."""
        import openai

        where = self._endpoint
        gave_up = ""
        if self.max_retries:
            plural = "retry" if self.max_retries == 1 else "retries"
            gave_up = f"gave up after {self.max_retries} {plural}"
        retried = f" ({gave_up})" if gave_up else ""
        if isinstance(exc, openai.APITimeoutError):
            phase = "stopped sending data" if started else "did not answer"
            return LLMError(
                f"The model endpoint {where} {phase} for {self.timeout:g} s"
                f"{'' if started else retried}.",
                code="llm_timeout",
            )
        if isinstance(exc, openai.APIConnectionError):
            if started:
                return LLMError(f"The connection to {where} was closed mid-stream.")
            return LLMError(f"Could not connect to the model endpoint {where}{retried}.")
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            if self._secret == PLACEHOLDER_API_KEY:
                return LLMError(
                    f"The model endpoint {where} refused the request without an API key "
                    f"(HTTP {exc.status_code}): pass api_key= or set OPENAI_API_KEY."
                )
            return LLMError(
                f"The model endpoint {where} refused the API key (HTTP {exc.status_code}). "
                "Check OPENAI_API_KEY or the api_key given to OpenAIGateway."
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            hint = ""
            if status == 429:
                hint = f" (rate limited; {gave_up})" if gave_up else " (rate limited)"
            elif status >= 500 or status in (408, 409):
                hint = retried
            elif status == 404:
                hint = f" (check the model name {model!r} and the base_url)"
            detail = self._detail(exc.body) or self._detail(exc.message)
            return LLMError(
                f"The model endpoint {where} answered HTTP {status}{hint}"
                + (f": {detail}" if detail else ".")
            )
        if isinstance(exc, openai.APIError):
            detail = self._detail(exc.body) or self._detail(exc.message)
            return LLMError(
                f"The model endpoint {where} reported an error"
                + (" mid-stream" if started else "")
                + (f": {detail}" if detail else ".")
            )
        return LLMError(f"The call to {where} failed ({type(exc).__name__}).")

    def _detail(self, body: object) -> str:
        """The server's own error message, shortened and with the key blanked out."""
        if isinstance(body, dict):
            error = body.get("error", body)
            message = error.get("message") if isinstance(error, dict) else error
            text = message if isinstance(message, str) else json.dumps(body, default=str)
        elif isinstance(body, str):
            text = body
        else:
            return ""
        text = self._redact(" ".join(text.split()))
        if len(text) > _DETAIL_LIMIT:
            text = text[: _DETAIL_LIMIT - 1] + "…"
        return text

    def _redact(self, text: str) -> str:
        if self._secret and self._secret != PLACEHOLDER_API_KEY:
            text = text.replace(self._secret, "***")
        return text


@dataclass(slots=True)
class _PendingCall:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _TurnBuilder:
    """Accumulates streamed chunks into one :class:`ModelTurn`."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finished: bool = False
    # A high surrogate that ended the last chunk: the other half of the pair (an emoji
    # split across two chunks) comes in the next one.
    held: str = ""

    def add(self, chunk: ChatCompletionChunk) -> str:
        """Take one chunk; return its new text (may be empty)."""
        if chunk.usage is not None:
            # The last usage seen wins: servers send it once, or cumulatively.
            self.usage = Usage(
                int(chunk.usage.prompt_tokens or 0), int(chunk.usage.completion_tokens or 0)
            )
        new_text = ""
        for choice in chunk.choices or ():
            if choice.index not in (0, None):
                continue  # n > 1 was not asked for; keep the first choice only
            if choice.finish_reason is not None:
                self.finished = True
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                new_text += delta.content
            for piece in delta.tool_calls or ():
                self._add_call_piece(piece.index, piece.id, piece.function)
        if self.held:
            new_text, self.held = self.held + new_text, ""
        if new_text and "\ud800" <= new_text[-1] <= "\udbff":
            new_text, self.held = new_text[:-1], new_text[-1]
        new_text = join_surrogates(new_text)
        if new_text:
            self.text.append(new_text)
        return new_text

    def flush(self) -> str:
        """What :meth:`add` held back at the end of the stream (a lone half)."""
        held, self.held = self.held, ""
        if held:
            self.text.append(held)
        return held

    def _add_call_piece(self, index: int | None, call_id: str | None, function: Any) -> None:
        if index is None:  # non-standard servers: a new id starts a new call
            if call_id or not self.calls:
                index = len(self.calls)
            else:
                index = max(self.calls)
        pending = self.calls.setdefault(index, _PendingCall())
        if call_id:
            pending.call_id = call_id
        if function is None:
            return
        name = getattr(function, "name", None)
        if name and name != pending.name:
            # Sent once, whole; a server that repeats it must not double it.
            pending.name = name if not pending.name else pending.name + name
        arguments = getattr(function, "arguments", None)
        if isinstance(arguments, str):
            pending.arguments.append(arguments)
        elif arguments is not None:  # some servers send the object itself
            pending.arguments.append(json.dumps(arguments))

    def turn(self) -> ModelTurn:
        calls = tuple(
            ToolCall(
                call_id=pending.call_id or f"call_{index}",
                name=pending.name,
                arguments=join_surrogates("".join(pending.arguments)),
            )
            for index, pending in sorted(self.calls.items())
        )
        return ModelTurn(join_surrogates("".join(self.text)), calls, self.usage)


def join_surrogates(text: str) -> str:
    """``text`` with each UTF-16 surrogate pair (the two halves of an emoji that JSON
    escapes as ``\\ud83d\\ude00``, maybe sent in two chunks) made one character; a
    lone half is left as it is (the wire rule in ``protocol.dumps`` replaces it)."""
    if text.isascii() or not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _display_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname:
        return url or "(unknown endpoint)"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


async def _close_quietly(response: AsyncStream[ChatCompletionChunk]) -> None:
    """Close the response; shielded, so a second cancel cannot leave it half closed."""
    closing = asyncio.ensure_future(response.close())
    closing.add_done_callback(_ignore_outcome)
    with contextlib.suppress(Exception):
        await asyncio.shield(closing)


def _ignore_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
