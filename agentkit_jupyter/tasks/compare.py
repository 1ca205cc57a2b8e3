"""Two runs side by side: :func:`compare_runs` aligns their steps and says what differs.

Pure (no I/O): it takes each task's record (``Task.to_dict()``, or what ``GET
tasks/{id}`` answers) and its log (the wire ``step`` and ``result`` messages) and
returns a ``protocol.Comparison``, which ``GET agentkit/api/compare`` serves and the
kernel's ``compare(a, b)`` widget shows.

How the runs are aligned:

- by step number (a step is one model turn); within a step, the thought, then each
  tool call with its observation, aligned by tool name and order (the 2nd ``search``
  of step 3 of one run faces the 2nd ``search`` of step 3 of the other);
- the final answer faces the final answer, and an end (an ``error`` or a
  ``cancelled`` step) the end, whatever step each run ended at (the row's ``step`` is
  the later one): how the runs concluded is always compared;
- tokens (``token`` steps), usage, approvals and pauses are not rows (usage counts
  into the sides' totals).

A row is ``same`` when both runs have it and it says the same (text, arguments,
observation, ``is_error``); ``copied`` (a fork's copy of its parent's step) does not
count. ``diffs`` holds, for each field that differs, the two texts as ``difflib``
segments (``equal`` / ``delete`` / ``insert``, by words); arguments are compared as
JSON with sorted keys.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .. import protocol
from ..protocol import CompareCell, CompareRow, CompareSide, Comparison, DiffSegment, EventType

__all__ = ["MAX_CELL_CHARS", "compare_runs", "diff_segments"]

# A text longer than this (characters) is shown cut in its cell and in its diff, with a
# note saying how long it is; whether the row is ``same`` is decided on the whole text.
MAX_CELL_CHARS = 50_000
# difflib's matcher is quadratic at worst (a few seconds for two 2,000-word texts of
# a small vocabulary). Up to this product of the two sides' token counts it compares
# them exactly; beyond it, with difflib's "autojunk" (tokens in over 1% of the text do
# not start a match: fast, a little coarser); beyond _MAX_DIFF_TOKENS tokens on a side,
# by lines; beyond as many lines, as one deletion and one insertion.
_EXACT_DIFF_WORK = 250_000
_MAX_DIFF_TOKENS = 20_000
# An equal text this short between two changes is shown as part of one change.
_FOLD_CHARS = 2
# Words, runs of blanks, and single other characters: what a diff is made of.
_TOKENS = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)

# The cell kind of a run's last step: its answer, or its end.
_TERMINAL = {
    EventType.FINAL_ANSWER.value: "answer",
    EventType.ERROR.value: "end",
    EventType.CANCELLED.value: "end",
}
_COMPARED = {
    EventType.THOUGHT.value,
    EventType.TOOL_CALL.value,
    EventType.OBSERVATION.value,
    *_TERMINAL,
}
# Kinds of cells in the order they take within a step.
_ORDER = {"thought": 0, "tool": 1, "answer": 2, "end": 3}


# -- diffs ------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return _TOKENS.findall(text)


def _middle(a: str, b: str) -> list[tuple[str, str]]:
    """(op, text) pieces of two texts that share no start and no end."""
    if not a or not b:
        return [("delete", a), ("insert", b)]
    ta, tb = _tokens(a), _tokens(b)
    if max(len(ta), len(tb)) > _MAX_DIFF_TOKENS:
        ta, tb = a.splitlines(keepends=True), b.splitlines(keepends=True)
        if max(len(ta), len(tb)) > _MAX_DIFF_TOKENS:
            return [("delete", a), ("insert", b)]
    exact = len(ta) * len(tb) <= _EXACT_DIFF_WORK
    matcher = difflib.SequenceMatcher(None, ta, tb, autojunk=not exact)
    pieces: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pieces.append(("equal", "".join(ta[i1:i2])))
            continue
        if op in ("delete", "replace"):
            pieces.append(("delete", "".join(ta[i1:i2])))
        if op in ("insert", "replace"):
            pieces.append(("insert", "".join(tb[j1:j2])))
    return pieces


def _common_ends(a: str, b: str) -> tuple[int, int]:
    """How many characters a and b share at their start and at their end, each cut
    back to a token boundary of both (a word is never split)."""
    limit = min(len(a), len(b))
    start = 0
    while start < limit and a[start] == b[start]:
        start += 1
    while 0 < start and _is_word(a[start - 1]) and (_word_at(a, start) or _word_at(b, start)):
        start -= 1
    end = 0
    while end < limit - start and a[-1 - end] == b[-1 - end]:
        end += 1
    while (
        0 < end
        and _is_word(a[-end])
        and (_word_at(a, len(a) - end - 1) or _word_at(b, len(b) - end - 1))
    ):
        end -= 1
    return start, end


def _word_at(text: str, index: int) -> bool:
    return 0 <= index < len(text) and _is_word(text[index])


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def diff_segments(a: str, b: str) -> list[DiffSegment]:
    """The two texts as segments: side a reads ``equal`` + ``delete``, side b ``equal`` +
    ``insert``. Adjacent segments of one op are joined; none is empty."""
    start, end = _common_ends(a, b)
    pieces = [("equal", a[:start])]
    pieces += _middle(a[start : len(a) - end], b[start : len(b) - end])
    pieces.append(("equal", a[len(a) - end :]))
    segments: list[DiffSegment] = []
    for block in _folded(pieces):
        for op, text in zip(
            ("equal",) if len(block) == 1 else ("delete", "insert"), block, strict=True
        ):
            if not text:
                continue
            if segments and segments[-1]["op"] == op:
                segments[-1]["text"] += text
            else:
                segments.append(
                    {"op": cast(Literal["equal", "delete", "insert"], op), "text": text}
                )
    return segments


def _folded(pieces: list[tuple[str, str]]) -> list[list[str]]:
    """The pieces as blocks, ``[equal]`` or ``[deleted, inserted]``, where a short
    equal text between two changes (the commas of "2,748,109" against "3,878,100")
    is folded into one change: easier to read than a change every other character."""
    blocks: list[list[str]] = []
    for op, text in pieces:
        if not text:
            continue
        if op == "equal":
            if blocks and len(blocks[-1]) == 1:
                blocks[-1][0] += text
            else:
                blocks.append([text])
            continue
        if not blocks or len(blocks[-1]) == 1:
            blocks.append(["", ""])
        blocks[-1][0 if op == "delete" else 1] += text
        if len(blocks) >= 3 and len(blocks[-2]) == 1 and len(blocks[-2][0]) <= _FOLD_CHARS:
            change, (equal,) = blocks.pop(), blocks.pop()
            blocks[-1][0] += equal + change[0]
            blocks[-1][1] += equal + change[1]
    return blocks


# -- one run's cells ----------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return _json(value)


def _json(value: Any) -> str:
    """Arguments as compared: JSON with sorted keys (a raw text as it is)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # keys of mixed types, a circle
        return str(value)


