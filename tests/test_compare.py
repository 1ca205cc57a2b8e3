"""``tasks.compare.compare_runs``: two runs' logs aligned row by row, what differs as
difflib segments, and the deltas b minus a. Pure: built logs, no server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from agentkit_jupyter import protocol
from agentkit_jupyter.tasks.compare import MAX_CELL_CHARS, compare_runs, diff_segments


class Log:
    """A task's log as the hub writes it (wire messages, seq from 1)."""

    def __init__(self, task_id: str = "t") -> None:
        self.task_id = task_id
        self.messages: list[dict[str, Any]] = []
        self.call = 0

    def step(self, kind: str, step: int, copied: bool = False, **data: Any) -> Log:
        event: dict[str, Any] = {
            "event_type": kind,
            "step": step,
            "data": data,
            "timestamp": time.time(),
        }
        if copied:
            event["copied"] = True
        seq = len(self.messages) + 1
        self.messages.append({"type": "step", "seq": seq, "task_id": self.task_id, "data": event})
        return self

    def thought(self, step: int, text: str, **kw: Any) -> Log:
        self.step("token", step, delta=text[:3])  # tokens are never compared
        return self.step("thought", step, text=text, **kw)

    def usage(self, step: int, tokens_in: int, tokens_out: int, cost: float | None) -> Log:
        return self.step(
            "usage",
            step,
            model="m",
            prompt_tokens=tokens_in,
            completion_tokens=tokens_out,
            cost=cost,
            total_prompt_tokens=0,
            total_completion_tokens=0,
            total_cost=None,
            duration_ms=1.0,
        )

    def tool(
        self, step: int, name: str, arguments: Any, output: str, is_error: bool = False, **kw: Any
    ) -> Log:
        self.call += 1
        call_id = f"call_{self.call}"
        self.step("tool_call", step, call_id=call_id, name=name, arguments=arguments, **kw)
        return self.step(
            "observation",
            step,
            call_id=call_id,
            name=name,
            output=output,
            is_error=is_error,
            duration_ms=0.5,
            **kw,
        )

    def answer(self, step: int, output: str) -> Log:
        self.step("final_answer", step, output=output, total_steps=step, total_tokens=0)
        return self.result(status="succeeded", output=output, total_steps=step)

    def result(self, **data: Any) -> Log:
        seq = len(self.messages) + 1
        self.messages.append(
            {"type": "result", "seq": seq, "task_id": self.task_id, "data": {**data}}
        )
        return self


def record(task_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "agent": "shopper",
        "input": "find a lamp",
        "status": "succeeded",
        "started_at": 100.0,
        "finished_at": 104.0,
        "result": None,
        "parent_id": None,
        **fields,
    }


def lamp_run(task_id: str, observation: str = "3 results", query: str = "lamp") -> Log:
    log = Log(task_id)
    log.usage(1, 10, 5, 0.001).thought(1, "Let me search.")
    log.tool(1, "search", {"query": query, "page": 1}, observation)
    log.usage(2, 20, 6, 0.002).thought(2, "Fetching the first.")
    log.tool(2, "fetch", {"item": 1}, "item 1: a blue lamp")
    log.usage(3, 30, 7, 0.003).answer(3, "The first lamp is blue.")
    return log


def compared(a: Log, b: Log, **record_b: Any) -> protocol.Comparison:
    return compare_runs(record(a.task_id), a.messages, record(b.task_id, **record_b), b.messages)


def row(comparison: protocol.Comparison, step: int, key: str) -> protocol.CompareRow:
    found = [r for r in comparison["rows"] if r["step"] == step and r["key"] == key]
    assert len(found) == 1, [(r["step"], r["key"]) for r in comparison["rows"]]
    return found[0]


def side_text(segments: list[protocol.DiffSegment], side: str) -> str:
    keep = {"equal", "delete" if side == "a" else "insert"}
    return "".join(s["text"] for s in segments if s["op"] in keep)


# -- an identical pair -----------------------------------------------------------------


