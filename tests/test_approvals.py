"""Human in the loop against a real server: approve, edit, reject, pause and step.

Every message and REST call of the contract, every error code, races between viewers,
reconnects, cancel and timeouts while a call waits, and a read-only viewer refused.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import support
from conftest import read_until_result
from websockets.asyncio.client import ClientConnection, connect

READ_KEY = "read-only-key-0123456789"
WRITE_KEY = "write-key-0123456789abcdef"


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {
        "api_keys": {
            "dashboard": {"scope": "read", "key": READ_KEY},
            "ops-bot": {"scope": "write", "key": WRITE_KEY},
        }
    }


@pytest.fixture(autouse=True)
def _fresh_runs() -> None:
    support.APPROVED_RUNS.clear()


async def create(api: Any, agent: str, text: str = "ledger") -> str:
    status, body = await api("POST", "tasks", body={"agent": agent, "input": text})
    assert status == 201, body
    return str(body["task_id"])


async def next_of(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next message of ``kind``: a step's event type, or a message type."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message
            if message["type"] == "step" and message["data"]["event_type"] == kind:
                return message


def events(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        m["data"]["data"]
        for m in messages
        if m["type"] == "step" and m["data"]["event_type"] == kind
    ]


async def wait_status(api: Any, task_id: str, status: str, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            _, body = await api("GET", "tasks", task_id, params={"limit": "0"})
            if body["status"] == status:
                return body
            await asyncio.sleep(0.02)


async def test_approve_on_the_socket_runs_the_call_once(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "approve-me")
    ws = await ws_connect(task_id)
    connected = json.loads(await ws.recv())
    assert connected["can_write"] is True
    request = (await next_of(ws, "approval_requested"))["data"]["data"]
    assert request["tool"] == "guarded_write"
    assert request["arguments"] == {"label": "ledger", "value": 1}
    assert request["policy"] == "tool"
    assert request["schema"]["properties"]["value"]["type"] == "integer"
    record = await wait_status(api, task_id, "waiting")
    assert [p["call_id"] for p in record["pending_approvals"]] == [request["call_id"]]
    _, listing = await api("GET", "tasks")
    summary = next(t for t in listing["tasks"] if t["task_id"] == task_id)
    assert summary["status"] == "waiting"
    assert summary["pending_approvals"] == [
        {"call_id": request["call_id"], "tool": "guarded_write"}
    ]
    assert support.APPROVED_RUNS == []  # nothing runs before the decision

    await ws.send(json.dumps({"type": "approve", "call_id": request["call_id"]}))
    rest = await read_until_result(ws)
    decided = events(rest, "approval_decided")
    assert len(decided) == 1
    assert decided[0]["decision"] == "approved" and decided[0]["call_id"] == request["call_id"]
    assert decided[0]["by"]  # the Jupyter user name
    assert events(rest, "observation")[0]["output"] == "wrote 1 to ledger"
    assert rest[-1]["data"]["status"] == "succeeded"
    assert support.APPROVED_RUNS == [("ledger", 1)]


async def test_reject_over_rest_reaches_the_model_with_its_reason(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "approve-me")
    ws = await ws_connect(task_id)
    call_id = (await next_of(ws, "approval_requested"))["data"]["data"]["call_id"]
    status, answer = await api(
        "POST",
        "tasks",
        task_id,
        "approvals",
        call_id,
        body={"decision": "reject", "reason": "not on a Friday"},
    )
    assert status == 200, answer
    assert answer["accepted"] == "reject" and answer["call_id"] == call_id
    rest = await read_until_result(ws)
    decided = events(rest, "approval_decided")[0]
    assert decided["decision"] == "rejected" and decided["reason"] == "not on a Friday"
    observation = events(rest, "observation")[0]
    assert observation["is_error"] and observation["error_code"] == "rejected"
    assert "not on a Friday" in rest[-1]["data"]["output"]  # the model read the reason
    assert support.APPROVED_RUNS == []


async def test_edited_arguments_are_validated_then_run(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "approve-me")
    ws = await ws_connect(task_id)
    call_id = (await next_of(ws, "approval_requested"))["data"]["data"]["call_id"]
    bad = {"type": "approve", "call_id": call_id, "arguments": {"label": "x", "value": "many"}}
    await ws.send(json.dumps(bad))
    error = await next_of(ws, "error")
    assert error["data"]["code"] == "invalid_arguments"
    assert error["data"]["call_id"] == call_id
    assert "value" in error["data"]["message"]
    # Still pending: a fixed edit goes through.
    record = await wait_status(api, task_id, "waiting")
    assert record["pending_approvals"][0]["call_id"] == call_id
    status, body = await api(
        "POST", "tasks", task_id, "approvals", call_id,
        body={"decision": "approve", "arguments": {"label": "x", "value": "many"}},
    )  # fmt: skip
    assert status == 400 and body["error"]["code"] == "invalid_arguments"
    good = {"type": "approve", "call_id": call_id, "arguments": {"label": "audit", "value": 7}}
    await ws.send(json.dumps(good))
    rest = await read_until_result(ws)
    decided = events(rest, "approval_decided")[0]
    assert decided["decision"] == "edited"
    assert decided["arguments"] == {"label": "audit", "value": 7}
    assert events(rest, "observation")[0]["output"] == "wrote 7 to audit"
    assert support.APPROVED_RUNS == [("audit", 7)]


async def test_two_viewers_racing_one_wins_and_the_tool_runs_once(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "approve-me")
    viewers = [await ws_connect(task_id) for _ in range(3)]
    requests = await asyncio.gather(*(next_of(ws, "approval_requested") for ws in viewers))
    call_id = requests[0]["data"]["data"]["call_id"]
    approve = json.dumps({"type": "approve", "call_id": call_id})
    reject = json.dumps({"type": "reject", "call_id": call_id, "reason": "no"})
    # All at once, and the same message twice from one viewer (a resend).
    await asyncio.gather(
        viewers[0].send(approve), viewers[1].send(reject), viewers[2].send(approve)
    )
    await viewers[0].send(approve)
    rest = [await read_until_result(ws) for ws in viewers]
    decided = [events(r, "approval_decided") for r in rest]
    assert all(len(d) == 1 for d in decided)  # one decision, the same for every viewer
    assert decided[0] == decided[1] == decided[2]
    refusals = [m["data"] for r in rest for m in r if m["type"] == "error"]
    assert len(refusals) == 3  # every other attempt was told
    assert {r["code"] for r in refusals} == {"already_decided"}
    runs = 0 if decided[0][0]["decision"] == "rejected" else 1
    assert len(support.APPROVED_RUNS) == runs
    status, body = await api(
        "POST", "tasks", task_id, "approvals", call_id, body={"decision": "approve"}
    )
    assert status == 409 and body["error"]["code"] in ("already_decided", "task_finished")


async def test_reconnect_while_waiting_replays_a_decidable_request(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "approve-me")
    first = await ws_connect(task_id)
    call_id = (await next_of(first, "approval_requested"))["data"]["data"]["call_id"]
    await first.close()
    again = await ws_connect(task_id)
    replayed = (await next_of(again, "approval_requested"))["data"]["data"]
    assert replayed["call_id"] == call_id
    await again.send(json.dumps({"type": "approve", "call_id": call_id}))
    rest = await read_until_result(again)
    assert rest[-1]["data"]["status"] == "succeeded"
    assert support.APPROVED_RUNS == [("ledger", 1)]


async def test_cancel_while_waiting_decides_every_pending_call_cancelled(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "approve-me")
    ws = await ws_connect(task_id)
    call_id = (await next_of(ws, "approval_requested"))["data"]["data"]["call_id"]
    await ws.send(json.dumps({"type": "cancel"}))
    rest = await read_until_result(ws, timeout=5)
    decided = events(rest, "approval_decided")
    assert [(d["call_id"], d["decision"]) for d in decided] == [(call_id, "cancelled")]
    assert rest[-1]["data"]["status"] == "cancelled"
    assert support.APPROVED_RUNS == []


async def test_an_undecided_call_times_out_and_the_model_is_told(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "approve-quick-timeout")
    ws = await ws_connect(task_id)
    request = (await next_of(ws, "approval_requested"))["data"]["data"]
    assert request["timeout"] == 0.3
    rest = await read_until_result(ws, timeout=10)
    assert events(rest, "approval_decided")[0]["decision"] == "timed_out"
    observation = events(rest, "observation")[0]
    assert observation["error_code"] == "not_approved"
    assert "nobody approved" in rest[-1]["data"]["output"]
    assert support.APPROVED_RUNS == []


async def test_scope_task_approves_later_calls_of_the_same_tool(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "approve-twice")
    ws = await ws_connect(task_id)
    call_id = (await next_of(ws, "approval_requested"))["data"]["data"]["call_id"]
    await ws.send(json.dumps({"type": "approve", "call_id": call_id, "scope": "task"}))
    rest = await read_until_result(ws)
    decided = events(rest, "approval_decided")
    assert [d["decision"] for d in decided] == ["approved", "approved"]
    assert [d["scope"] for d in decided] == ["task", "task"]
    assert decided[0]["by"] == decided[1]["by"]
    assert len(support.APPROVED_RUNS) == 2


async def test_rest_errors_have_their_codes(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "approve-me")
    ws = await ws_connect(task_id)
    call_id = (await next_of(ws, "approval_requested"))["data"]["data"]["call_id"]
    status, body = await api(
        "POST", "tasks", task_id, "approvals", "call_nope", body={"decision": "approve"}
    )
    assert status == 404 and body["error"]["code"] == "unknown_call"
    status, body = await api(
        "POST", "tasks", "no-such-task", "approvals", call_id, body={"decision": "approve"}
    )
    assert status == 404 and body["error"]["code"] == "unknown_task"
    status, body = await api(
        "POST", "tasks", task_id, "approvals", call_id, body={"decision": "maybe"}
    )
    assert status == 400 and body["error"]["code"] == "invalid_body"
    status, body = await api("POST", "tasks", task_id, "resume", body={})
    assert status == 409 and body["error"]["code"] == "not_paused"
    await ws.send(json.dumps({"type": "approve", "call_id": "call_nope"}))
    frame = await next_of(ws, "error")
    assert frame["data"]["code"] == "unknown_call" and frame["data"]["call_id"] == "call_nope"
    await ws.send(json.dumps({"type": "resume", "steps": 0}))
    assert (await next_of(ws, "error"))["data"]["code"] == "invalid_message"
    status, _ = await api(
        "POST", "tasks", task_id, "approvals", call_id, body={"decision": "approve"}
    )
    assert status == 200
    await read_until_result(ws)
    status, body = await api("POST", "tasks", task_id, "pause")
    assert status == 409 and body["error"]["code"] == "task_finished"
    status, body = await api(
        "POST", "tasks", task_id, "approvals", call_id, body={"decision": "reject"}
    )
    assert status == 409 and body["error"]["code"] in ("already_decided", "task_finished")


async def test_a_read_only_viewer_is_refused_and_a_write_key_decides(
    api: Any, ws_url: Any, jp_fetch: Any
) -> None:
    from tornado.httpclient import HTTPClientError

    task_id = await create(api, "approve-me")
    reader = await connect(ws_url(task_id), additional_headers={"X-AgentKit-Api-Key": READ_KEY})
    connected = json.loads(await reader.recv())
    assert connected["can_write"] is False
    call_id = (await next_of(reader, "approval_requested"))["data"]["data"]["call_id"]
    for message in (
        {"type": "approve", "call_id": call_id},
        {"type": "reject", "call_id": call_id, "reason": "x"},
        {"type": "pause"},
        {"type": "resume"},
    ):
        await reader.send(json.dumps(message))
        frame = await next_of(reader, "error")
        assert frame["data"]["code"] == "forbidden"
    with pytest.raises(HTTPClientError) as refused:
        await jp_fetch(
            "agentkit", "api", "tasks", task_id, "approvals", call_id,
            method="POST", body=json.dumps({"decision": "approve"}),
            headers={"X-AgentKit-Api-Key": READ_KEY, "Authorization": ""},
        )  # fmt: skip
    assert refused.value.code == 403
    assert support.APPROVED_RUNS == []
    # A write key decides, and the record says which key.
    response = await jp_fetch(
        "agentkit", "api", "tasks", task_id, "approvals", call_id,
        method="POST", body=json.dumps({"decision": "approve"}),
        headers={"X-AgentKit-Api-Key": WRITE_KEY, "Authorization": ""},
    )  # fmt: skip
    assert response.code == 200
    rest = await read_until_result(reader)
    assert events(rest, "approval_decided")[0]["by"] == "ops-bot"
    assert support.APPROVED_RUNS == [("ledger", 1)]


async def test_pause_step_twice_and_resume(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "steps")
    ws = await ws_connect(task_id)
    await next_of(ws, "thought")
    status, answer = await api("POST", "tasks", task_id, "pause", body={"reason": "look"})
    assert status == 200 and answer["accepted"] == "pause"
    paused = (await next_of(ws, "paused"))["data"]["data"]
    assert paused["reason"] == "look" and paused["by"]
    await wait_status(api, task_id, "paused")
    # Nothing happens while paused.
    with pytest.raises(TimeoutError):
        await next_of(ws, "observation", timeout=0.5)

    await ws.send(json.dumps({"type": "resume", "steps": 2}))
    seen: list[str] = []
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            kind = message["data"]["event_type"] if message["type"] == "step" else ""
            if kind in ("resumed", "paused", "thought", "observation"):
                seen.append(kind)
            if kind == "paused":
                break
    # Two steps: each a model call (thought) or a tool call (observation).
    assert seen[0] == "resumed" and seen[-1] == "paused"
    assert len([k for k in seen if k in ("thought", "observation")]) <= 3
    await wait_status(api, task_id, "paused")
    status, _ = await api("POST", "tasks", task_id, "resume", body={})
    assert status == 200
    rest = await read_until_result(ws)
    assert rest[-1]["data"]["status"] == "succeeded"
    assert "paused" not in [m["data"]["event_type"] for m in rest if m["type"] == "step"]


async def test_cancel_works_while_paused(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "steps")
    ws = await ws_connect(task_id)
    await ws.send(json.dumps({"type": "pause"}))
    await next_of(ws, "paused")
    await ws.send(json.dumps({"type": "cancel"}))
    rest = await read_until_result(ws, timeout=5)
    assert rest[-1]["data"]["status"] == "cancelled"


async def test_the_static_copy_says_who_decided_what(api: Any, ws_connect: Any) -> None:
    from agentkit_jupyter.kernel.static_html import render_static_html

    task_id = await create(api, "approve-me")
    ws = await ws_connect(task_id)
    call_id = (await next_of(ws, "approval_requested"))["data"]["data"]["call_id"]
    reject = {"type": "reject", "call_id": call_id, "reason": "audit <first>"}
    await ws.send(json.dumps(reject))
    await read_until_result(ws)
    _, task = await api("GET", "tasks", task_id)
    html = render_static_html(task, task["events"])
    assert "Waited for approval: <code>guarded_write</code>" in html
    assert "Rejected</b> by " in html and "audit &lt;first&gt;" in html
