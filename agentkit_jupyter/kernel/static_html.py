"""The static HTML copy of a task: what GitHub, nbviewer and nbconvert show.

Self-contained (inline styles, no scripts), every value escaped. It is rendered
from the same wire messages as the live view, so it shows the same steps, the
final status (``interrupted`` included) and its reason. A step is one model turn,
as in the live view: the answer is the last step's, and is counted.

Thoughts and the answer are markdown, rendered as the live view renders them:
markdown-it-py with raw HTML off, then sanitized by nh3 (no script, event handler,
``javascript:`` link, frame, SVG or form survives), fenced code highlighted by
Pygments in inline styles. Bidirectional control characters (U+202E and friends),
which would reorder the text after them, are shown as markers such as ⟨U+202E⟩.
"""

from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from typing import Any

from ..protocol import RUN_LOG_MAX_CHARS, TRUNCATED_KEY, RunLogCut, TaskStatus, is_final

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
# A step's summary line quotes this much of its thought (or error).
_SUMMARY_CHARS = 120
# How a run that ended without an answer says why (a cancel says so in its own step).
_ENDED_WITH_REASON = {
    TaskStatus.FAILED.value: ("Failed", "#d32f2f"),
    TaskStatus.INTERRUPTED.value: ("Interrupted", "#e65100"),
}


_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MARKER = re.compile(r"⟨U\+[0-9A-F]{4}⟩")
_MARKER_STYLE = (
    "color:#d32f2f;background:rgba(211,47,47,.1);border-radius:3px;padding:0 2px;"
    "font-family:monospace"
)
# The HTML markdown may produce, and its attributes; everything else is removed.
_MD_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "code", "pre", "blockquote", "ul", "ol", "li", "a", "img", "table", "thead",
    "tbody", "tr", "th", "td", "span",
}  # fmt: skip
_MD_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "span": {"style"},
    "th": {"style"},
    "td": {"style"},
}
_MD_STYLE = {"color", "background-color", "font-weight", "font-style", "text-align"}
_MD_BLOCK_STYLES = {
    "<pre>": "<pre style='white-space:pre;overflow-x:auto;margin:4px 0;padding:4px 6px;"
    "background:rgba(127,127,127,.1);border-radius:3px;font-size:12px'>",
    "<table>": "<table style='border-collapse:collapse;margin:4px 0'>",
    "<th>": "<th style='border:1px solid rgba(127,127,127,.35);padding:2px 6px'>",
    "<td>": "<td style='border:1px solid rgba(127,127,127,.35);padding:2px 6px'>",
    "<p>": "<p style='margin:4px 0'>",
}
_CELL = "border:1px solid rgba(127,127,127,.35);padding:2px 6px;"
_MD_BLOCK_STYLES.update(
    {'<th style="': f'<th style="{_CELL}', '<td style="': f'<td style="{_CELL}'}
)
_MD_BLOCK = re.compile("|".join(re.escape(tag) for tag in _MD_BLOCK_STYLES))


def _marker(match: re.Match[str]) -> str:
    return f"⟨U+{ord(match.group()):04X}⟩"


def reveal_bidi(text: str) -> str:
    """The text with each bidirectional control character replaced by ⟨U+XXXX⟩."""
    return _BIDI.sub(_marker, text)


def _show_markers(escaped: str) -> str:
    return _MARKER.sub(
        lambda m: (
            f"<span style='{_MARKER_STYLE}' title='bidirectional control character'>"
            f"{m.group()}</span>"
        ),
        escaped,
    )


def _esc(text: str) -> str:
    """Escaped text, bidirectional controls shown as markers."""
    escaped = html.escape(text)
    return _show_markers(_BIDI.sub(_marker, escaped)) if _BIDI.search(text) else escaped


def _highlight(code: str, language: str, _attrs: Any) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    if not language:
        return ""
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        return ""
    return str(highlight(code, lexer, HtmlFormatter(nowrap=True, noclasses=True))).rstrip("\n")


@lru_cache(maxsize=1)
def _markdown_parser() -> Any:
    from markdown_it import MarkdownIt

    # Raw HTML off: any tag the model writes is shown as text.
    return MarkdownIt("commonmark", {"html": False, "highlight": _highlight}).enable(
        ["table", "strikethrough"]
    )


