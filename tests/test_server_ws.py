"""The task WebSocket: the seed's protocol, replay, fan-out, cancel, bad input, auth."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from conftest import read_until_result
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def create(api: Any, agent: str, text: str = "question") -> str:
    status, body = await api("POST", "tasks", body={"agent": agent, "input": text})
    assert status == 201, body
    return str(body["task_id"])


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if "seq" in m]


async def test_the_seed_message_sequence(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "demo")
    ws = await ws_connect(task_id)
    messages = await read_until_result(ws)
    connected, *steps, result = messages
    assert connected["type"] == "connected" and connected["task_id"] == task_id
    assert connected["agent"] == "demo"
    assert all(m["type"] == "step" for m in steps)
    assert set(steps[0]["data"]) == {"event_type", "step", "data", "timestamp"}
    assert steps[-1]["data"]["event_type"] == "final_answer"
    assert result["type"] == "result"
    assert {"output", "total_steps", "total_tokens"} <= set(result["data"])
    assert result["data"]["status"] == "succeeded"
    assert seqs(messages) == list(range(1, len(messages)))  # every event once, in order
    # The server closes after the result (its close frame may already be here, in the
    # same write as the result: then the ping is refused locally).
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"type": "ping"}))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1000


async def test_ping_pong(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "hang-llm")
    async with await ws_connect(task_id) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}


async def test_two_viewers_one_run_same_events(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "paced")
    first, second = await ws_connect(task_id), await ws_connect(task_id)
    a, b = await asyncio.gather(read_until_result(first), read_until_result(second))
    assert [m for m in a if "seq" in m] == [m for m in b if "seq" in m]
    assert a[-1]["data"]["status"] == "succeeded"
    _, tasks = await api("GET", "tasks")
    assert sum(t["agent"] == "paced" for t in tasks["tasks"]) == 1  # it ran once
    # Each step event appears exactly once: no duplicate for the creator.
    assert len(seqs(a)) == len(set(seqs(a)))


async def test_late_join_and_reconnect_replay_exactly(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "paced")
    ws = await ws_connect(task_id)
    head = [json.loads(await ws.recv()) for _ in range(15)]
    await ws.close()
    last = head[-1]["seq"]
    resumed = await read_until_result(await ws_connect(task_id, after=last))
    assert resumed[0]["type"] == "connected" and resumed[0]["after"] == last
    assert seqs(resumed)[0] == last + 1
    full = await read_until_result(await ws_connect(task_id))  # late joiner, after the end
    assert seqs(head) + seqs(resumed) == seqs(full) == list(range(1, len(seqs(full)) + 1))
    assert [m for m in full if "seq" in m][last:] == [m for m in resumed if "seq" in m]


async def test_cancel_from_one_viewer_reaches_all(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "hang-llm")
    watcher, canceller = await ws_connect(task_id), await ws_connect(task_id)
    assert json.loads(await canceller.recv())["type"] == "connected"
    await canceller.send(json.dumps({"type": "cancel"}))
    a, b = await asyncio.gather(read_until_result(watcher, 5), read_until_result(canceller, 5))
    for messages in (a, b):
        assert messages[-1]["data"]["status"] == "cancelled"
        assert messages[-1]["data"]["task_id"] == task_id
        assert messages[-2]["data"]["event_type"] == "cancelled"
    _, task = await api("GET", "tasks", task_id)
    assert task["status"] == "cancelled"


async def test_bad_client_messages_get_errors_and_the_run_goes_on(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "paced")
    ws = await ws_connect(task_id)
    bad: list[tuple[str | bytes, str]] = [
        ("not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('"text"', "not_an_object"),
        ("{}", "missing_type"),
        ('{"type": 7}', "missing_type"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "cancel", "reason": 42}', "invalid_message"),
        ('{"type": "ping", "n": NaN}', "invalid_json"),
        ("[" * 10_000 + "]" * 10_000, "invalid_json"),
        (json.dumps({"type": "ping", "pad": "x" * 70_000}), "message_too_large"),
        (b"\x00\x01binary", "binary_not_supported"),
    ]
    for frame, _ in bad:
        await ws.send(frame)
    messages = await read_until_result(ws)
    errors = [m["data"]["code"] for m in messages if m["type"] == "error"]
    assert errors == [code for _, code in bad]
    assert all(m["data"]["message"] for m in messages if m["type"] == "error")
    assert messages[-1]["data"]["status"] == "succeeded"  # the run was not disturbed
    step_seqs = seqs(messages)
    assert step_seqs == list(range(1, len(step_seqs) + 1))


async def test_unknown_task_gets_error_then_4004(ws_connect: Any) -> None:
    ws = await ws_connect("0123456789abcdef")
    message = json.loads(await ws.recv())
    assert message == {
        "type": "error",
        "data": {"code": "unknown_task", "message": "No task with that id."},
    }
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 4004


async def test_invalid_after_is_refused_and_beyond_log_is_said(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "echo")
    for after in ("-3", "abc"):
        ws = await ws_connect(task_id, after=after)
        assert json.loads(await ws.recv())["data"]["code"] == "invalid_after"
    _, task = await api("GET", "tasks", task_id)
    ws = await ws_connect(task_id, after=999)
    assert json.loads(await ws.recv())["type"] == "connected"
    notice = json.loads(await ws.recv())
    assert notice["data"]["code"] == "after_beyond_log"
    assert notice["data"]["last_seq"] == task["last_seq"]


async def test_unauthenticated_websocket_is_refused(api: Any, ws_url: Any) -> None:
    from websockets.asyncio.client import connect

    task_id = await create(api, "hang-llm")
    for headers in ({}, {"Authorization": "token wrong"}):
        with pytest.raises(InvalidStatus) as info:
            await connect(ws_url(task_id), additional_headers=headers)
        assert info.value.response.status_code == 403


async def test_cookie_authenticated_cross_origin_websocket_is_refused(
    api: Any, jp_fetch: Any, ws_url: Any, jp_http_port: int
) -> None:
    from websockets.asyncio.client import connect

    task_id = await create(api, "hang-llm")
    response = await jp_fetch("api", "status")
    cookies = response.headers.get_list("Set-Cookie")
    cookie = "; ".join(c.split(";", 1)[0] for c in cookies)
    assert "username-" in cookie, cookies
    for origin in ("http://evil.example", "null"):
        with pytest.raises(InvalidStatus) as info:
            await connect(
                ws_url(task_id),
                additional_headers={"Cookie": cookie},
                origin=origin,  # type: ignore[arg-type]
            )
        assert info.value.response.status_code == 403
    same_origin = f"http://127.0.0.1:{jp_http_port}"
    async with await connect(
        ws_url(task_id),
        additional_headers={"Cookie": cookie},
        origin=same_origin,  # type: ignore[arg-type]
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
