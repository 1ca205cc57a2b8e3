"""The static HTML copy of a task: what GitHub, nbviewer and nbconvert show.

Self-contained (inline styles, no scripts), every value escaped. It is rendered
from the same wire messages as the live view, so it shows the same steps, the
final status (``interrupted`` included) and its reason.
"""

from __future__ import annotations

import html
import json
from typing import Any

from ..protocol import TaskStatus, is_final

_BOX = (
    "font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px;"
    "border:1px solid rgba(127,127,127,.35);border-radius:6px;padding:8px 10px;margin:2px 0"
)
_PRE = (
    "white-space:pre-wrap;overflow-wrap:anywhere;margin:2px 0;padding:4px 6px;"
    "background:rgba(127,127,127,.1);border-radius:3px;font-size:12px;"
)
_MUTED = "color:#6e7781"
_COLLAPSE_CHARS = 600
# How a run that ended without an answer says why (a cancel says so in its own step).
_ENDED_WITH_REASON = {
    TaskStatus.FAILED.value: ("Failed", "#d32f2f"),
    TaskStatus.INTERRUPTED.value: ("Interrupted", "#e65100"),
}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def render_static_html(task: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """A self-contained HTML rendering of a task's steps (for GitHub, nbviewer)."""
    esc = html.escape
    recorded = task.get("result")
    result: dict[str, Any] = dict(recorded) if isinstance(recorded, dict) else {}
    status = str(result.get("status") or task.get("status") or "")
    steps: dict[int, list[str]] = {}
    drafts: dict[int, str] = {}
    max_step = 0
    for message in messages:
        if message.get("type") == "result":
            result = dict(message.get("data") or {})
            continue
        event = message.get("data") or {}
        step = int(event.get("step") or 0)
        max_step = max(max_step, step)
        data = event.get("data") or {}
        kind = event.get("event_type")
        parts = steps.setdefault(step, [])
        if kind == "token":
            drafts[step] = drafts.get(step, "") + _text(data.get("delta"))
        elif kind == "thought":
            drafts.pop(step, None)
            parts.append(f"<div style='white-space:pre-wrap'>{esc(_text(data.get('text')))}</div>")
        elif kind == "tool_call":
            parts.append(
                f"<div><span style='{_MUTED}'>Tool</span> <code><b>{esc(_text(data.get('name')))}"
                f"</b></code><pre style='{_PRE}'>{esc(_text(data.get('arguments')))}</pre></div>"
            )
        elif kind == "observation":
            output = _text(data.get("output"))
            label = "Tool error" if data.get("is_error") else "Result"
            color = "color:#d32f2f;" if data.get("is_error") else ""
            pre = f"<pre style='{_PRE}{color}'>{esc(output)}</pre>"
            if len(output) > _COLLAPSE_CHARS or output.count("\n") > 12:
                pre = (
                    f"<details><summary>{label} ({len(output)} characters)</summary>{pre}</details>"
                )
            else:
                pre = f"<span style='{_MUTED}'>{label}</span>{pre}"
            parts.append(f"<div>{pre}</div>")
        elif kind == "final_answer":
            drafts.pop(step, None)
        elif kind in ("error", "cancelled"):
            color = "#d32f2f" if kind == "error" else "#e65100"
            label = "Error" if kind == "error" else "Cancelled"
            parts.append(
                f"<div style='color:{color}'><b>{label}:</b> {esc(_text(data.get('message')))}"
                "</div>"
            )
    for step, draft in drafts.items():
        if draft:
            steps.setdefault(step, []).append(
                f"<div style='white-space:pre-wrap;{_MUTED}'>{esc(draft)} …</div>"
            )

    tokens = result.get("total_tokens")
    meta = [f"{max_step} step{'s' if max_step != 1 else ''}"]
    if isinstance(tokens, int) and tokens:
        meta.append(f"{tokens:,} tokens")
    started, finished = task.get("started_at"), task.get("finished_at")
    if isinstance(started, int | float) and isinstance(finished, int | float):
        meta.append(_duration(max(0.0, finished - started)))
    out = [
        f"<div class='agentkit-static' data-task-id='{esc(str(task.get('task_id', '')))}' "
        f"style='{_BOX}'>",
        f"<div><b>Agent {esc(str(task.get('agent', '')))}</b> · <b>{esc(status)}</b> · "
        f"<span style='{_MUTED}'>{esc(' · '.join(meta))}</span></div>",
    ]
    if task.get("input"):
        out.append(f"<div><span style='{_MUTED}'>Input:</span> {esc(str(task['input']))}</div>")
    if steps:
        out.append("<ol style='margin:6px 0;padding-left:1.6em'>")
        for step in sorted(steps):
            if steps[step]:
                out.append(f"<li value='{step}' style='margin:4px 0'>{''.join(steps[step])}</li>")
        out.append("</ol>")
    if result.get("output") is not None and result.get("status") == "succeeded":
        out.append(
            "<div style='border-top:1px solid rgba(127,127,127,.35);padding-top:6px'>"
            f"<b>Answer:</b> <span style='white-space:pre-wrap'>{esc(_text(result['output']))}"
            "</span></div>"
        )
    elif result.get("status") in _ENDED_WITH_REASON:
        label, color = _ENDED_WITH_REASON[str(result["status"])]
        error = result.get("error")
        reason = error.get("message") if isinstance(error, dict) else error or result.get("reason")
        out.append(f"<div style='color:{color}'><b>{label}:</b> {esc(_text(reason))}</div>")
    if not is_final(status):
        out.append(
            f"<div style='{_MUTED};font-style:italic'>Running: this static copy is updated "
            "when the task ends. The live view needs JupyterLab with agentkit-jupyter.</div>"
        )
    out.append("</div>")
    return "".join(out)