def render_markdown(text: str) -> str:
    """Untrusted markdown as sanitized HTML with inline styles only."""
    import nh3

    rendered = _markdown_parser().render(reveal_bidi(text))
    clean = nh3.clean(
        rendered,
        tags=_MD_TAGS,
        attributes=_MD_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        filter_style_properties=_MD_STYLE,
        link_rel="noopener noreferrer nofollow",
    )
    return _show_markers(_MD_BLOCK.sub(lambda m: _MD_BLOCK_STYLES[m.group()], clean)).strip()


def _md(text: str) -> str:
    return f"<div class='agentkit-md'>{render_markdown(text)}</div>"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _cut_note(data: Any) -> str:
    """What a message the server cut to ``max_event_bytes`` says in the static copy."""
    marker = data.get(TRUNCATED_KEY) if isinstance(data, dict) else None
    if not isinstance(marker, dict) or not isinstance(marker.get("fields"), dict):
        return ""
    fields = marker["fields"]
    said = []
    for name, cut in fields.items():
        if isinstance(cut, dict) and isinstance(cut.get("chars"), int):
            which = "" if name == "output" and len(fields) == 1 else f" ({name or 'all'})"
            said.append(f"showing {cut.get('shown', 0):,} of {cut['chars']:,} characters{which}")
    where = f" The whole text: {marker['href']} on the server." if marker.get("href") else ""
    return (
        f"<div style='{_MUTED};font-style:italic'>Shortened by the server: "
        f"{_esc('; '.join(said) or 'cut')}.{_esc(where)}</div>"
    )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


class _Streamed:
    """A call's streamed output and last progress, shown above its result."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.cut = False
        self.progress: dict[str, Any] | None = None

    def html(self) -> str:
        out = []
        if self.progress is not None:
            done, total = self.progress.get("progress"), self.progress.get("total")
            said = f"{_text(done)}" + (f" of {_text(total)}" if total is not None else "")
            message = _text(self.progress.get("message"))
            out.append(
                f"<div style='{_MUTED}'>Progress: {_esc(said)}"
                f"{' · ' + _esc(message) if message else ''}</div>"
            )
        text = "".join(self.text)
        if text:
            note = " (cut: it streamed more)" if self.cut else ""
            pre = f"<pre style='{_PRE}'>{_esc(text)}</pre>"
            out.append(f"<span style='{_MUTED}'>Output{note}</span>{pre}")
        return f"<div>{''.join(out)}</div>" if out else ""


def format_cost(dollars: float) -> str:
    """US dollars as the views show them: enough digits for a cheap call."""
    if dollars == 0:
        return "$0"
    if dollars < 0.01:
        return f"${dollars:.6f}".rstrip("0")
    return f"${dollars:,.4f}".rstrip("0").rstrip(".")


class _Step:
    """One model turn of the static copy: what its summary line says, and its body."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.kinds: list[str] = []
        self.tools: list[str] = []
        self.short = ""
        self.open = False  # an error or a cancel: shown unfolded

    def said(self, kind: str, short: str = "") -> None:
        if kind not in self.kinds:
            self.kinds.append(kind)
        if short and not self.short:
            line = " ".join(short.split())
            self.short = line if len(line) <= _SUMMARY_CHARS else line[:_SUMMARY_CHARS] + "…"

    def summary(self, step: int) -> str:
        text = f"<b>Step {step}</b>"
        kinds = list(self.kinds)
        if self.tools:
            calls = "Tool call" if len(self.tools) == 1 else "Tool calls"
            kinds.insert(1 if kinds[:1] == ["Thought"] else 0, calls)
        if kinds:
            text += f" · {_esc(' + '.join(kinds))}"
        if self.tools:
            text += " · " + ", ".join(f"<code>{_esc(name)}</code>" for name in self.tools)
        if self.short:
            text += f" · <span style='{_MUTED}'>{_esc(self.short)}</span>"
        return text


def _saved_log_note(cut: RunLogCut) -> str:
    first = max(cut["kept"] - cut["tail"], 0)
    cap = f"{RUN_LOG_MAX_CHARS // (1024 * 1024)} MiB"
    if cut["kept"] == 0:
        said = (
            f"The run log could not be saved in this notebook: not even its result fits in "
            f"{cap}, so agentkit_jupyter.load() skips this run."
        )
    else:
        kept = f"its first {first:,} events and its last {cut['tail']:,} (the last step and "
        kept += "the result)" if cut["tail"] > 1 else "the result)"
        said = (
            f"The run log saved in this notebook was cut to fit {cap}: of {cut['events']:,} "
            f"events it keeps {kept}, which agentkit_jupyter.load() imports."
        )
    return (
        f"<div style='{_MUTED};font-style:italic' data-agentkit-log-cut='true'>{_esc(said)} "
        "The steps shown here are the whole run.</div>"
    )


