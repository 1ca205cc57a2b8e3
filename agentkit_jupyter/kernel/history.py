"""Runs as data frames: :func:`history` (one row a task) and :func:`steps_frame` (one row
a step event of one task; ``TaskHandle.to_dataframe()``).

pandas is optional: ``pip install pandas`` (or ``pip install
"agentkit-jupyter[notebooks]"``); without it these raise an ``ImportError`` that says so.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING, Any

from ..protocol import EventType

if TYPE_CHECKING:
    from .client import AgentKitClient

__all__ = ["HISTORY_COLUMNS", "STEP_COLUMNS", "history", "steps_frame"]

HISTORY_COLUMNS = (
    "id",
    "agent",
    "status",
    "input",
    "output",
    "steps",
    "tokens_in",
    "tokens_out",
    "cost",
    "duration",
    "created",
    "parent",
)
STEP_COLUMNS = (
    "seq",
    "step",
    "event_type",
    "tool",
    "arguments",
    "text",
    "is_error",
    "duration_ms",
    "tokens_in",
    "tokens_out",
    "cost",
    "copied",
    "timestamp",
)

_MISSING_PANDAS = (
    "This needs pandas, which is not installed: pip install pandas "
    '(or pip install "agentkit-jupyter[notebooks]").'
)


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:
        raise ImportError(_MISSING_PANDAS, name="pandas") from exc


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _task_row(summary: dict[str, Any]) -> dict[str, Any]:
    result = _dict(summary.get("result"))
    started, finished = _number(summary.get("started_at")), _number(summary.get("finished_at"))
    output = result.get("output")
    return {
        "id": summary.get("task_id"),
        "agent": summary.get("agent"),
        "status": summary.get("status"),
        "input": summary.get("input"),
        "output": output if isinstance(output, str) else None,
        "steps": _int(result.get("total_steps")),
        "tokens_in": _int(summary.get("tokens_in")) or 0,
        "tokens_out": _int(summary.get("tokens_out")) or 0,
        "cost": _number(summary.get("cost")),
        "duration": (
            max(0.0, finished - started) if started is not None and finished is not None else None
        ),
        "created": _number(summary.get("created_at")),
        "parent": summary.get("parent_id"),
    }


def history(
    agent: str | None = None,
    status: str | Iterable[str] | None = None,
    since: str | float | date | None = None,
    limit: int | None = None,
    client: AgentKitClient | None = None,
) -> Any:
    """The server's tasks as a ``pandas.DataFrame``, one row a task, oldest first.

    Columns: ``id``, ``agent``, ``status``, ``input``, ``output`` (both as the task list
    has them: cut to 500 characters), ``steps``, ``tokens_in``, ``tokens_out``, ``cost``
    (US dollars; missing where a price is unknown), ``duration`` (seconds; missing while
    it runs), ``created`` (a UTC ``Timestamp``) and ``parent`` (the task a fork was made
    from).

    The filters are the server's (``GET tasks``): tasks of ``agent``; in ``status``
    (``"failed"``, or several: ``["failed", "cancelled"]``); created at or after
    ``since`` (a ``datetime``, naive meaning local time; a ``date``, from midnight UTC;
    epoch seconds; an ISO 8601 text); the newest ``limit`` of those. ``client``
    defaults to one for the server that started this kernel.
    """
    pd = _pandas()
    from .client import AgentKitClient

    own = client is None
    active = client if client is not None else AgentKitClient()
    try:
        summaries = active.list_tasks(agent=agent, status=status, since=since, limit=limit)
    finally:
        if own:
            active.close()
    frame = pd.DataFrame([_task_row(s) for s in summaries], columns=list(HISTORY_COLUMNS))
    return frame.astype(
        {
            "steps": "Int64",
            "tokens_in": "int64",
            "tokens_out": "int64",
            "cost": "Float64",
            "duration": "Float64",
        }
    ).assign(created=pd.to_datetime(frame["created"], unit="s", utc=True))


def _step_row(message: dict[str, Any], per_thought_tokens: bool) -> dict[str, Any] | None:
    event = message.get("data")
    if message.get("type") != "step" or not isinstance(event, dict):
        return None
    kind = event.get("event_type")
    if kind == EventType.TOKEN.value:
        return None
    data = _dict(event.get("data"))
    row: dict[str, Any] = {
        "seq": _int(message.get("seq")),
        "step": _int(event.get("step")),
        "event_type": kind,
        "tool": None,
        "arguments": None,
        "text": None,
        "is_error": None,
        "duration_ms": _number(data.get("duration_ms")),
        "tokens_in": None,
        "tokens_out": None,
        "cost": None,
        "copied": event.get("copied") is True,
        "timestamp": _number(event.get("timestamp")),
    }
    if kind == EventType.THOUGHT.value:
        row["text"] = data.get("text")
        usage = data.get("usage")
        if per_thought_tokens and isinstance(usage, dict):  # a log from before usage steps
            row["tokens_in"] = _int(usage.get("prompt_tokens"))
            row["tokens_out"] = _int(usage.get("completion_tokens"))
    elif kind == EventType.TOOL_CALL.value:
        row["tool"], row["arguments"] = data.get("name"), data.get("arguments")
    elif kind == EventType.OBSERVATION.value:
        row["tool"], row["text"] = data.get("name"), data.get("output")
        row["is_error"] = data.get("is_error") is True
    elif kind == EventType.FINAL_ANSWER.value:
        row["text"] = data.get("output")
    elif kind in (EventType.ERROR.value, EventType.CANCELLED.value):
        row["text"] = data.get("message") or data.get("reason")
        row["is_error"] = kind == EventType.ERROR.value
    elif kind == EventType.USAGE.value:
        row["tool"] = None
        row["text"] = data.get("model")
        row["tokens_in"] = _int(data.get("prompt_tokens"))
        row["tokens_out"] = _int(data.get("completion_tokens"))
        row["cost"] = _number(data.get("cost"))
    elif kind in (EventType.APPROVAL_REQUESTED.value, EventType.APPROVAL_DECIDED.value):
        row["tool"] = data.get("tool")
        row["arguments"] = data.get("arguments")
        row["text"] = data.get("decision") or data.get("policy")
    elif kind in (EventType.PAUSED.value, EventType.RESUMED.value):
        row["text"] = data.get("reason")
    return row


def steps_frame(messages: Iterable[dict[str, Any]]) -> Any:
    """One task's log as a ``pandas.DataFrame``, one row a step event (not the streamed
    tokens), in order.

    Columns: ``seq``, ``step``, ``event_type``, ``tool`` (a call, its observation, an
    approval), ``arguments``, ``text`` (a thought's text, an observation's output, the
    answer, an error or cancel message, a usage step's model, an approval's decision),
    ``is_error``, ``duration_ms`` (a tool call's, a model call's), ``tokens_in``,
    ``tokens_out`` and ``cost`` (on ``usage`` rows: one model call each; summing them
    gives the run's), ``copied`` (a fork's step copied from its parent), ``timestamp``
    (a UTC ``Timestamp``).
    """
    pd = _pandas()
    messages = list(messages)
    has_usage = any(
        m.get("type") == "step"
        and isinstance(m.get("data"), dict)
        and m["data"].get("event_type") == EventType.USAGE.value
        for m in messages
    )
    rows = [row for m in messages if (row := _step_row(m, not has_usage)) is not None]
    frame = pd.DataFrame(rows, columns=list(STEP_COLUMNS))
    return frame.astype(
        {
            "seq": "Int64",
            "step": "Int64",
            "is_error": "boolean",
            "duration_ms": "Float64",
            "tokens_in": "Int64",
            "tokens_out": "Int64",
            "cost": "Float64",
            "copied": "bool",
        }
    ).assign(timestamp=pd.to_datetime(frame["timestamp"], unit="s", utc=True))
