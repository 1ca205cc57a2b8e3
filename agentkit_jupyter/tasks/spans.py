"""A task's recorded log as OpenTelemetry spans, following the GenAI semantic conventions.

Pure: messages in (the wire messages of a task's log and its record), span
descriptions out (:class:`SpanSpec`), with their start and end times taken from the
events' own timestamps. No SDK, no clock, no Jupyter: the live export (a task just
ended) and the back-fill of old runs from the history go through this one function,
and a test can read what it builds without a collector. ``tasks/telemetry.py`` hands
the specs to the OpenTelemetry SDK.

The tree (one trace per task; ids derived from the task id, so exporting a run twice
gives the same ids, and a fork can link to its parent without asking anyone):

- ``invoke_agent {agent}`` (the task): ``gen_ai.conversation.id`` is the task id;
  approvals, pauses and resumes are its events (an approval also on its tool's span);
  a failed run is ERROR, a cancelled one ERROR with ``error.type`` ``cancelled``;
  a fork links to its parent task's span.
- ``chat {model}`` for each model call, with the tokens of its ``usage`` step;
- ``execute_tool {tool}`` for each tool call, ERROR when its observation is an error.

Content (the input, the model's text, tool arguments and results) is in the spans
only when asked for (``capture_content``: the standard
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``); without it a span holds
names, ids, counts, times and error codes only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..protocol import EventType, TaskStatus

__all__ = [
    "ERROR_TYPE_CANCELLED",
    "ERROR_TYPE_INTERRUPTED",
    "MAX_CONTENT_CHARS",
    "SpanEventSpec",
    "SpanSpec",
    "TraceSpec",
    "build_trace",
    "root_span_id",
    "trace_id_of",
]

AttributeValue = str | bool | int | float | list[str]

# One content attribute holds at most this many characters (a huge tool output would
# otherwise make one span larger than collectors accept).
MAX_CONTENT_CHARS = 16 * 1024
# error.type of a span whose work was cancelled, or cut by a server stop.
ERROR_TYPE_CANCELLED = "cancelled"
ERROR_TYPE_INTERRUPTED = "interrupted"

# The ``error`` codes that end a run during a model call: its chat span failed too.
_MODEL_ERRORS = frozenset({"llm_error", "llm_timeout", "model_stream_ended", "empty_response"})
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class SpanEventSpec:
    name: str
    time_ns: int
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass(slots=True)
class SpanSpec:
    """One span: ids as integers (OTel's 128-bit trace and 64-bit span ids)."""

    span_id: int
    parent_span_id: int | None
    name: str
    # "internal" (the agent, a tool) or "client" (a call to a model).
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    events: list[SpanEventSpec] = field(default_factory=list)
    # None: unset (success); else the status description of an ERROR status.
    error: str | None = None
    # (trace id, span id, attributes) of spans of other traces this one links to.
    links: list[tuple[int, int, dict[str, AttributeValue]]] = field(default_factory=list)


@dataclass(slots=True)
class TraceSpec:
    trace_id: int
    # The task's span first, then its children in the order they started.
    spans: list[SpanSpec]

    @property
    def root(self) -> SpanSpec:
        return self.spans[0]


def _digest(text: str, bits: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), "big")
    return (value >> (256 - bits)) or 1  # an all-zero id is invalid in OTel


def trace_id_of(task_id: str) -> int:
    """The trace id of a task's spans (the same on every export)."""
    return _digest(f"agentkit-trace:{task_id}", 128)


def root_span_id(task_id: str) -> int:
    """The span id of a task's ``invoke_agent`` span (a fork's link points at it)."""
    return _digest(f"agentkit-span:{task_id}:task", 64)


def _span_id(task_id: str, key: str) -> int:
    return _digest(f"agentkit-span:{task_id}:{key}", 64)


def _ns(seconds: float) -> int:
    return int(round(seconds * _NS))


def _content(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_CONTENT_CHARS else text[:MAX_CONTENT_CHARS] + "…"


def _messages_json(role: str, parts: list[dict[str, Any]], **extra: Any) -> str:
    return _content([{"role": role, "parts": parts, **extra}])


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(slots=True)
class _Step:
    """One ReAct step as far as the log shows it."""

    number: int
    first_ns: int | None = None
    usage: dict[str, Any] | None = None
    usage_ns: int | None = None
    text: str | None = None
    answer: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)


