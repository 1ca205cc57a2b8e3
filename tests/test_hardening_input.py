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
    flooder = await ws_connect(task_id)
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