def test_an_identical_pair_is_the_same_everywhere() -> None:
    comparison = compared(lamp_run("a"), lamp_run("b"))
    keys = [(r["step"], r["key"]) for r in comparison["rows"]]
    assert keys == [
        (1, "thought"),
        (1, "tool:search:1"),
        (2, "thought"),
        (2, "tool:fetch:1"),
        (3, "answer"),
    ]
    assert all(r["same"] and r["diffs"] == {} for r in comparison["rows"])
    search = row(comparison, 1, "tool:search:1")
    assert search["a"] == search["b"]
    assert search["a"] is not None
    assert search["a"]["tool"] == "search"
    assert search["a"]["arguments"] == {"query": "lamp", "page": 1}
    assert search["a"]["observation"] == "3 results"
    assert search["a"]["is_error"] is False
    assert search["a"]["seq"] == 4  # the tool call's (after usage, token, thought)
    assert row(comparison, 3, "answer")["a"] == {
        "kind": "answer",
        "seq": 12,
        "text": "The first lamp is blue.",
    }
    assert comparison["deltas"] == {
        "steps": 0.0,
        "tokens_in": 0.0,
        "tokens_out": 0.0,
        "cost": 0.0,
        "duration_s": 0.0,
    }
    # Strict JSON, the way the route and the widget send it.
    assert json.loads(protocol.dumps(comparison)) == comparison


def test_the_sides_read_the_log_when_the_record_lacks_the_totals() -> None:
    comparison = compared(lamp_run("a"), lamp_run("b"))
    side = comparison["a"]
    assert side["task_id"] == "a" and side["agent"] == "shopper"
    assert side["status"] == "succeeded" and side["input"] == "find a lamp"
    assert side["output"] == "The first lamp is blue."
    assert side["steps"] == 3
    assert (side["tokens_in"], side["tokens_out"]) == (60, 18)
    assert side["cost"] == pytest.approx(0.006)
    assert side["duration_s"] == 4.0
    assert side["parent_id"] is None


def test_the_record_wins_over_the_log() -> None:
    a, b = lamp_run("a"), lamp_run("b")
    comparison = compare_runs(
        record("a", tokens_in=600, tokens_out=180, cost=0.5),
        a.messages,
        record("b", tokens_in=100, tokens_out=200, cost=0.25, parent_id="a"),
        b.messages,
    )
    assert (comparison["a"]["tokens_in"], comparison["b"]["tokens_in"]) == (600, 100)
    assert comparison["b"]["parent_id"] == "a"
    assert comparison["deltas"]["tokens_in"] == -500
    assert comparison["deltas"]["tokens_out"] == 20
    assert comparison["deltas"]["cost"] == pytest.approx(-0.25)


def test_a_forks_copied_steps_count_as_the_same_and_not_as_its_usage() -> None:
    parent = lamp_run("a")
    fork = Log("b")
    for message in parent.messages:
        if message["type"] == "step":
            event = message["data"]
            fork.step(event["event_type"], event["step"], copied=True, **event["data"])
    fork.result(status="succeeded", output="The first lamp is blue.", total_steps=3)
    comparison = compared(parent, fork)
    assert all(r["same"] for r in comparison["rows"])
    search = row(comparison, 1, "tool:search:1")
    assert search["b"] is not None and search["b"].get("copied") is True
    assert search["a"] is not None and "copied" not in search["a"]
    # No model call of its own: nothing used, and no price was unknown.
    assert (comparison["b"]["tokens_in"], comparison["b"]["cost"]) == (0, 0.0)


# -- what differs ----------------------------------------------------------------------


def test_a_changed_observation_is_highlighted_and_the_rest_is_the_same() -> None:
    comparison = compared(lamp_run("a"), lamp_run("b", observation="no results at all"))
    search = row(comparison, 1, "tool:search:1")
    assert search["same"] is False
    assert set(search["diffs"]) == {"observation"}
    segments = search["diffs"]["observation"]
    assert side_text(segments, "a") == "3 results"
    assert side_text(segments, "b") == "no results at all"
    assert {"op": "equal", "text": " results"} in segments
    assert [s["op"] for s in segments if s["op"] != "equal"] == ["delete", "insert", "insert"]
    assert search["a"] is not None and search["a"]["observation"] == "3 results"
    assert search["b"] is not None and search["b"]["observation"] == "no results at all"
    others = [r for r in comparison["rows"] if r is not search]
    assert all(r["same"] and not r["diffs"] for r in others)