def build_trace(
    record: dict[str, Any],
    messages: list[dict[str, Any]],
    *,
    capture_content: bool = False,
    provider: str | None = None,
) -> TraceSpec:
    """The spans of one task: ``record`` is its record (``Task.to_dict()`` or a stored
    one), ``messages`` its log's wire messages, oldest first. ``provider`` is the
    ``gen_ai.provider.name`` when known (a server agent's gateway)."""
    task_id = str(record["task_id"])
    agent = str(record.get("agent") or "agent")
    steps_messages = [
        m["data"]
        for m in messages
        if m.get("type") == "step"
        and isinstance(m.get("data"), dict)
        # A fork's copied steps were the parent's calls, exported with the parent.
        and not m["data"].get("copied")
    ]
    copied = sum(
        1 for m in messages if m.get("type") == "step" and (m.get("data") or {}).get("copied")
    )
    times = [float(s["timestamp"]) for s in steps_messages if _is_time(s.get("timestamp"))]
    start_s = _first_time(record.get("started_at"), record.get("created_at"), *times[:1])
    end_s = _first_time(record.get("finished_at"), *times[-1:], start_s)
    start_ns, end_ns = _ns(start_s), max(_ns(end_s), _ns(start_s))

    common: dict[str, AttributeValue] = {
        "gen_ai.agent.name": agent,
        "gen_ai.conversation.id": task_id,
    }
    if provider:
        # provider.name is the current convention's name; system the one before it.
        common["gen_ai.provider.name"] = provider
        common["gen_ai.system"] = provider

    root = SpanSpec(
        span_id=root_span_id(task_id),
        parent_span_id=None,
        name=f"invoke_agent {agent}",
        kind="internal",
        start_ns=start_ns,
        end_ns=end_ns,
        attributes={"gen_ai.operation.name": "invoke_agent", **common},
    )
    root.attributes["agentkit.task.id"] = task_id
    root.attributes["agentkit.task.status"] = str(record.get("status") or "")
    root.attributes["agentkit.task.origin"] = str(record.get("origin") or "server")
    if copied:
        root.attributes["agentkit.task.copied_steps"] = copied
    parent_id = record.get("parent_id")
    if isinstance(parent_id, str) and parent_id:
        root.attributes["agentkit.task.parent_id"] = parent_id
        if isinstance(record.get("fork_kind"), str):
            root.attributes["agentkit.task.fork_kind"] = record["fork_kind"]
        if _number(record.get("forked_at_seq")) is not None:
            root.attributes["agentkit.task.forked_at_seq"] = record["forked_at_seq"]
        root.links.append(
            (
                trace_id_of(parent_id),
                root_span_id(parent_id),
                {"agentkit.link.type": str(record.get("fork_kind") or "fork")},
            )
        )
    if capture_content and isinstance(record.get("input"), str):
        root.attributes["gen_ai.input.messages"] = _messages_json(
            "user", [{"type": "text", "content": record["input"]}]
        )

    steps: dict[int, _Step] = {}
    tool_spans: dict[str, SpanSpec] = {}
    unanswered: set[str] = set()  # calls with a span and no observation yet
    terminal: dict[str, Any] | None = None
    models: list[str] = []
    tokens_in = tokens_out = 0
    last_ns = start_ns  # the end of the latest thing seen: where an unfinished call stops

    for event in steps_messages:
        kind = event.get("event_type")
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        at = _ns(float(event["timestamp"])) if _is_time(event.get("timestamp")) else last_ns
        last_ns = max(last_ns, at)
        number = _number(event.get("step")) or 0
        step = steps.setdefault(number, _Step(number))
        if step.first_ns is None:
            step.first_ns = at
        if kind == EventType.USAGE:
            step.usage, step.usage_ns = data, at
            model = data.get("model")
            if isinstance(model, str) and model not in models:
                models.append(model)
            tokens_in += _number(data.get("prompt_tokens")) or 0
            tokens_out += _number(data.get("completion_tokens")) or 0
        elif kind == EventType.THOUGHT:
            step.text = data.get("text") if isinstance(data.get("text"), str) else None
        elif kind == EventType.FINAL_ANSWER:
            step.answer = data.get("output") if isinstance(data.get("output"), str) else None
            terminal = event
        elif kind == EventType.TOOL_CALL:
            call_id = str(data.get("call_id") or f"step{number}-{len(step.calls)}")
            step.calls.append(data)
            name = str(data.get("name") or "tool")
            span = SpanSpec(
                span_id=_span_id(task_id, f"tool:{call_id}"),
                parent_span_id=root.span_id,
                name=f"execute_tool {name}",
                kind="internal",
                start_ns=at,
                end_ns=at,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    **common,
                    "gen_ai.tool.name": name,
                    "gen_ai.tool.call.id": call_id,
                    "gen_ai.tool.type": "function",
                    "agentkit.step": number,
                },
            )
            unanswered.add(call_id)  # until its observation (or the run's end)
            if capture_content and "arguments" in data:
                span.attributes["gen_ai.tool.call.arguments"] = _content(data["arguments"])
            tool_spans[call_id] = span
        elif kind == EventType.OBSERVATION:
            called = tool_spans.get(str(data.get("call_id")))
            if called is not None:
                called.end_ns = max(at, called.start_ns)
                unanswered.discard(str(data.get("call_id")))
                if data.get("is_error"):
                    code = str(data.get("error_code") or "tool_error")
                    called.attributes["error.type"] = code
                    output = data.get("output")
                    called.error = (
                        _content(output) if capture_content and isinstance(output, str) else code
                    )
                if capture_content and "output" in data:
                    called.attributes["gen_ai.tool.call.result"] = _content(data["output"])
        elif kind in (EventType.APPROVAL_REQUESTED, EventType.APPROVAL_DECIDED):
            name = f"agentkit.{kind}"
            attributes: dict[str, AttributeValue] = {
                "gen_ai.tool.call.id": str(data.get("call_id") or "")
            }
            if kind == EventType.APPROVAL_REQUESTED:
                attributes["gen_ai.tool.name"] = str(data.get("tool") or "")
                attributes["agentkit.approval.policy"] = str(data.get("policy") or "")
            else:
                attributes["agentkit.approval.decision"] = str(data.get("decision") or "")
                for key in ("by", "scope"):
                    if isinstance(data.get(key), str):
                        attributes[f"agentkit.approval.{key}"] = data[key]
                if capture_content and isinstance(data.get("reason"), str):
                    attributes["agentkit.approval.reason"] = data["reason"]
            span_event = SpanEventSpec(name, at, attributes)
            root.events.append(span_event)
            call_span = tool_spans.get(str(data.get("call_id")))
            if call_span is not None:
                call_span.events.append(span_event)
        elif kind in (EventType.PAUSED, EventType.RESUMED):
            attributes = {}
            if isinstance(data.get("by"), str):
                attributes["agentkit.pause.by"] = data["by"]
            if _number(data.get("steps")) is not None:
                attributes["agentkit.resume.steps"] = data["steps"]
            if capture_content and isinstance(data.get("reason"), str):
                attributes["agentkit.pause.reason"] = data["reason"]
            root.events.append(SpanEventSpec(f"agentkit.{kind}", at, attributes))
        elif kind in (EventType.ERROR, EventType.CANCELLED):
            terminal = event

    end_ns = max(end_ns, last_ns)
    root.end_ns = end_ns
    status = str(record.get("status") or "")
    result: dict[str, Any] = record["result"] if isinstance(record.get("result"), dict) else {}
    terminal_kind = terminal.get("event_type") if terminal is not None else None
    raw_terminal = terminal.get("data") if terminal is not None else None
    terminal_data: dict[str, Any] = raw_terminal if isinstance(raw_terminal, dict) else {}
    terminal_step = _number(terminal.get("step")) if terminal is not None else None

    chat_spans: list[SpanSpec] = []
    previous_end = start_ns
    for number in sorted(steps):
        step = steps[number]
        if number == 0 and step.usage is None:
            continue  # step 0: the run's own notes (a cancel before it began), no call
        failed_here = terminal_step == number and terminal_kind in (
            EventType.ERROR,
            EventType.CANCELLED,
        )
        if step.usage is None and not failed_here:
            continue
        if step.usage is not None and step.usage_ns is not None:
            duration = step.usage.get("duration_ms")
            seconds = float(duration) / 1000 if isinstance(duration, int | float) else 0.0
            call_end = step.usage_ns
            call_start = max(previous_end, call_end - _ns(seconds)) if seconds else step.first_ns
        else:
            # The call never finished: from its first sign (a token) or the step's start.
            if terminal_kind == EventType.CANCELLED and terminal_data.get("interrupted") not in (
                "llm_call",
                None,
            ):
                continue
            if terminal_kind == EventType.ERROR and terminal_data.get("code") not in _MODEL_ERRORS:
                continue
            call_start = step.first_ns if step.first_ns is not None else previous_end
            call_end = end_ns
        call_start = call_start if call_start is not None else previous_end
        model = (step.usage or {}).get("model")
        model = model if isinstance(model, str) else (models[0] if models else None)
        span = SpanSpec(
            span_id=_span_id(task_id, f"chat:{number}"),
            parent_span_id=root.span_id,
            name=f"chat {model}" if model else "chat",
            kind="client",
            start_ns=min(call_start, call_end),
            end_ns=call_end,
            attributes={"gen_ai.operation.name": "chat", **common, "agentkit.step": number},
        )
        if model:
            span.attributes["gen_ai.request.model"] = model
            span.attributes["gen_ai.response.model"] = model
        if step.usage is not None:
            for key, name in (
                ("prompt_tokens", "gen_ai.usage.input_tokens"),
                ("completion_tokens", "gen_ai.usage.output_tokens"),
            ):
                if _number(step.usage.get(key)) is not None:
                    span.attributes[name] = step.usage[key]
            if isinstance(step.usage.get("cost"), int | float):
                span.attributes["agentkit.usage.cost_usd"] = float(step.usage["cost"])
            span.attributes["gen_ai.response.finish_reasons"] = [
                "tool_calls" if step.calls else "stop"
            ]
            if capture_content:
                parts: list[dict[str, Any]] = []
                text = step.answer if step.answer is not None else step.text
                if text:
                    parts.append({"type": "text", "content": text})
                parts.extend(
                    {
                        "type": "tool_call",
                        "id": call.get("call_id"),
                        "name": call.get("name"),
                        "arguments": call.get("arguments"),
                    }
                    for call in step.calls
                )
                span.attributes["gen_ai.output.messages"] = _messages_json(
                    "assistant",
                    parts,
                    finish_reason="tool_call" if step.calls else "stop",
                )
        else:
            _fail(span, terminal_kind, terminal_data, status)
        chat_spans.append(span)
        previous_end = max(previous_end, call_end)

    # Calls without an observation: the run ended (cancelled, failed, the server
    # stopped) while they ran or waited for a decision.
    for call_id in unanswered:
        span = tool_spans[call_id]
        span.end_ns = max(end_ns, span.start_ns)
        _fail(span, terminal_kind, terminal_data, status, unfinished=True)

    # The run's own attributes and status.
    if models:
        root.attributes["gen_ai.request.model"] = models[0]
    root.attributes["gen_ai.usage.input_tokens"] = tokens_in
    root.attributes["gen_ai.usage.output_tokens"] = tokens_out
    cost = record.get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        root.attributes["agentkit.usage.cost_usd"] = float(cost)
    answer = result.get("output") if isinstance(result.get("output"), str) else None
    if capture_content and answer is not None:
        root.attributes["gen_ai.output.messages"] = _messages_json(
            "assistant", [{"type": "text", "content": answer}], finish_reason="stop"
        )
    if status != TaskStatus.SUCCEEDED.value:
        _fail(root, terminal_kind, terminal_data, status, result=result)

    children = sorted([*chat_spans, *tool_spans.values()], key=lambda s: (s.start_ns, s.name))
    return TraceSpec(trace_id_of(task_id), [root, *children])