def _shown(text: str) -> str:
    if len(text) <= MAX_CELL_CHARS:
        return text
    return text[:MAX_CELL_CHARS] + f"\n… (cut here: {len(text):,} characters in all)"


@dataclass(slots=True)
class _Cell:
    kind: str
    step: int
    seq: int
    copied: bool
    text: str | None = None
    tool: str | None = None
    arguments: Any = None
    arguments_text: str | None = None
    observation: str | None = None
    is_error: bool | None = None
    # The fields compared, as texts (whole): text, arguments, observation.
    fields: dict[str, str] = field(default_factory=dict)

    def wire(self) -> CompareCell:
        cell: CompareCell = {"kind": self.kind, "seq": self.seq}
        if self.text is not None:
            cell["text"] = _shown(self.text)
        if self.tool is not None:
            cell["tool"] = self.tool
        if self.arguments_text is not None:
            cell["arguments"] = self.arguments
        if self.observation is not None:
            cell["observation"] = _shown(self.observation)
        if self.is_error is not None:
            cell["is_error"] = self.is_error
        if self.copied:
            cell["copied"] = True
        return cell


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(slots=True)
class _Run:
    """One run as the comparison reads it."""

    cells: dict[tuple[int, str], _Cell]
    order: list[tuple[int, str]]
    max_step: int
    result: dict[str, Any] | None
    # Totals of the run's own ``usage`` steps (a fork's copied ones were its parent's);
    # ``usage_seen``: the log has usage steps at all (else they are not known from it).
    usage_seen: bool
    tokens_in: int
    tokens_out: int
    cost: float | None


