"""The ReAct loop: ask the model, run the tools it calls, feed back, until an answer."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..protocol import ApprovalPolicy, ApprovalRequestedData
from ..protocol import ErrorCode as WireCode
from .cancellation import CancellationToken
from .control import AgentApproval, Decision, PendingCall, RunControl, approval_policy
from .costs import Budget, BudgetExceeded, Meter, PriceTable, Pricing
from .events import ErrorCode, EventType, StepEvent
from .llm import (
    LLMError,
    LLMGateway,
    Message,
    ModelRequest,
    ModelTurn,
    TokenDelta,
    ToolCall,
    Usage,
)
from .mcp import OpenedSources, open_sources
from .replay import RunSnapshot, edited_note, render
from .tool_output import ToolStream, bind, capture_prints, current_stream, emit
from .tools import Tool, ToolArgumentError, ToolSource, as_tools, tool_sources
from .workers import run_in_process, run_in_thread

log = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = 10


class _Cancelled:
    """Queue sentinel: the token fired while waiting for the model."""


_CANCELLED = _Cancelled()


class _Ended:
    """Queue sentinel: the gateway's stream ended without a :class:`ModelTurn`."""


_ENDED = _Ended()


class _OverBudget:
    """Queue sentinel: the call in flight crossed the run's budget."""

    def __init__(self, message: str) -> None:
        self.message = message


# The most model items (tokens) buffered between the gateway and the run.
MODEL_QUEUE_SIZE = 256

_LLM_CODES = {
    ErrorCode.LLM_TIMEOUT.value: ErrorCode.LLM_TIMEOUT,
    ErrorCode.MODEL_STREAM_ENDED.value: ErrorCode.MODEL_STREAM_ENDED,
}


@dataclass(slots=True)
class _ToolOutcome:
    output: str
    is_error: bool
    duration_ms: float
    error_code: str | None = None
    # What the model reads as the call's result, when it differs from ``output``.
    model_text_override: str | None = None
    # A fork's observation, given instead of running the call.
    replaced: bool = False

    @property
    def model_text(self) -> str:
        return self.output if self.model_text_override is None else self.model_text_override

    @model_text.setter
    def model_text(self, text: str) -> None:
        self.model_text_override = text


def _not_run(call: ToolCall, decision: Decision) -> _ToolOutcome:
    """The observation of a call that was not approved: what the model reads."""
    who = decision.by or "a person"
    if decision.decision.value == "rejected":
        text = f"Not run: {who} rejected this call."
        if decision.reason:
            text = f"Not run: {who} rejected this call. Reason: {decision.reason}"
        return _ToolOutcome(text, True, 0.0, ErrorCode.REJECTED.value)
    if decision.decision.value == "timed_out":
        text = "Not run: nobody approved this call in time."
    else:
        text = "Not run: the run was cancelled while this call waited for approval."
    return _ToolOutcome(text, True, 0.0, ErrorCode.NOT_APPROVED.value)


@dataclass(slots=True)
class _RunState:
    token: CancellationToken
    conversation: list[Message]
    tools: dict[str, Tool]
    meter: Meter
    step: int = 0
    # Pool jobs of sync tools: a cancel abandons the running ones, and we say so.
    tool_jobs: dict[str, list[Any]] = field(default_factory=dict)
    control: RunControl = field(default_factory=RunControl)
    approval: AgentApproval = None
    approval_timeout: float | None = None


