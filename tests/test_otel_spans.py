"""tasks/spans.py on recorded logs: approvals and pauses as events, a budget stop, an
interrupted run, a kernel fork's link; and the OTLP header secrets."""

from __future__ import annotations

from typing import Any

import pytest

from agentkit_jupyter.tasks.spans import build_trace, root_span_id, trace_id_of
from agentkit_jupyter.tasks.telemetry import otel_secrets, parse_for_spans, traces_endpoint

T0 = 1_800_000_000.0


def _log(
    task_id: str, events: list[tuple[str, int, dict[str, Any], float]]
) -> list[dict[str, Any]]:
    return [
        {
            "type": "step",
            "seq": seq,
            "task_id": task_id,
            "data": {"event_type": kind, "step": step, "data": data, "timestamp": T0 + at},
        }
        for seq, (kind, step, data, at) in enumerate(events, 1)
    ]


def _usage(tokens_in: int, tokens_out: int, ms: float) -> dict[str, Any]:
    return {
        "model": "m",
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "cost": 0.001,
        "duration_ms": ms,
    }


def _record(task_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "agent": "a",
        "input": "do it",
        "status": status,
        "origin": "server",
        "created_at": T0,
        "started_at": T0,
        "finished_at": T0 + 10,
        "result": {"status": status, **extra.pop("result", {})},
        **extra,
    }


def test_approvals_and_pauses_are_events_at_their_times() -> None:
    messages = _log(
        "t1",
        [
            ("usage", 1, _usage(10, 5, 500), 1.0),
            ("tool_call", 1, {"call_id": "c1", "name": "delete", "arguments": {"n": 3}}, 1.0),
            ("approval_requested", 1, {"call_id": "c1", "tool": "delete", "policy": "tool"}, 1.1),
            ("paused", 1, {"by": "ana", "reason": "coffee"}, 2.0),
            ("resumed", 1, {"by": "ana", "reason": None, "steps": 2}, 3.0),
            (
                "approval_decided",
                1,
                {"call_id": "c1", "decision": "approved", "by": "ana", "reason": "ok"},
                4.0,
            ),
            (
                "observation",
                1,
                {"call_id": "c1", "name": "delete", "output": "3 gone", "is_error": False},
                4.5,
            ),
            ("usage", 2, _usage(20, 2, 300), 5.0),
            ("final_answer", 2, {"output": "done"}, 5.0),
        ],
    )
    trace = build_trace(_record("t1", "succeeded", cost=0.002), messages)
    root = trace.root
    assert [(e.name, e.time_ns) for e in root.events] == [
        ("agentkit.approval_requested", int((T0 + 1.1) * 1e9)),
        ("agentkit.paused", int((T0 + 2.0) * 1e9)),
        ("agentkit.resumed", int((T0 + 3.0) * 1e9)),
        ("agentkit.approval_decided", int((T0 + 4.0) * 1e9)),
    ]
    assert root.events[3].attributes == {
        "gen_ai.tool.call.id": "c1",
        "agentkit.approval.decision": "approved",
        "agentkit.approval.by": "ana",
    }
    assert root.events[2].attributes == {"agentkit.pause.by": "ana", "agentkit.resume.steps": 2}
    (tool,) = [s for s in trace.spans if s.name == "execute_tool delete"]
    assert [e.name for e in tool.events] == [
        "agentkit.approval_requested",
        "agentkit.approval_decided",
    ]
    assert tool.error is None
    assert root.attributes["gen_ai.usage.input_tokens"] == 30
    assert root.attributes["agentkit.usage.cost_usd"] == 0.002
    chats = [s for s in trace.spans if s.name == "chat m"]
    assert [c.end_ns - c.start_ns for c in chats] == [500_000_000, 300_000_000]
    # Reasons are content: in only when asked for.
    assert "coffee" not in repr(trace)
    with_content = build_trace(_record("t1", "succeeded"), messages, capture_content=True)
    assert with_content.root.events[1].attributes["agentkit.pause.reason"] == "coffee"


