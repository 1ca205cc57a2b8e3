"""The static HTML copy of a comparison of two runs: what GitHub, nbviewer and nbconvert
show of ``compare(a, b)``.

Self-contained (inline styles, no scripts), every value escaped, bidirectional control
characters shown as markers (⟨U+202E⟩) as in the task's static copy. The two runs side
by side: their totals and the differences (b minus a), then each aligned row, the
differing parts of texts, arguments and observations highlighted (``<del>`` in run a,
``<ins>`` in run b, so they read as changes even where styles are stripped).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from .static_html import reveal_bidi

__all__ = ["render_compare_html"]

_BOX = (
    "font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px;"
    "border:1px solid rgba(127,127,127,.35);border-radius:6px;padding:8px 10px;margin:2px 0"
)
_TABLE = "border-collapse:collapse;width:100%;table-layout:fixed;margin:6px 0"
_TD = "border:1px solid rgba(127,127,127,.25);padding:4px 6px;vertical-align:top;"
_PRE = (
    "white-space:pre-wrap;overflow-wrap:anywhere;margin:2px 0;padding:4px 6px;"
    "background:rgba(127,127,127,.1);border-radius:3px;font-size:12px;font-family:monospace"
)
_MUTED = "color:#6e7781"
_DEL = "background:rgba(211,47,47,.22);text-decoration:none;border-radius:2px"
_INS = "background:rgba(46,125,50,.25);text-decoration:none;border-radius:2px"
_SAME_ROW = "background:rgba(127,127,127,.04);"
_DIFF_ROW = "background:rgba(255,193,7,.07);"
_COLLAPSE_CHARS = 600
_KIND_LABELS = {"thought": "Thought", "answer": "Answer", "end": "End"}


def _esc(text: str) -> str:
    return html.escape(reveal_bidi(text))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _segments(segments: list[dict[str, Any]], side: str) -> str:
    """One side of a diff: ``equal`` and, for a, ``delete`` (for b, ``insert``) marked."""
    changed = "delete" if side == "a" else "insert"
    tag, style = ("del", _DEL) if side == "a" else ("ins", _INS)
    out = []
    for segment in segments:
        op, text = segment.get("op"), _text(segment.get("text"))
        if op == "equal":
            out.append(_esc(text))
        elif op == changed:
            out.append(f"<{tag} style='{style}'>{_esc(text)}</{tag}>")
    return "".join(out)


def _block(text: str, diff: list[dict[str, Any]] | None, side: str, pre: bool) -> str:
    body = _segments(diff, side) if diff is not None else _esc(text)
    style = _PRE if pre else "white-space:pre-wrap;overflow-wrap:anywhere;margin:2px 0"
    inner = f"<div style='{style}'>{body}</div>"
    if diff is None and (len(text) > _COLLAPSE_CHARS or text.count("\n") > 12):
        summary = f"<summary style='{_MUTED}'>{len(text):,} characters</summary>"
        return f"<details>{summary}{inner}</details>"
    return inner


def _cell(cell: dict[str, Any] | None, diffs: dict[str, Any], side: str) -> str:
    if cell is None:
        return f"<span style='{_MUTED};font-style:italic'>not in this run</span>"
    kind = str(cell.get("kind") or "")
    parts: list[str] = []
    if cell.get("copied"):
        parts.append(f"<div style='{_MUTED};font-size:11px'>copied from the parent run</div>")
    if kind == "tool":
        parts.append(
            f"<div><span style='{_MUTED}'>Tool</span> <code><b>{_esc(_text(cell.get('tool')))}"
            "</b></code></div>"
        )
        if "arguments" in cell:
            parts.append(_block(_text(cell["arguments"]), diffs.get("arguments"), side, True))
        if "observation" in cell:
            label = "Tool error" if cell.get("is_error") else "Result"
            color = ";color:#d32f2f" if cell.get("is_error") else ""
            parts.append(f"<div style='{_MUTED}{color}'>{label}</div>")
            parts.append(_block(_text(cell["observation"]), diffs.get("observation"), side, True))
        else:
            parts.append(f"<div style='{_MUTED};font-style:italic'>no result</div>")
    else:
        label = _KIND_LABELS.get(kind, kind.capitalize())
        if kind == "end":
            label = "Error" if cell.get("is_error") else "Ended"
        color = ";color:#d32f2f" if kind == "end" else ""
        parts.append(f"<div style='{_MUTED}{color}'>{_esc(label)}</div>")
        parts.append(_block(_text(cell.get("text")), diffs.get("text"), side, False))
    return "".join(parts)


def _row_label(row: dict[str, Any]) -> str:
    key = str(row.get("key") or "")
    kind, _, rest = key.partition(":")
    if kind == "tool":
        name, _, number = rest.rpartition(":")
        what = f"{_esc(name)} #{_esc(number)}"
    else:
        what = _esc(_KIND_LABELS.get(kind, kind))
    step = row.get("step")
    same = (
        f"<div style='{_MUTED};font-size:11px'>same</div>"
        if row.get("same")
        else "<div style='color:#b26a00;font-size:11px'>differs</div>"
    )
    return f"<b>Step {_esc(str(step))}</b><div>{what}</div>{same}"


def _money(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "unknown"
    sign = "-" if value < 0 else ""
    amount = abs(float(value))
    return f"{sign}${amount:.6f}" if amount < 0.01 else f"{sign}${amount:.4f}"


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "unknown"
    return f"{float(value):.1f} s"


def _count(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "unknown"
    return f"{value:,.0f}"


def _signed(value: Any, show: Callable[[Any], str]) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "unknown"
    if value == 0:
        return "same"
    return ("+" if value > 0 else "") + show(value)


def _side_head(side: dict[str, Any], name: str) -> str:
    return (
        f"<b>Run {name}</b> · <b>{_esc(_text(side.get('agent')))}</b> · "
        f"{_esc(_text(side.get('status')))}<div style='{_MUTED};font-size:11px'>"
        f"task {_esc(_text(side.get('task_id')))}</div>"
    )


def render_compare_html(comparison: dict[str, Any]) -> str:
    """A self-contained HTML rendering of a ``protocol.Comparison``."""
    a, b = comparison.get("a") or {}, comparison.get("b") or {}
    rows = [r for r in comparison.get("rows") or [] if isinstance(r, dict)]
    deltas = comparison.get("deltas") or {}
    differing = sum(1 for r in rows if not r.get("same"))
    td = f"style='{_TD}'"
    out = [
        f"<div class='agentkit-compare-static' data-task-a='{_esc(_text(a.get('task_id')))}' "
        f"data-task-b='{_esc(_text(b.get('task_id')))}' style='{_BOX}'>",
        f"<div><b>Two runs compared</b> · <span style='{_MUTED}'>{len(rows)} row"
        f"{'s' if len(rows) != 1 else ''}, {differing} differ"
        f"{'s' if differing == 1 else ''}</span></div>",
    ]
    if b.get("parent_id") and b.get("parent_id") == a.get("task_id"):
        out.append(f"<div style='{_MUTED}'>Run b is a fork of run a.</div>")
    elif a.get("parent_id") and a.get("parent_id") == b.get("task_id"):
        out.append(f"<div style='{_MUTED}'>Run a is a fork of run b.</div>")
    out.append(f"<table style='{_TABLE}'><colgroup><col style='width:8em'><col><col>")
    out.append("<col style='width:7em'></colgroup>")
    out.append(
        f"<tr><th {td}></th><th {td}>{_side_head(a, 'a')}</th><th {td}>{_side_head(b, 'b')}"
        f"</th><th {td}>b − a</th></tr>"
    )
    for label, key in (("Input", "input"), ("Output", "output")):
        left, right = _text(a.get(key)), _text(b.get(key))
        mark = "same" if left == right else "differs"
        out.append(
            f"<tr><td {td}><b>{label}</b></td><td {td}>{_block(left, None, 'a', False)}</td>"
            f"<td {td}>{_block(right, None, 'b', False)}</td>"
            f"<td {td}><span style='{_MUTED}'>{mark}</span></td></tr>"
        )
    figures: list[tuple[str, str, Callable[[Any], str]]] = [
        ("Steps", "steps", _count),
        ("Tokens in", "tokens_in", _count),
        ("Tokens out", "tokens_out", _count),
        ("Cost", "cost", _money),
        ("Duration", "duration_s", _seconds),
    ]
    for label, key, show in figures:
        out.append(
            f"<tr><td {td}><b>{label}</b></td><td {td}>{_esc(show(a.get(key)))}</td>"
            f"<td {td}>{_esc(show(b.get(key)))}</td>"
            f"<td {td}>{_esc(_signed(deltas.get(key), show))}</td></tr>"
        )
    out.append("</table>")
    if rows:
        out.append(f"<table style='{_TABLE}'><colgroup><col style='width:8em'><col><col>")
        out.append("</colgroup>")
        for row in rows:
            found = row.get("diffs")
            diffs: dict[str, Any] = found if isinstance(found, dict) else {}
            shade = _SAME_ROW if row.get("same") else _DIFF_ROW
            cells = "".join(
                f"<td style='{_TD}{shade}'>{_cell(row.get(side), diffs, side)}</td>"
                for side in ("a", "b")
            )
            out.append(
                f"<tr data-key='{_esc(_text(row.get('key')))}'>"
                f"<td style='{_TD}{shade}'>{_row_label(row)}</td>{cells}</tr>"
            )
        out.append("</table>")
    else:
        out.append(f"<div style='{_MUTED}'>Neither run has a step yet.</div>")
    out.append("</div>")
    return "".join(out)