def _read(messages: Iterable[Any]) -> _Run:
    cells: dict[tuple[int, str], _Cell] = {}
    order: list[tuple[int, str]] = []
    counts: dict[tuple[int, str], int] = {}
    calls: dict[str, _Cell] = {}
    result: dict[str, Any] | None = None
    max_step = 0
    usage_seen, tokens_in, tokens_out, priced, cost = False, 0, 0, True, 0.0

    def add(step: int, base: str, cell: _Cell, numbered: bool = False) -> None:
        n = counts[(step, base)] = counts.get((step, base), 0) + 1
        key = f"{base}:{n}" if numbered or n > 1 else base
        if cell.kind in ("answer", "end"):
            step = -1  # paired whatever the step (see the module's doc)
        cells[(step, key)] = cell
        order.append((step, key))

    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("type") == "result":
            data = message.get("data")
            result = dict(data) if isinstance(data, dict) else result
            continue
        if message.get("type") != "step" or not isinstance(message.get("data"), dict):
            continue
        event = message["data"]
        kind = event.get("event_type")
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        step = _int(event.get("step"))
        seq = _int(message.get("seq"))
        copied = event.get("copied") is True
        if kind == EventType.USAGE.value:
            usage_seen = True
            if not copied:
                tokens_in += _int(data.get("prompt_tokens"))
                tokens_out += _int(data.get("completion_tokens"))
                call_cost = _number(data.get("cost"))
                if call_cost is None:
                    priced = False
                else:
                    cost += call_cost
            continue
        if kind not in _COMPARED:
            continue  # tokens, approvals, pauses: not compared
        max_step = max(max_step, step)
        if kind == EventType.THOUGHT.value:
            text = _text(data.get("text"))
            add(
                step,
                "thought",
                _Cell("thought", step, seq, copied, text=text, fields={"text": text}),
            )
        elif kind == EventType.TOOL_CALL.value:
            name = _text(data.get("name"))
            arguments = data.get("arguments")
            cell = _Cell(
                "tool",
                step,
                seq,
                copied,
                tool=name,
                arguments=arguments,
                arguments_text=_json(arguments),
            )
            cell.fields["arguments"] = cell.arguments_text or ""
            add(step, f"tool:{name}", cell, numbered=True)
            call_id = data.get("call_id")
            if isinstance(call_id, str):
                calls[call_id] = cell
        elif kind == EventType.OBSERVATION.value:
            call_id = data.get("call_id")
            found = calls.pop(call_id, None) if isinstance(call_id, str) else None
            if found is None:  # an observation without its call (a damaged log)
                name = _text(data.get("name"))
                found = _Cell("tool", step, seq, copied, tool=name)
                add(step, f"tool:{name}", found, numbered=True)
            found.observation = _text(data.get("output"))
            found.is_error = data.get("is_error") is True
            found.fields["observation"] = found.observation
        else:
            cell_kind = _TERMINAL[str(kind)]
            if cell_kind == "answer":
                text = _text(data.get("output"))
            else:
                text = _text(data.get("message") or data.get("reason") or data.get("code"))
            is_error = True if kind == EventType.ERROR.value else None
            cell = _Cell(cell_kind, step, seq, copied, text=text, is_error=is_error)
            cell.fields["text"] = text
            add(step, cell_kind, cell)
    return _Run(
        cells,
        order,
        max_step,
        result,
        usage_seen,
        tokens_in,
        tokens_out,
        cost if priced else None,
    )


# -- the two sides ------------------------------------------------------------------------