def test_changed_arguments_are_compared_as_json_with_sorted_keys() -> None:
    a, b = lamp_run("a"), lamp_run("b", query="desk lamp")
    # The same arguments in another key order are the same arguments.
    for message in b.messages:
        data = message["data"].get("data") if message["type"] == "step" else None
        if data and data.get("name") == "fetch" and "arguments" in data:
            data["arguments"] = {"item": 1}
    comparison = compared(a, b)
    search = row(comparison, 1, "tool:search:1")
    assert search["same"] is False and set(search["diffs"]) == {"arguments"}
    segments = search["diffs"]["arguments"]
    expected_a = json.dumps({"page": 1, "query": "lamp"}, sort_keys=True, indent=2)
    expected_b = json.dumps({"page": 1, "query": "desk lamp"}, sort_keys=True, indent=2)
    assert side_text(segments, "a") == expected_a
    assert side_text(segments, "b") == expected_b
    assert [s for s in segments if s["op"] != "equal"] == [{"op": "insert", "text": "desk "}]
    assert search["b"] is not None and search["b"]["arguments"] == {"query": "desk lamp", "page": 1}
    assert row(comparison, 2, "tool:fetch:1")["same"] is True


def test_key_order_alone_is_no_difference() -> None:
    a, b = Log("a"), Log("b")
    a.tool(1, "search", {"query": "lamp", "page": 1}, "ok").answer(2, "done")
    b.tool(1, "search", {"page": 1, "query": "lamp"}, "ok").answer(2, "done")
    comparison = compared(a, b)
    assert all(r["same"] for r in comparison["rows"])


def test_the_nth_call_of_a_tool_faces_the_nth_call_of_that_tool() -> None:
    a, b = Log("a"), Log("b")
    a.thought(3, "Two searches and a fetch.")
    a.tool(3, "search", {"q": "red"}, "red: 1")
    a.tool(3, "fetch", {"item": 1}, "item 1")
    a.tool(3, "search", {"q": "blue"}, "blue: 2")
    a.answer(4, "done")
    # Run b makes the calls in another order, and its 2nd search differs.
    b.thought(3, "Two searches and a fetch.")
    b.tool(3, "search", {"q": "red"}, "red: 1")
    b.tool(3, "search", {"q": "green"}, "green: 0")
    b.tool(3, "fetch", {"item": 1}, "item 1")
    b.answer(4, "done")
    comparison = compared(a, b)
    assert [r["key"] for r in comparison["rows"] if r["step"] == 3] == [
        "thought",
        "tool:search:1",
        "tool:fetch:1",
        "tool:search:2",
    ]
    assert row(comparison, 3, "tool:search:1")["same"] is True
    assert row(comparison, 3, "tool:fetch:1")["same"] is True
    second = row(comparison, 3, "tool:search:2")
    assert second["same"] is False and set(second["diffs"]) == {"arguments", "observation"}
    assert second["a"] is not None and second["a"]["arguments"] == {"q": "blue"}
    assert second["b"] is not None and second["b"]["arguments"] == {"q": "green"}


def test_a_tool_error_against_a_success_differs() -> None:
    a, b = Log("a"), Log("b")
    a.tool(1, "fetch", {"item": 9}, "item 9").answer(2, "ok")
    b.tool(1, "fetch", {"item": 9}, "item 9", is_error=True).answer(2, "ok")
    fetch = row(compared(a, b), 1, "tool:fetch:1")
    assert fetch["same"] is False and fetch["diffs"] == {}  # the texts are the same
    assert fetch["b"] is not None and fetch["b"]["is_error"] is True


# -- runs of different length, different ends -------------------------------------------


