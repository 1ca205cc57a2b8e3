"""Bad input on the wire: every case gets a defined answer, and nothing is lost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import read_until_result
from tornado.httpclient import HTTPClientError
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def create(api: Any, agent: str) -> str:
    _, body = await api("POST", "tasks", body={"agent": agent, "input": "q"})
    return str(body["task_id"])


async def test_a_ping_flood_is_rate_limited_and_others_are_unaffected(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "paced")
    # max_queue=None: the steps it leaves unread must not hold back its closing handshake.
    flooder = await ws_connect(task_id, max_queue=None)
    watcher = await ws_connect(task_id)
    await flooder.recv()  # connected
    for _ in range(400):
        await flooder.send('{"type": "ping"}')
    answers: list[str] = []
    async with asyncio.timeout(10):
        while len(answers) < 400:
            message = json.loads(await flooder.recv())
            if message["type"] == "pong":
                answers.append("pong")
            elif message["type"] == "error":
                answers.append(message["data"]["code"])
    assert answers.count("pong") >= 100  # the burst allowance was served
    assert "rate_limited" in answers  # the rest was refused, each with an answer
    assert set(answers) == {"pong", "rate_limited"}
    messages = await read_until_result(watcher)
    assert messages[-1]["data"]["status"] == "succeeded"  # the other client saw it all
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == list(range(1, len(seqs) + 1))
    await flooder.close()


async def test_invalid_utf8_gets_an_error_and_a_1007_close_then_resume_works(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "paced")
    ws = await ws_connect(task_id)
    first = [json.loads(await ws.recv()) for _ in range(5)]
    await ws.send(b"\xff\xfe not utf-8", text=True)  # bytes sent as a text frame, unchecked
    received = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(5):
            while True:
                received.append(json.loads(await ws.recv()))
    errors = [m["data"]["code"] for m in received if m["type"] == "error"]
    assert errors == ["invalid_utf8"]
    assert ws.close_code == 1007
    last = max(m.get("seq", 0) for m in first + received)
    resumed = await read_until_result(await ws_connect(task_id, after=last))
    assert [m["seq"] for m in resumed if "seq" in m][0] == last + 1


async def test_a_plain_get_without_upgrade_is_a_400(api: Any, jp_fetch: Any) -> None:
    task_id = await create(api, "echo")
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("agentkit", "ws", "tasks", task_id)
    assert info.value.code == 400


async def test_a_non_local_host_header_is_refused(
    api: Any, jp_http_port: int, jp_base_url: str, jp_auth_header: dict[str, str]
) -> None:
    task_id = await create(api, "echo")
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    request = (
        f"GET {jp_base_url}agentkit/api/tasks/{task_id} HTTP/1.1\r\n"
        "Host: evil.example.com\r\n"
        f"Authorization: {jp_auth_header['Authorization']}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert b" 403 " in status_line


@pytest.mark.parametrize(
    "task_id", ["..", "a%2Fb", "%00", "x" * 500, "%E2%98%83", "'; DROP TABLE tasks;--"]
)
async def test_odd_task_ids_are_unknown_tasks(ws_connect: Any, api: Any, task_id: str) -> None:
    status, body = await api("GET", "tasks", task_id)
    assert status == 404 and body["error"]["code"] in ("unknown_task", "not_found")
    try:
        ws = await ws_connect(task_id)
    except InvalidStatus as exc:  # refused by routing before any upgrade: also clear
        assert exc.response.status_code == 404
        return
    message = json.loads(await ws.recv())
    assert message["data"]["code"] == "unknown_task"
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 4004


async def test_compression_is_off(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "echo")
    ws = await ws_connect(task_id)  # the websockets client offers permessage-deflate
    assert ws.response is not None
    assert "Sec-WebSocket-Extensions" not in ws.response.headers
    await ws.close()


async def test_oversized_frame_beyond_the_hard_limit_closes_with_1009(
    api: Any, ws_connect: Any
) -> None:
    task_id = await create(api, "hang-llm")
    ws = await ws_connect(task_id, max_size=None)
    await ws.recv()
    await ws.send("x" * (64 * 1024 * 10 + 10))
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    assert ws.close_code == 1009


async def test_huge_numbers_get_their_defined_answers(api: Any, ws_connect: Any) -> None:
    task_id = await create(api, "hang-llm")
    ws = await ws_connect(task_id)
    await ws.recv()
    cases = [
        ('{"type": "ping", "n": 1e999}', {"type": "pong"}),  # inf in an ignored field
        ('{"type": "ping", "n": ' + "9" * 5000 + "}", "invalid_json"),  # over Python's limit
        ('{"type": "ping", "n": -' + "9" * 4000 + "}", {"type": "pong"}),
        ('{"type": "cancel", "reason": 1e400}', "invalid_message"),
        ('{"type": "cancel", "reason": ' + "1" * 300 + "}", "invalid_message"),
    ]
    for frame, expected in cases:
        await ws.send(frame)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if isinstance(expected, str):
            assert answer["type"] == "error" and answer["data"]["code"] == expected, frame[:40]
        else:
            assert answer == expected, frame[:40]
    _, task = await api("GET", "tasks", task_id)
    assert task["status"] == "running"  # none of them cancelled anything
    await ws.close()


async def test_a_websocket_with_a_non_local_host_header_is_refused(
    api: Any, jp_http_port: int, jp_base_url: str, jp_auth_header: dict[str, str]
) -> None:
    from raw_ws import raw_connect

    task_id = await create(api, "hang-llm")
    path = f"{jp_base_url}agentkit/ws/tasks/{task_id}"
    for host in ("evil.example.com", "10.1.2.3", f"evil.example.com:{jp_http_port}"):
        sock = await raw_connect(jp_http_port, path, dict(jp_auth_header), host=host)
        assert sock.status == 403, host
        sock.abort()
    sock = await raw_connect(jp_http_port, path, dict(jp_auth_header), host="localhost")
    assert sock.status == 101  # the same request with a local name is served
    sock.abort()


@pytest.mark.parametrize(
    "after", ["%ff", "", "%20", "-1", "1e3", "%2B5", "0x10", "1.0", "%D9%A3", "9" * 5000]
)
async def test_odd_after_values_are_invalid_after_on_both_apis(
    api: Any,
    ws_url: Any,
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
    after: str,
) -> None:
    from raw_ws import raw_http
    from websockets.asyncio.client import connect

    task_id = await create(api, "echo")
    url = ws_url(task_id) + f"?after={after}"
    async with await connect(url, additional_headers=jp_auth_header) as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert message["data"]["code"] == "invalid_after"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 1000
    path = f"{jp_base_url}agentkit/api/tasks/{task_id}?after={after}"
    status, body = await raw_http(jp_http_port, "GET", path, jp_auth_header)
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_after"


async def test_kernel_task_bodies_that_are_not_json_or_miss_fields_are_400(api: Any) -> None:
    for body in [
        "not json",
        b"\xff\xfe",
        "[]",
        {"agent": "nb"},
        {"input": "x"},
        {"agent": "nb", "input": 3},
        {"agent": "", "input": "x"},
        {"agent": "nb", "input": "x", "description": ["not", "text"]},
        {"agent": "nb", "input": "x" * 100_001},
    ]:
        status, answer = await api("POST", "kernel-tasks", body=body)
        assert status == 400, body if not isinstance(body, dict) else list(body)
        assert answer["error"]["code"] == "invalid_body" and answer["error"]["message"]
    status, answer = await api("POST", "tasks", body={"agent": "echo", "input": "x" * 100_001})
    assert status == 400 and answer["error"]["code"] == "invalid_body"
    _, tasks = await api("GET", "tasks")
    assert tasks["tasks"] == []  # nothing was created by any of them