def test_a_budget_stop_mid_call_fails_the_call_and_the_task_as_cancelled() -> None:
    messages = _log(
        "t2",
        [
            ("usage", 1, _usage(10, 5, 100), 1.0),
            ("token", 2, {"delta": "a"}, 1.5),
            ("token", 2, {"delta": "b"}, 1.6),
            (
                "cancelled",
                2,
                {"reason": "budget", "code": "budget_exceeded", "interrupted": "llm_call"},
                1.7,
            ),
        ],
    )
    record = _record("t2", "cancelled", result={"reason": "budget", "code": "budget_exceeded"})
    trace = build_trace(record, messages)
    assert trace.root.error == "cancelled: budget"
    assert trace.root.attributes["error.type"] == "cancelled"
    assert trace.root.attributes["agentkit.cancel.code"] == "budget_exceeded"
    cut = [s for s in trace.spans if s.attributes.get("agentkit.step") == 2]
    (call,) = cut
    assert call.kind == "client" and call.error == "cancelled: budget"
    assert call.start_ns == int((T0 + 1.5) * 1e9)  # from its first token


def test_an_interrupted_run_and_its_unfinished_call() -> None:
    messages = _log(
        "t3",
        [
            ("usage", 1, _usage(1, 1, 10), 1.0),
            ("tool_call", 1, {"call_id": "c1", "name": "slow", "arguments": {}}, 1.0),
        ],
    )
    error = {"code": "server_restarted", "message": "The server stopped while this task ran."}
    trace = build_trace(_record("t3", "interrupted", result={"error": error}), messages)
    assert trace.root.attributes["error.type"] == "interrupted"
    (tool,) = [s for s in trace.spans if s.name == "execute_tool slow"]
    assert tool.attributes["error.type"] == "interrupted"
    assert tool.end_ns == trace.root.end_ns


def test_a_continuation_links_to_its_parent_and_skips_copied_steps() -> None:
    messages = _log("t4", [("usage", 1, _usage(1, 1, 10), 1.0), ("final_answer", 1, {}, 1.0)])
    messages[0]["data"]["copied"] = True
    record = _record("t4", "succeeded", parent_id="t0", fork_kind="resume", forked_at_seq=7)
    trace = build_trace(record, messages)
    assert trace.root.links == [
        (trace_id_of("t0"), root_span_id("t0"), {"agentkit.link.type": "resume"})
    ]
    assert trace.root.attributes["agentkit.task.copied_steps"] == 1
    assert [s.name for s in trace.spans] == ["invoke_agent a"]
    # The same task gives the same ids on every export.
    assert build_trace(record, messages).root.span_id == trace.root.span_id


def test_only_the_first_streamed_piece_of_a_run_of_them_is_parsed() -> None:
    raw = [
        b'{"type":"step","seq":1,"task_id":"t","data":{"event_type":"token","step":1}}',
        b'{"type":"step","seq":2,"task_id":"t","data":{"event_type":"token","step":1}}',
        b'{"type":"step","seq":3,"task_id":"t","data":{"event_type":"usage","step":1}}',
        b'{"type":"step","seq":4,"task_id":"t","data":{"event_type":"tool_output","step":1}}',
        b'{"type":"step","seq":5,"task_id":"t","data":{"event_type":"tool_output","step":1}}',
        b'{"type":"result","seq":6,"task_id":"t","data":{"status":"succeeded"}}',
    ]
    assert [m["seq"] for m in parse_for_spans(raw)] == [1, 3, 4, 6]


def test_the_otlp_headers_are_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Basic%20cGs6c2stc2VjcmV0,x=1")
    found = otel_secrets({"x-api-key": "configured-key-123"})
    assert found == ["configured-key-123", "Basic cGs6c2stc2VjcmV0", "cGs6c2stc2VjcmV0"]
    assert traces_endpoint("http://h:4318/") == "http://h:4318/v1/traces"
    assert (
        traces_endpoint("http://h/api/public/otel/v1/traces")
        == "http://h/api/public/otel/v1/traces"
    )