def _side(record: dict[str, Any], run: _Run) -> CompareSide:
    recorded = record.get("result")
    result: dict[str, Any] = run.result or (recorded if isinstance(recorded, dict) else {})
    status = record.get("status") or result.get("status") or ""
    output = result.get("output")
    total_steps = result.get("total_steps")
    steps = _int(total_steps, run.max_step) if total_steps is not None else run.max_step
    usage = result.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    # The record's totals (what the run's own model calls used), else the log's.
    if isinstance(record.get("tokens_in"), int) or isinstance(record.get("tokens_out"), int):
        tokens_in = _int(record.get("tokens_in"))
        tokens_out = _int(record.get("tokens_out"))
    elif run.usage_seen:
        tokens_in, tokens_out = run.tokens_in, run.tokens_out
    else:
        tokens_in = _int(usage.get("prompt_tokens"))
        tokens_out = _int(usage.get("completion_tokens"))
    if "cost" in record:
        cost = _number(record.get("cost"))
    elif run.usage_seen:
        cost = run.cost
    else:
        cost = _number(result.get("cost"))
    started, finished = _number(record.get("started_at")), _number(record.get("finished_at"))
    duration = (
        max(0.0, finished - started) if started is not None and finished is not None else None
    )
    parent = record.get("parent_id")
    return {
        "task_id": _text(record.get("task_id")),
        "agent": _text(record.get("agent")),
        "status": _text(status),
        "input": _text(record.get("input")),
        "output": output if isinstance(output, str) else None,
        "steps": steps,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": cost,
        "duration_s": duration,
        "parent_id": parent if isinstance(parent, str) else None,
    }


def _delta(a: float | None, b: float | None) -> float | None:
    """b minus a (whole numbers stay whole), None where either is unknown."""
    if a is None or b is None:
        return None
    return b - a


def _merged(a: list[tuple[int, str]], b: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Both runs' row keys, each once, by step, kind, then as the runs had them (a's
    order; a key only b has goes after the key b had before it)."""
    merged = list(a)
    seen = set(a)
    after: tuple[int, str] | None = None
    for key in b:
        if key in seen:
            after = key
            continue
        merged.insert(merged.index(after) + 1 if after is not None else 0, key)
        seen.add(key)
        after = key

    def rank(key: tuple[int, str]) -> tuple[float, int]:
        step, name = key
        kind = name.split(":", 1)[0]
        return (float("inf") if step < 0 else step, _ORDER.get(kind, 1))

    position = {key: i for i, key in enumerate(merged)}
    return sorted(merged, key=lambda k: (*rank(k), position[k]))


def _row(key: tuple[int, str], a: _Cell | None, b: _Cell | None) -> CompareRow:
    step = key[0]
    if step < 0:  # the answer or the end: the later step of the two
        step = max(c.step for c in (a, b) if c is not None)
    diffs: dict[str, list[DiffSegment]] = {}
    same = (
        a is not None
        and b is not None
        and (a.kind, a.tool, a.is_error) == (b.kind, b.tool, b.is_error)
    )
    if a is not None and b is not None:
        for name in ("text", "arguments", "observation"):
            if name not in a.fields and name not in b.fields:
                continue
            left, right = a.fields.get(name, ""), b.fields.get(name, "")
            if left != right:
                same = False
                diffs[name] = diff_segments(_shown(left), _shown(right))
    return {
        "step": step,
        "key": key[1],
        "a": a.wire() if a is not None else None,
        "b": b.wire() if b is not None else None,
        "same": same,
        "diffs": diffs,
    }


def compare_runs(
    record_a: dict[str, Any],
    messages_a: Iterable[dict[str, Any]],
    record_b: dict[str, Any],
    messages_b: Iterable[dict[str, Any]],
) -> Comparison:
    """Runs a and b compared (``protocol.Comparison``): both sides' totals, their steps
    aligned as rows, and ``deltas``, b minus a (None where either is unknown).

    ``record_*`` is a task's record (``Task.to_dict()``, ``GET tasks/{id}``: missing
    fields are read off the log, or left unknown); ``messages_*`` its log in order.
    """
    run_a, run_b = _read(messages_a), _read(messages_b)
    side_a, side_b = _side(record_a, run_a), _side(record_b, run_b)
    rows = [
        _row(key, run_a.cells.get(key), run_b.cells.get(key))
        for key in _merged(run_a.order, run_b.order)
    ]
    deltas: dict[str, float | None] = {
        "steps": _delta(side_a["steps"], side_b["steps"]),
        "tokens_in": _delta(side_a["tokens_in"], side_b["tokens_in"]),
        "tokens_out": _delta(side_a["tokens_out"], side_b["tokens_out"]),
        "cost": _delta(side_a["cost"], side_b["cost"]),
        "duration_s": _delta(side_a["duration_s"], side_b["duration_s"]),
    }
    comparison: Comparison = {"a": side_a, "b": side_b, "rows": rows, "deltas": deltas}
    return cast(Comparison, protocol.strict_json(comparison))