def test_runs_of_different_length_leave_one_side_empty() -> None:
    short = Log("a")
    short.usage(1, 10, 5, 0.001).thought(1, "I know this.").usage(2, 5, 5, 0.001)
    short.answer(2, "A blue lamp.")
    long = lamp_run("b")
    comparison = compared(short, long)
    keys = [(r["step"], r["key"]) for r in comparison["rows"]]
    assert keys == [
        (1, "thought"),
        (1, "tool:search:1"),
        (2, "thought"),
        (2, "tool:fetch:1"),
        (3, "answer"),
    ]
    search = row(comparison, 1, "tool:search:1")
    assert search["a"] is None and search["b"] is not None
    assert search["same"] is False and search["diffs"] == {}
    assert row(comparison, 2, "thought")["a"] is None
    # The answers face each other whatever step each run ended at (the later one).
    answer = row(comparison, 3, "answer")
    assert answer["a"] is not None and answer["b"] is not None
    assert answer["a"]["text"] == "A blue lamp."
    assert side_text(answer["diffs"]["text"], "b") == "The first lamp is blue."
    assert comparison["a"]["steps"] == 2 and comparison["b"]["steps"] == 3
    assert comparison["deltas"]["steps"] == 1
    assert comparison["deltas"]["tokens_in"] == 60 - 15


def test_an_answer_against_an_error_and_a_cancel() -> None:
    answered = lamp_run("a")
    failed = Log("b")
    failed.thought(1, "Let me search.")
    failed.step("error", 1, message="The model failed.", code="llm_error")
    failed.result(status="failed", error={"code": "llm_error", "message": "The model failed."})
    comparison = compared(answered, failed, status="failed", finished_at=None)
    assert row(comparison, 3, "answer")["b"] is None
    end = row(comparison, 1, "end")
    assert end["a"] is None
    assert end["b"] == {"kind": "end", "seq": 3, "text": "The model failed.", "is_error": True}
    assert row(comparison, 1, "thought")["same"] is True
    assert comparison["b"]["output"] is None and comparison["b"]["status"] == "failed"
    assert comparison["b"]["duration_s"] is None
    assert comparison["deltas"]["duration_s"] is None

    cancelled = Log("c")
    cancelled.thought(1, "Let me search.")
    cancelled.step("cancelled", 1, reason="by a viewer", message="Cancelled while thinking.")
    cancelled.result(status="cancelled", reason="by a viewer")
    both = compare_runs(record("b"), failed.messages, record("c"), cancelled.messages)
    end = row(both, 1, "end")
    assert end["same"] is False
    assert end["b"] is not None and "is_error" not in end["b"]
    assert side_text(end["diffs"]["text"], "b") == "Cancelled while thinking."


def test_a_call_cut_short_has_no_observation() -> None:
    a, b = Log("a"), Log("b")
    a.tool(1, "search", {"q": "x"}, "found")
    b.step("tool_call", 1, call_id="c1", name="search", arguments={"q": "x"})
    b.step("cancelled", 1, reason="stop", message="Cancelled during a tool call.")
    comparison = compared(a, b)
    search = row(comparison, 1, "tool:search:1")
    assert search["b"] is not None and "observation" not in search["b"]
    assert side_text(search["diffs"]["observation"], "a") == "found"
    assert side_text(search["diffs"]["observation"], "b") == ""


def test_unknown_cost_makes_the_cost_delta_unknown() -> None:
    priced, unpriced = lamp_run("a"), Log("b")
    unpriced.usage(1, 10, 5, None).thought(1, "Let me search.")
    unpriced.tool(1, "search", {"query": "lamp", "page": 1}, "3 results")
    unpriced.usage(2, 20, 6, 0.002).answer(2, "A lamp.")
    comparison = compared(priced, unpriced)
    assert comparison["a"]["cost"] == pytest.approx(0.006)
    assert comparison["b"]["cost"] is None  # one call's price is unknown: no guess
    assert comparison["deltas"]["cost"] is None
    assert comparison["deltas"]["tokens_in"] == 30 - 60
    # The record saying so (cost None) is believed as well.
    from_record = compare_runs(
        record("a", cost=None), priced.messages, record("b", cost=0.1), unpriced.messages
    )
    assert from_record["a"]["cost"] is None and from_record["deltas"]["cost"] is None