def _fail(
    span: SpanSpec,
    terminal_kind: Any,
    terminal_data: dict[str, Any],
    status: str,
    *,
    unfinished: bool = False,
    result: dict[str, Any] | None = None,
) -> None:
    """Mark ``span`` ERROR with why the run ended: cancelled, interrupted, or its error."""
    result = result or {}
    error: dict[str, Any] = result["error"] if isinstance(result.get("error"), dict) else {}
    if status == TaskStatus.CANCELLED.value or terminal_kind == EventType.CANCELLED:
        span.attributes["error.type"] = ERROR_TYPE_CANCELLED
        reason = terminal_data.get("reason") or result.get("reason")
        code = terminal_data.get("code") or result.get("code")
        if isinstance(code, str):
            span.attributes["agentkit.cancel.code"] = code
        span.error = "cancelled" + (f": {reason}" if isinstance(reason, str) and reason else "")
    elif status == TaskStatus.INTERRUPTED.value:
        span.attributes["error.type"] = ERROR_TYPE_INTERRUPTED
        span.error = str(error.get("message") or "interrupted: the server stopped")
    else:
        code = terminal_data.get("code") or error.get("code") or "_OTHER"
        message = terminal_data.get("message") or error.get("message") or status or "failed"
        span.attributes["error.type"] = str(code)
        span.error = (
            f"the run ended ({code}) before this call's result" if unfinished else str(message)
        )


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _first_time(*values: Any) -> float:
    for value in values:
        if _is_time(value):
            return float(value)
    return 0.0
