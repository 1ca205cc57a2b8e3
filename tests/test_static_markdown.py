"""The static HTML copy renders markdown as the live view does, sanitized and without
scripts, counts steps as the live view counts them (a step is a model turn), and
shows bidirectional control characters instead of obeying them (issues 20 and 21;
the browser checks are in tests/browser/test_reading.py)."""

from __future__ import annotations

import re
from typing import Any

from agentkit_jupyter.kernel.static_html import render_markdown, render_static_html, reveal_bidi


def _run(thought: str, answer: str) -> str:
    task = {"task_id": "t", "agent": "a", "status": "succeeded", "input": "q"}
    events: list[dict[str, Any]] = [
        {"event_type": "thought", "step": 1, "data": {"text": thought}},
        {"event_type": "tool_call", "step": 1, "data": {"call_id": "c", "name": "f"}},
        {"event_type": "observation", "step": 1, "data": {"call_id": "c", "output": "1"}},
        {"event_type": "thought", "step": 2, "data": {"text": "again"}},
        {"event_type": "tool_call", "step": 2, "data": {"call_id": "d", "name": "f"}},
        {"event_type": "observation", "step": 2, "data": {"call_id": "d", "output": "2"}},
        {"event_type": "token", "step": 3, "data": {"delta": answer}},
        {"event_type": "final_answer", "step": 3, "data": {"output": answer, "total_steps": 3}},
    ]
    messages = [{"type": "step", "seq": i + 1, "data": e} for i, e in enumerate(events)]
    messages.append({"type": "result", "seq": 9, "data": {"status": "succeeded", "output": answer}})
    return render_static_html(task, messages)


def test_markdown_is_rendered() -> None:
    html = render_markdown(
        "## Title\n\n**bold** and *em*\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |"
    )
    assert "<h2>Title</h2>" in html and "<strong>bold</strong>" in html and "<em>em</em>" in html
    assert html.count("<li>") == 2 and "<table" in html and "<td" in html


def test_code_is_highlighted_with_inline_styles() -> None:
    html = render_markdown("```python\ndef f(x):\n    return x  # c\n```")
    assert "<pre style=" in html and "<code>" in html
    assert re.search(r"<span style=\"color:#[0-9A-Fa-f]+", html)
    assert "class=" not in html


def test_nothing_can_run() -> None:
    attacks = (
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
        "[x](javascript:alert(1))\n\n<svg onload=alert(1)></svg>\n\n<iframe src=x></iframe>\n\n"
        '[ok](https://example.com/ "t")\n\n![img](javascript:alert(1))'
    )
    html = render_markdown(attacks)
    assert not re.search(r"<(script|svg|iframe|img)\b", html)
    assert not re.search(r"<[a-z]+[^<>]*\son\w+=", html)
    assert not re.search(r"<[a-z]+[^<>]*(href|src)=[\"']?javascript", html)
    assert '<a href="https://example.com/" title="t" rel="noopener noreferrer nofollow">' in html
    assert "&lt;script&gt;" in html  # the model's tag, as text


def test_steps_are_model_turns_and_the_answer_is_the_last() -> None:
    html = _run("I **think**", "## Done")
    assert "3 steps" in html
    assert "<li value='1'" in html and "<li value='2'" in html and "<li value='3'" not in html
    assert "<b>Answer:</b>" in html and "step 3" in html
    assert "<strong>think</strong>" in html and "<h2>Done</h2>" in html


def test_bidi_controls_are_shown_not_obeyed() -> None:
    name = "invoice_\u202egnp.exe"
    assert reveal_bidi(name) == "invoice_⟨U+202E⟩gnp.exe"
    assert reveal_bidi("a\u2066b\u2069c\u200f") == "a⟨U+2066⟩b⟨U+2069⟩c⟨U+200F⟩"
    html = _run(f"Opening {name}", f"Saved as {name}")
    task = {"task_id": "t", "agent": "a", "status": "succeeded", "input": name}
    event = {"event_type": "observation", "step": 1, "data": {"call_id": "c", "output": name}}
    html += render_static_html(task, [{"type": "step", "seq": 1, "data": event}])
    assert "\u202e" not in html
    # thought (and its step's summary line), answer, input, observation
    assert html.count("⟨U+202E⟩") == 5