class ReActEngine:
    """Runs one agent conversation as a stream of :class:`StepEvent`.

    ``llm_idle_timeout`` bounds the wait for the model's next chunk, so an endpoint
    that stalls mid-stream ends the run with ``llm_timeout`` instead of hanging.
    """

    def __init__(
        self,
        gateway: LLMGateway,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        llm_idle_timeout: float | None = 120.0,
    ) -> None:
        self.gateway = gateway
        self.max_steps = max_steps
        self.llm_idle_timeout = llm_idle_timeout

    async def execute_stream(
        self,
        messages: Sequence[Message],
        tools: Iterable[Tool | ToolSource | Callable[..., Any]],
        model: str,
        agent_name: str,
        system_prompt: str | None,
        cancellation_token: CancellationToken | None = None,
        max_steps: int | None = None,
        control: RunControl | None = None,
        approval: AgentApproval = None,
        approval_timeout: float | None = None,
        budget: Budget | None = None,
        prices: PriceTable | None = None,
        snapshot: RunSnapshot | None = None,
    ) -> AsyncIterator[StepEvent]:
        """Yield the run's events; the last one is ``final_answer``, ``error`` or ``cancelled``.

        Failures of the model or of tools never raise out of the iterator. ``control``
        carries a person's decisions on tool calls that need approval (the tools'
        ``requires_approval``, overridden by ``approval``; undecided after
        ``approval_timeout`` seconds they do not run) and pause / resume / step.
        Every model call is followed by a ``usage`` event (tokens, cost from ``prices``
        or the price library); crossing ``budget``, even mid-call, ends the run
        ``cancelled`` with code ``budget_exceeded``. ``snapshot`` (``replay.rebuild``)
        goes on from recorded events instead of ``messages`` (a fork, a resume).
        ``tools`` may hold tool sources (``core.mcp.MCPServer``): each gets a session of
        its own for this run, opened before the first model call, closed at the end.
        """
        limit = max_steps if max_steps is not None else self.max_steps
        conversation: list[Message] = []
        if system_prompt:
            conversation.append({"role": "system", "content": system_prompt})
        if snapshot is not None:
            conversation.extend(dict(m) for m in snapshot.messages)
        else:
            conversation.extend(dict(m) for m in messages)
        meter = Meter(Pricing(model, prices), budget)
        if snapshot is not None and snapshot.call_usages:
            meter.seed(snapshot.call_usages[-1])
        given = list(tools)
        state = _RunState(
            token=cancellation_token or CancellationToken(),
            conversation=conversation,
            tools=as_tools(given),
            meter=meter,
            control=control or RunControl(),
            approval=approval,
            approval_timeout=approval_timeout,
        )
        state.control.bind(asyncio.get_running_loop())
        sources = tool_sources(given)
        opened: OpenedSources | None = None
        try:
            if sources:
                # MCP servers: a session each for this run, their tools listed now; one
                # that does not start is left out and the model is told (see core.mcp).
                opened = await open_sources(sources, set(state.tools), state.token)
                state.tools.update(opened.tools)
                conversation.extend({"role": "system", "content": n} for n in opened.notes)
                if state.token.cancelled:
                    yield self._cancelled_event(state, "between_steps", [])
                    return
            if snapshot is not None:
                state.step = snapshot.step
                if snapshot.unfinished:
                    async for event in self._finish_turn(snapshot, state):
                        if event.is_terminal and opened is not None:
                            opened.stop()
                        yield event
                        if event.is_terminal:
                            return
            async for event in self._loop(state, limit, model, agent_name):
                if event.is_terminal and opened is not None:
                    opened.stop()  # the servers start closing; the finally waits for them
                yield event
        finally:
            state.control.end()
            if opened is not None:
                await opened.aclose()

    async def _finish_turn(
        self, snapshot: RunSnapshot, state: _RunState
    ) -> AsyncIterator[StepEvent]:
        """The recorded turn's calls that have no result: announced if the record did
        not, then given the fork's observation, or asked (a call that had started), or
        run."""
        calls = snapshot.unfinished
        for call in snapshot.unannounced:
            data: dict[str, Any] = {"call_id": call.call_id, "name": call.name}
            data["arguments"] = _display(call)
            if call.call_id in snapshot.edited_calls:
                data["edited"] = True
            yield StepEvent(EventType.TOOL_CALL, state.step, data)
        preset = {
            call_id: _ToolOutcome(text, False, 0.0, replaced=True)
            for call_id, text in snapshot.replaced_observations.items()
        }
        to_decide = [c for c in calls if c.call_id not in preset]
        forced = {c.call_id for c in snapshot.interrupted}
        decisions: dict[str, Decision] = {}
        async for event in self._decide(to_decide, state, decisions, forced):
            yield event
        if state.token.cancelled:
            yield self._cancelled_event(state, "approval", [])
            return
        async for event in self._run_tools(calls, state, decisions, preset):
            yield event

    async def _loop(
        self, state: _RunState, limit: int, model: str, agent_name: str
    ) -> AsyncIterator[StepEvent]:
        conversation = state.conversation
        tool_specs = [t.spec() for t in state.tools.values()]

        while True:
            async for event in self._checkpoint(state):
                yield event
            if state.token.cancelled:
                yield self._cancelled_event(state, "between_steps", [])
                return
            if state.step >= limit:
                yield self._error(
                    state,
                    ErrorCode.MAX_STEPS_EXCEEDED,
                    f"Agent {agent_name!r} reached its limit of {limit} steps without an answer.",
                )
                return
            state.step += 1

            turn: ModelTurn | None = None
            request = ModelRequest(model=model, messages=list(conversation), tools=tool_specs)
            started = time.perf_counter()
            async for item in self._model_turn(request, state):
                if isinstance(item, StepEvent):
                    yield item
                    if item.is_terminal:
                        return
                else:
                    turn = item
            assert turn is not None
            yield self._usage_event(state, model, turn, started)
            try:
                state.meter.check()
            except BudgetExceeded as exc:  # the call's reported usage crossed it
                yield self._budget_event(state, "between_steps", exc.message)
                return

            if not turn.tool_calls:
                if not turn.text.strip():
                    yield self._error(
                        state,
                        ErrorCode.EMPTY_RESPONSE,
                        "The model answered with neither text nor a tool call.",
                    )
                    return
                yield StepEvent(
                    EventType.FINAL_ANSWER,
                    state.step,
                    {
                        "output": turn.text,
                        "total_steps": state.step,
                        "total_tokens": state.meter.usage.total_tokens,
                        **self._spent(state),
                    },
                )
                return

            if turn.text.strip():
                yield StepEvent(
                    EventType.THOUGHT,
                    state.step,
                    {"text": turn.text, "usage": turn.usage.to_dict()},
                )
            conversation.append(turn.as_message())
            for call in turn.tool_calls:
                yield StepEvent(
                    EventType.TOOL_CALL,
                    state.step,
                    {"call_id": call.call_id, "name": call.name, "arguments": _display(call)},
                )
            decisions: dict[str, Decision] = {}
            async for event in self._decide(turn.tool_calls, state, decisions):
                yield event
            if state.token.cancelled:
                yield self._cancelled_event(state, "approval", [])
                return
            async for event in self._run_tools(turn.tool_calls, state, decisions):
                yield event
                if event.is_terminal:
                    return

    # -- the model call -------------------------------------------------------------

    def _usage_event(
        self, state: _RunState, model: str, turn: ModelTurn, started: float
    ) -> StepEvent:
        cost = state.meter.add(turn.usage)
        total = state.meter.usage
        return StepEvent(
            EventType.USAGE,
            state.step,
            {
                "model": model,
                "prompt_tokens": turn.usage.prompt_tokens,
                "completion_tokens": turn.usage.completion_tokens,
                "cost": cost,
                "total_prompt_tokens": total.prompt_tokens,
                "total_completion_tokens": total.completion_tokens,
                "total_cost": state.meter.cost,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )

    def _partial_usage(
        self, state: _RunState, model: str, partial: Usage, started: float
    ) -> StepEvent:
        """The ``usage`` of a call the budget cut: estimated (see ``costs.Meter``)."""
        total = state.meter.usage
        return StepEvent(
            EventType.USAGE,
            state.step,
            {
                "model": model,
                "prompt_tokens": partial.prompt_tokens,
                "completion_tokens": partial.completion_tokens,
                "cost": state.meter.pricing.cost(partial),
                "total_prompt_tokens": total.prompt_tokens,
                "total_completion_tokens": total.completion_tokens,
                "total_cost": state.meter.cost,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "estimated": True,
            },
        )

    def _spent(self, state: _RunState) -> dict[str, Any]:
        """What a run's last event says it used: tokens in and out, and cost."""
        return {"usage": state.meter.usage.to_dict(), "cost": state.meter.cost}

    async def _model_turn(
        self, request: ModelRequest, state: _RunState
    ) -> AsyncIterator[StepEvent | ModelTurn]:
        """Stream one model call: token events, then the turn; or a terminal event."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        # Bounded: a gateway that streams faster than the run consumes waits (backpressure)
        # instead of piling tokens up in memory.
        queue: asyncio.Queue[
            TokenDelta | ModelTurn | LLMError | _Cancelled | _Ended | _OverBudget
        ] = asyncio.Queue(MODEL_QUEUE_SIZE)

        async def pump() -> None:
            pieces = 0
            try:
                state.meter.check_before_call()  # it would cross it: not made
                async for item in self.gateway.stream(request):
                    if isinstance(item, TokenDelta) and item.text:
                        pieces += 1
                        state.meter.check_during_call(pieces)
                    await queue.put(item)
                    if isinstance(item, ModelTurn):
                        return
            except BudgetExceeded as exc:
                # Ends the call here: leaving the generator closes its connection.
                await queue.put(_OverBudget(exc.message))
                return
            except LLMError as exc:
                await queue.put(exc)
                return
            except Exception:
                log.exception("model gateway %s failed", type(self.gateway).__name__)
                await queue.put(LLMError("The model call failed unexpectedly."))
                return
            await queue.put(_ENDED)  # the stream ended without its turn

        producer = asyncio.create_task(pump())

        def stop(_reason: str | None) -> None:
            def interrupt() -> None:
                producer.cancel()
                # Make room: the queue is bounded and the consumer must see the cancel now.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(_CANCELLED)

            _call_on_loop(loop, interrupt)

        unregister = state.token.add_callback(stop)
        try:
            while True:
                try:
                    # wait_for costs a timer per call: only pay it when we must wait.
                    item = (
                        queue.get_nowait()
                        if not queue.empty()
                        else await asyncio.wait_for(queue.get(), self.llm_idle_timeout)
                    )
                except TimeoutError:
                    yield self._error(
                        state,
                        ErrorCode.LLM_TIMEOUT,
                        f"The model sent nothing for {self.llm_idle_timeout:g} s.",
                    )
                    return
                if isinstance(item, _Cancelled):
                    yield self._cancelled_event(state, "llm_call", [])
                    return
                if isinstance(item, _OverBudget):
                    partial = state.meter.partial
                    if partial is None:  # stopped before the call: nothing was sent
                        yield self._budget_event(state, "between_steps", item.message)
                        return
                    yield self._partial_usage(state, request.model, partial, started)
                    yield self._budget_event(state, "llm_call", item.message)
                    return
                if isinstance(item, _Ended):
                    yield self._error(
                        state,
                        ErrorCode.MODEL_STREAM_ENDED,
                        f"The model's stream ({type(self.gateway).__name__}) ended without "
                        "a complete answer.",
                    )
                    return
                if isinstance(item, LLMError):
                    code = _LLM_CODES.get(item.code, ErrorCode.LLM_ERROR)
                    yield self._error(state, code, f"The model call failed: {item}")
                    return
                if isinstance(item, TokenDelta):
                    if item.text:
                        yield StepEvent(EventType.TOKEN, state.step, {"delta": item.text})
                    continue
                yield item
                return
        finally:
            unregister()
            producer.cancel()

    # -- tools ----------------------------------------------------------------------

    async def _checkpoint(self, state: _RunState) -> AsyncIterator[StepEvent]:
        """Before a model or tool call: take a pause asked for (or due after ``steps``)
        and wait, costing nothing, for ``resume`` or a cancel."""
        while (pause := state.control.take_pause()) is not None:
            yield StepEvent(EventType.PAUSED, state.step, dict(pause))
            resumed = await state.control.wait_resumed(state.token)
            if resumed is None:
                return  # cancelled: the caller says so
            yield StepEvent(EventType.RESUMED, state.step, dict(resumed))

    async def _decide(
        self,
        calls: Sequence[ToolCall],
        state: _RunState,
        decisions: dict[str, Decision],
        forced: frozenset[str] | set[str] = frozenset(),
    ) -> AsyncIterator[StepEvent]:
        """Ask for every call of the turn that needs a decision (and the ``forced``
        ones: calls an interrupted run had started), then wait for them all (each
        until its timeout); a cancel decides the waiting ones ``cancelled``."""
        control = state.control
        waiting: list[PendingCall] = []
        for call in calls:
            tool = state.tools.get(call.name)
            if tool is None:
                continue
            try:
                kwargs = tool.validate_arguments(call.arguments)
            except ToolArgumentError:
                continue  # it fails with invalid_arguments without running: nothing to ask
            policy = (
                ApprovalPolicy.INTERRUPTED
                if call.call_id in forced
                else approval_policy(tool, kwargs, state.approval)
            )
            if policy is None:
                continue
            arguments = _display(call)
            requested: ApprovalRequestedData = {
                "call_id": call.call_id,
                "tool": tool.name,
                "arguments": arguments,
                "policy": policy.value,
                "schema": tool.parameters_schema,
                "timeout": state.approval_timeout,
            }
            earlier = None if call.call_id in forced else control.approved_for_task(tool.name)
            if earlier is not None:
                decision = control.auto_approve(call.call_id, arguments, earlier)
                decisions[call.call_id] = decision
                yield StepEvent(EventType.APPROVAL_REQUESTED, state.step, dict(requested))
                yield self._decided(state, call.call_id, decision)
                continue
            # Decidable before anyone can see the request.
            waiting.append(
                control.request(call.call_id, tool, arguments, requested, state.approval_timeout)
            )
            yield StepEvent(EventType.APPROVAL_REQUESTED, state.step, dict(requested))
        if not waiting:
            return
        loop = asyncio.get_running_loop()
        stop = asyncio.ensure_future(state.token.wait())
        try:
            while waiting:
                deadlines = [p.deadline for p in waiting if p.deadline is not None]
                timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
                watched: set[asyncio.Future[Any]] = {stop, *(p.future for p in waiting)}
                await asyncio.wait(
                    watched,
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for pending in list(waiting):
                    if pending.future.done():
                        decision = pending.future.result()
                    elif pending.deadline is not None and loop.time() >= pending.deadline:
                        decision = control.expire(pending.call_id, state.approval_timeout)
                    else:
                        continue
                    waiting.remove(pending)
                    decisions[pending.call_id] = decision
                    yield self._decided(state, pending.call_id, decision)
                if stop.done():
                    for call_id, decision in control.cancel_pending(state.token.reason):
                        decisions[call_id] = decision
                        yield self._decided(state, call_id, decision)
                    return
        finally:
            stop.cancel()

    def _decided(self, state: _RunState, call_id: str, decision: Decision) -> StepEvent:
        return StepEvent(EventType.APPROVAL_DECIDED, state.step, dict(decision.to_data(call_id)))

    async def _run_tools(
        self,
        calls: Sequence[ToolCall],
        state: _RunState,
        decisions: dict[str, Decision],
        preset: dict[str, _ToolOutcome] | None = None,
    ) -> AsyncIterator[StepEvent]:
        """Run the turn's tool calls concurrently; yield observations as they finish.

        Each call starts after a checkpoint: a pause asked for meanwhile waits for the
        calls in flight to finish, then holds the rest until ``resume``.
        """
        pending: dict[asyncio.Task[_ToolOutcome], ToolCall] = {}
        outcomes: dict[str, _ToolOutcome] = {}
        stop = asyncio.ensure_future(state.token.wait())
        # What running calls stream (tool_output, tool_progress), in the order written.
        streamed: asyncio.Queue[StepEvent] = asyncio.Queue()
        streams: dict[str, ToolStream] = {}
        loop = asyncio.get_running_loop()

        def observation(call: ToolCall, outcome: _ToolOutcome) -> StepEvent:
            outcomes[call.call_id] = outcome
            data: dict[str, Any] = {
                "call_id": call.call_id,
                "name": call.name,
                "output": outcome.output,
                "is_error": outcome.is_error,
                "duration_ms": round(outcome.duration_ms, 3),
            }
            if outcome.error_code:
                data["error_code"] = outcome.error_code
            if outcome.replaced:
                data["edited"] = True  # a fork's observation, in place of the recorded one
            return StepEvent(EventType.OBSERVATION, state.step, data)

        async def finish_some(everything: bool) -> AsyncIterator[StepEvent]:
            while pending:
                more = asyncio.ensure_future(streamed.get())
                try:
                    done, _ = await asyncio.wait(
                        {*pending, stop, more}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    if not more.done():
                        more.cancel()
                if more.done() and not more.cancelled():
                    yield more.result()
                while not streamed.empty():
                    yield streamed.get_nowait()
                for task in [t for t in pending if t in done]:
                    call = pending.pop(task)
                    streams[call.call_id].close()  # its last output before its observation
                    while not streamed.empty():
                        yield streamed.get_nowait()
                    yield observation(call, task.result())
                if stop in done or not everything:
                    return

        try:
            for call in calls:
                if preset and call.call_id in preset:
                    yield observation(call, preset[call.call_id])
                    continue
                decision = decisions.get(call.call_id)
                if decision is not None and not decision.runs:
                    yield observation(call, _not_run(call, decision))
                    continue
                if state.control.wants_pause():
                    async for event in finish_some(everything=True):
                        yield event
                if not stop.done():
                    async for event in self._checkpoint(state):
                        yield event
                if stop.done() or state.token.cancelled:
                    break
                stream = ToolStream(call.call_id, call.name, state.step, loop, streamed.put_nowait)
                streams[call.call_id] = stream
                job = asyncio.create_task(self._run_tool(call, state, decision, stream))
                pending[job] = call
            if not stop.done():
                async for event in finish_some(everything=True):
                    yield event
            if state.token.cancelled and (pending or len(outcomes) < len(calls)):
                interrupted = [pending[t].name for t in pending]
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=0.05)
                yield self._cancelled_event(state, "tool_calls", interrupted)
                return
        finally:
            stop.cancel()
            for task in pending:
                task.cancel()
            for stream in streams.values():
                stream.closed = True  # a generator still running stops at its next piece
        for call in calls:
            outcome = outcomes[call.call_id]
            state.conversation.append(
                {"role": "tool", "tool_call_id": call.call_id, "content": outcome.model_text}
            )

    async def _run_tool(
        self,
        call: ToolCall,
        state: _RunState,
        decision: Decision | None = None,
        stream: ToolStream | None = None,
    ) -> _ToolOutcome:
        # This task's context: what the call emits, yields or prints goes to its stream
        # (a sync tool's thread runs in a copy of it).
        bind(stream)
        capture_prints()
        started = time.perf_counter()

        def failed(code: ErrorCode, message: str) -> _ToolOutcome:
            return _ToolOutcome(message, True, (time.perf_counter() - started) * 1000, code.value)

        tool = state.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(state.tools)) or "none"
            return failed(
                ErrorCode.UNKNOWN_TOOL, f"Unknown tool {call.name!r}. Available tools: {known}."
            )
        edited = decision is not None and decision.decision.value == "edited"
        raw = decision.arguments if edited and decision is not None else call.arguments
        try:
            kwargs = tool.validate_arguments(raw)
        except ToolArgumentError as exc:
            return failed(ErrorCode.INVALID_ARGUMENTS, f"Invalid arguments for {tool.name}: {exc}")
        try:
            if inspect.isasyncgenfunction(tool.func):
                result = await asyncio.wait_for(_drain_async(tool.func(**kwargs)), tool.timeout)
            elif tool.is_async:
                result = await asyncio.wait_for(tool.func(**kwargs), tool.timeout)
            elif tool.isolate == "process":
                # A cancel or timeout kills the worker process: nothing is left running.
                result = await asyncio.wait_for(run_in_process(tool.func, kwargs), tool.timeout)
            else:
                jobs = state.tool_jobs.setdefault(tool.name, [])
                func = tool.func
                if inspect.isgeneratorfunction(func):
                    func = functools.partial(_drain_sync, func)
                in_context = functools.partial(contextvars.copy_context().run, func)
                result = await asyncio.wait_for(
                    run_in_thread(in_context, kwargs, tool.name, jobs), tool.timeout
                )
        except TimeoutError:
            return failed(
                ErrorCode.TOOL_TIMEOUT, f"{tool.name} timed out after {tool.timeout:g} s."
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return failed(ErrorCode.TOOL_ERROR, f"{type(exc).__name__}: {exc}")
        output = render(result)
        outcome = _ToolOutcome(output, False, (time.perf_counter() - started) * 1000)
        if edited and decision is not None:
            # The model asked for other arguments: it must know what ran.
            outcome.model_text = edited_note(decision.by, decision.arguments, output)
        return outcome

    # -- terminal events ------------------------------------------------------------

    def _error(self, state: _RunState, code: ErrorCode, message: str) -> StepEvent:
        data = {"message": message, "code": code.value, **self._spent(state)}
        return StepEvent(EventType.ERROR, state.step, data)

    def _budget_event(self, state: _RunState, interrupted: str, message: str) -> StepEvent:
        code = WireCode.BUDGET_EXCEEDED.value
        budget = state.meter.budget
        return StepEvent(
            EventType.CANCELLED,
            state.step,
            {
                "reason": code,
                "code": code,
                "interrupted": interrupted,
                "tools": [],
                "background": [],
                "message": f"{message} The run was stopped.",
                "budget": budget.to_dict() if budget is not None else None,
                **self._spent(state),
            },
        )

    def _cancelled_event(self, state: _RunState, interrupted: str, tools: list[str]) -> StepEvent:
        background = sorted(
            name for name, jobs in state.tool_jobs.items() if any(job.running for job in jobs)
        )
        if interrupted == "llm_call":
            message = "Cancelled during the model call; the request was aborted."
        elif interrupted == "tool_calls" and tools:
            message = f"Cancelled while running {', '.join(tools)}."
        elif interrupted == "approval":
            message = "Cancelled while tool calls waited for approval; none of them ran."
        else:
            message = "Cancelled between steps."
        if background:
            message += (
                f" {', '.join(background)} run(s) in a worker thread that cannot be stopped"
                " and may still be running in the background."
            )
        else:
            message += " Nothing is left running."
        return StepEvent(
            EventType.CANCELLED,
            state.step,
            {
                "reason": state.token.reason,
                "interrupted": interrupted,
                "tools": tools,
                "background": background,
                "message": message,
                **self._spent(state),
            },
        )


def _call_on_loop(loop: asyncio.AbstractEventLoop, func: Callable[[], None]) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        func()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(func)


async def _drain_async(pieces: AsyncIterator[Any]) -> str:
    """An async generator tool: each piece streamed as it comes; the observation is
    all of them."""
    parts: list[str] = []
    async for piece in pieces:
        text = render(piece)
        parts.append(text)
        emit(text)
    return "".join(parts)


def _drain_sync(func: Callable[..., Any], **kwargs: Any) -> Any:
    """A generator tool, on its worker thread: each piece streamed as it comes; the
    observation is all of them, or the generator's return value when it has one. A
    cancel stops it at its next piece (a thread cannot be stopped, a generator can)."""
    stream = current_stream()
    parts: list[str] = []
    generator = func(**kwargs)
    try:
        while True:
            if stream is not None and stream.closed:
                generator.close()
                return "".join(parts)
            try:
                piece = next(generator)
            except StopIteration as stop:
                return stop.value if stop.value is not None else "".join(parts)
            text = render(piece)
            parts.append(text)
            emit(text)
    finally:
        generator.close()


def _display(call: ToolCall) -> Any:
    """Arguments as the user should see them: parsed if possible, raw text otherwise."""
    try:
        return call.parsed_arguments()
    except json.JSONDecodeError:
        return call.arguments