def test_a_log_without_usage_steps_takes_the_results_usage() -> None:
    a = Log("a").answer(1, "x")
    a.messages[-1]["data"].update(usage={"prompt_tokens": 7, "completion_tokens": 3}, cost=None)
    b = Log("b").answer(1, "x")
    comparison = compared(a, b)
    assert (comparison["a"]["tokens_in"], comparison["a"]["tokens_out"]) == (7, 3)
    assert (comparison["b"]["tokens_in"], comparison["b"]["tokens_out"]) == (0, 0)
    assert comparison["a"]["cost"] is None and comparison["b"]["cost"] is None


def test_empty_and_damaged_logs() -> None:
    comparison = compare_runs({}, [], {"task_id": "b"}, [{"type": "step"}, "junk", {"x": 1}])
    assert comparison["rows"] == []
    assert comparison["a"]["task_id"] == "" and comparison["b"]["steps"] == 0
    assert comparison["deltas"]["steps"] == 0 and comparison["deltas"]["duration_s"] is None
    # An observation without its call still shows.
    orphan = Log("b")
    orphan.step("observation", 1, call_id="gone", name="fetch", output="late", is_error=False)
    only = compare_runs({}, [], {}, orphan.messages)
    assert [r["key"] for r in only["rows"]] == ["tool:fetch:1"]


def test_approvals_pauses_and_tokens_are_not_rows() -> None:
    a, b = lamp_run("a"), lamp_run("b")
    b.messages.insert(
        3,
        {
            "type": "step",
            "seq": 99,
            "data": {"event_type": "paused", "step": 1, "data": {"by": "me"}, "timestamp": 0},
        },
    )
    comparison = compared(a, b)
    assert all(r["same"] for r in comparison["rows"]) and len(comparison["rows"]) == 5


def test_a_huge_text_is_shown_cut_and_compared_whole() -> None:
    big = "word " * (MAX_CELL_CHARS // 2)
    a, b = Log("a"), Log("b")
    a.tool(1, "dump", {}, big + "end a").answer(2, "ok")
    b.tool(1, "dump", {}, big + "end b").answer(2, "ok")
    start = time.monotonic()
    dump = row(compared(a, b), 1, "tool:dump:1")
    assert time.monotonic() - start < 5
    assert dump["same"] is False
    assert dump["a"] is not None
    assert len(dump["a"]["observation"]) < MAX_CELL_CHARS + 100
    assert "characters in all" in dump["a"]["observation"]


# -- the segments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("", ""),
        ("same", "same"),
        ("", "new text"),
        ("old text", ""),
        ("the cat sat", "the car sat"),
        ("Rome 2,748,109 people", "Berlin 3,878,100 people"),
        ("a\nb\nc\n", "a\nB\nc\nd\n"),
        ("ééé ü", "ééé ö"),
        ("x" * 30_000, "y" * 30_000),
        (" ".join(str(i) for i in range(6000)), " ".join(str(i) for i in range(1, 6001))),
    ],
)
def test_segments_rebuild_both_texts(a: str, b: str) -> None:
    segments = diff_segments(a, b)
    assert side_text(segments, "a") == a and side_text(segments, "b") == b
    assert all(s["text"] for s in segments)
    assert all(x["op"] != y["op"] for x, y in zip(segments, segments[1:], strict=False))


def test_segments_change_whole_words() -> None:
    assert diff_segments("the cat sat", "the car sat") == [
        {"op": "equal", "text": "the "},
        {"op": "delete", "text": "cat"},
        {"op": "insert", "text": "car"},
        {"op": "equal", "text": " sat"},
    ]
    # A comma between two changed numbers is folded into one change.
    assert diff_segments("Rome 2,748,109.", "Rome 3,878,100.") == [
        {"op": "equal", "text": "Rome "},
        {"op": "delete", "text": "2,748,109"},
        {"op": "insert", "text": "3,878,100"},
        {"op": "equal", "text": "."},
    ]
    assert diff_segments("same", "same") == [{"op": "equal", "text": "same"}]