def render_static_html(
    task: dict[str, Any],
    messages: list[dict[str, Any]],
    *,
    saved_log_cut: RunLogCut | None = None,
) -> str:
    """A self-contained HTML rendering of a task's steps (for GitHub, nbviewer): a
    ``<details>`` per step, so every step unfolds without JavaScript.
    ``saved_log_cut``: the run log saved beside it was cut (said under the steps)."""
    esc = _esc
    recorded = task.get("result")
    result: dict[str, Any] = dict(recorded) if isinstance(recorded, dict) else {}
    status = str(result.get("status") or task.get("status") or "")
    turns: dict[int, _Step] = {}
    drafts: dict[int, str] = {}
    # A fork's steps copied from its parent (every event of the step copied).
    copied: dict[int, bool] = {}
    # What running calls streamed (tool_output, tool_progress), by call id.
    streamed: dict[str, _Streamed] = {}
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
        if kind == "usage":
            continue  # tokens and cost: in the header
        if kind in ("tool_output", "tool_progress"):
            live = streamed.get(str(data.get("call_id"))) or _Streamed()
            streamed[str(data.get("call_id"))] = live
            if kind == "tool_output":
                live.text.append(_text(data.get("text")))
                live.cut = live.cut or data.get("cut") is True
            else:
                live.progress = data
            continue
        copied[step] = copied.get(step, True) and event.get("copied") is True
        turn = turns.setdefault(step, _Step())
        parts = turn.parts
        if kind == "token":
            drafts[step] = drafts.get(step, "") + _text(data.get("delta"))
        elif kind == "thought":
            drafts.pop(step, None)
            turn.said("Thought", _text(data.get("text")))
            parts.append(_md(_text(data.get("text"))))
        elif kind == "tool_call":
            turn.tools.append(_text(data.get("name")))
            parts.append(
                f"<div><span style='{_MUTED}'>Tool</span> <code><b>{esc(_text(data.get('name')))}"
                f"</b></code><pre style='{_PRE}'>{esc(_text(data.get('arguments')))}</pre></div>"
            )
        elif kind == "observation":
            ran = streamed.pop(str(data.get("call_id")), None)
            if ran is not None:
                parts.append(ran.html())
            output = _text(data.get("output"))
            label = "Tool error" if data.get("is_error") else "Result"
            if data.get("is_error"):
                turn.said("Tool error")
            color = "color:#d32f2f;" if data.get("is_error") else ""
            pre = f"<pre style='{_PRE}{color}'>{esc(output)}</pre>"
            size = f" ({len(output):,} characters)" if len(output) > _COLLAPSE_CHARS else ""
            parts.append(f"<div><span style='{_MUTED}'>{label}{size}</span>{pre}</div>")
        elif kind == "final_answer":
            drafts.pop(step, None)
        elif kind == "approval_requested":
            turn.said("Approval")
            parts.append(
                f"<div style='{_MUTED}'>Waited for approval: <code>"
                f"{esc(_text(data.get('tool')))}</code></div>"
            )
        elif kind == "approval_decided":
            parts.append(f"<div>{_decision(data)}</div>")
        elif kind in ("paused", "resumed"):
            turn.said(kind.capitalize())
            who = _text(data.get("by")) or "someone"
            why = _text(data.get("reason"))
            parts.append(
                f"<div style='{_MUTED}'>{'Paused' if kind == 'paused' else 'Resumed'} by "
                f"{esc(who)}{': ' + esc(why) if why else ''}</div>"
            )
        elif kind in ("error", "cancelled"):
            color = "#d32f2f" if kind == "error" else "#e65100"
            label = "Error" if kind == "error" else "Cancelled"
            turn.said(label, _text(data.get("message")))
            turn.open = True
            parts.append(
                f"<div style='color:{color}'><b>{label}:</b> {esc(_text(data.get('message')))}"
                "</div>"
            )
        if kind != "final_answer" and (cut := _cut_note(data)):
            parts.append(cut)  # (the answer's is said under the answer)
    for step, draft in drafts.items():
        if draft:
            turn = turns.setdefault(step, _Step())
            turn.said("Writing", draft)
            turn.open = True
            turn.parts.append(f"<div style='white-space:pre-wrap;{_MUTED}'>{esc(draft)} …</div>")

    tokens = result.get("total_tokens")
    total_steps = result.get("total_steps")
    if isinstance(total_steps, int) and total_steps > max_step:
        max_step = total_steps
    meta = [f"{max_step} step{'s' if max_step != 1 else ''}"]
    usage = result.get("usage")
    if isinstance(usage, dict) and (usage.get("prompt_tokens") or usage.get("completion_tokens")):
        meta.append(
            f"{int(usage.get('prompt_tokens') or 0):,} tokens in, "
            f"{int(usage.get('completion_tokens') or 0):,} out"
        )
    elif isinstance(tokens, int) and tokens:
        meta.append(f"{tokens:,} tokens")
    cost = result.get("cost", task.get("cost"))
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        meta.append(format_cost(float(cost)))
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
    if task.get("parent_id"):
        how = "Continues" if task.get("fork_kind") == "resume" else "Forked from"
        out.append(
            f"<div style='{_MUTED}'>{how} task <code>{esc(str(task['parent_id']))}</code> "
            f"at event {esc(str(task.get('forked_at_seq')))}.</div>"
        )
    imported = task.get("imported_from")
    if isinstance(imported, dict):
        where = f" {imported['source']}" if imported.get("source") else " a notebook"
        out.append(
            f"<div style='{_MUTED}'>Imported from{esc(where)} (task "
            f"<code>{esc(str(imported.get('task_id', '')))}</code> there).</div>"
        )
    if any(turn.parts for turn in turns.values()):
        out.append("<ol style='margin:6px 0;padding-left:1.6em;list-style:none'>")
        for step in sorted(turns):
            turn = turns[step]
            if not turn.parts:
                continue
            opened = " open" if turn.open else ""
            body = f"<div style='padding-left:1em'>{''.join(turn.parts)}</div>"
            if copied.get(step):
                out.append(
                    f"<li value='{step}' style='margin:4px 0;opacity:.6' data-copied='true'>"
                    f"<details{opened}><summary>{turn.summary(step)} · <span style='{_MUTED};"
                    f"font-style:italic'>copied from the parent</span></summary>{body}</details>"
                    "</li>"
                )
            else:
                out.append(
                    f"<li value='{step}' style='margin:4px 0'><details{opened}><summary>"
                    f"{turn.summary(step)}</summary>{body}</details></li>"
                )
        out.append("</ol>")
    if result.get("output") is not None and result.get("status") == "succeeded":
        out.append(
            "<div style='border-top:1px solid rgba(127,127,127,.35);padding-top:6px'>"
            f"<b>Answer:</b> <span style='{_MUTED}'>step {max_step}</span>"
            f"{_md(_text(result['output']))}{_cut_note(result)}</div>"
        )
    elif result.get("status") in _ENDED_WITH_REASON:
        label, color = _ENDED_WITH_REASON[str(result["status"])]
        error = result.get("error")
        reason = error.get("message") if isinstance(error, dict) else error or result.get("reason")
        out.append(f"<div style='color:{color}'><b>{label}:</b> {esc(_text(reason))}</div>")
    if saved_log_cut is not None:
        out.append(_saved_log_note(saved_log_cut))
    if not is_final(status):
        out.append(
            f"<div style='{_MUTED};font-style:italic'>Running: this static copy is updated "
            "when the task ends. The live view needs JupyterLab with agentkit-jupyter.</div>"
        )
    out.append("</div>")
    return "".join(out)


_DECISIONS = {
    "approved": ("Approved", "#2e7d32"),
    "edited": ("Approved with edited arguments", "#2e7d32"),
    "rejected": ("Rejected", "#d32f2f"),
    "timed_out": ("Not approved in time", "#e65100"),
    "cancelled": ("Cancelled while waiting", "#e65100"),
}


def _decision(data: dict[str, Any]) -> str:
    """An ``approval_decided`` step: what was decided, by whom, why."""
    label, color = _DECISIONS.get(_text(data.get("decision")), ("Decided", "inherit"))
    text = f"<b style='color:{color}'>{label}</b>"
    if data.get("by"):
        text += f" by {_esc(_text(data.get('by')))}"
    if data.get("reason"):
        text += f": {_esc(_text(data.get('reason')))}"
    if data.get("decision") == "edited":
        text += f"<pre style='{_PRE}'>{_esc(_text(data.get('arguments')))}</pre>"
    return text
