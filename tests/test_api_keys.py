"""Scoped API keys (``api_keys``): a key alone, without a Jupyter token, opens the agentkit
REST API and task WebSocket within its scope, and nothing else of the Jupyter server."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hardening_support import server_log
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

READ_KEY = "read-" + secrets.token_hex(12)
WRITE_KEY = "write-" + secrets.token_hex(12)
SEED_KEY = "seed-" + secrets.token_hex(12)
REFUSAL = {"code": "unauthenticated", "message": "Missing or wrong api_key."}


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {
        "api_keys": {
            "dashboard": {"scope": "read", "key": READ_KEY},
            # Only the digest in the config: the key itself is nowhere on the server.
            "ci": {"scope": "write", "sha256": hashlib.sha256(WRITE_KEY.encode()).hexdigest()},
        },
        "api_key": SEED_KEY,  # the seed's single key: a write key named "api_key"
    }


class Http:
    """Requests with no Jupyter token and no cookie: only what each request says."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url) as client:
            return await client.request(method, path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)


@pytest.fixture
def http(http_server_client: Any, jp_http_port: int, jp_base_url: str) -> Http:
    return Http(f"http://127.0.0.1:{jp_http_port}{jp_base_url}")


def key_places(key: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(headers, query params) for each place a key may be presented."""
    return [
        ({"X-AgentKit-Api-Key": key}, {}),
        ({"Authorization": f"ApiKey {key}"}, {}),
        ({}, {"api_key": key}),
    ]


def ws_base(jp_http_port: int, jp_base_url: str) -> str:
    return f"ws://127.0.0.1:{jp_http_port}{jp_base_url}agentkit/ws/tasks/"


async def call(
    http: Any, method: str, path: str, key: str | None, body: Any = None, **headers: str
) -> httpx.Response:
    extra = {"X-AgentKit-Api-Key": key} if key else {}
    content = json.dumps(body) if body is not None else (b"" if method == "POST" else None)
    return await http.request(
        method, f"agentkit/api/{path}", headers={**extra, **headers}, content=content
    )


async def new_task(http: Any, agent: str = "hang-llm") -> str:
    response = await call(http, "POST", "tasks", WRITE_KEY, {"agent": agent, "input": "q"})
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


async def test_each_scope_on_every_rest_route(http: Any, api: Any) -> None:
    victim = await new_task(http)
    task_id = await new_task(http)
    # Reading: every key, in every place it may be presented.
    for key in (READ_KEY, WRITE_KEY, SEED_KEY):
        for headers, params in key_places(key):
            for path in ("agents", "tasks", f"tasks/{task_id}", "status"):
                response = await http.get(f"agentkit/api/{path}", headers=headers, params=params)
                assert response.status_code == 200, (path, response.text)
    body = {"agent": "hang-llm", "input": "q"}
    writes = [
        ("POST", "tasks", body, 201),
        ("POST", "kernel-tasks", body, 201),
        ("POST", f"tasks/{task_id}/cancel", None, 202),
        ("DELETE", f"tasks/{task_id}", None, 204),
    ]
    # A read key may not write: 403 forbidden, and nothing happens.
    _, before = await api("GET", "tasks")
    for method, path, payload, _ in writes:
        response = await call(http, method, path, READ_KEY, payload)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    _, after = await api("GET", "tasks")
    assert [t["task_id"] for t in after["tasks"]] == [t["task_id"] for t in before["tasks"]]
    assert all(t["status"] == "running" for t in after["tasks"])
    # A write key may.
    for method, path, payload, expected in writes:
        response = await call(http, method, path, WRITE_KEY, payload)
        assert response.status_code == expected, (path, response.text)
    assert (await call(http, "GET", f"tasks/{task_id}", WRITE_KEY)).status_code == 404
    # The seed's key is a write key.
    assert (await call(http, "DELETE", f"tasks/{victim}", SEED_KEY)).status_code == 204
    # No key and no token: Jupyter's 403; a wrong key: 401 unauthenticated.
    assert (await call(http, "GET", "tasks", None)).status_code == 403
    for wrong in ("x", READ_KEY[:-1], READ_KEY + "0", WRITE_KEY.upper()):
        response = await call(http, "GET", "tasks", wrong)
        assert (response.status_code, response.json()["error"]) == (401, REFUSAL)
        response = await call(http, "POST", "tasks", wrong, body)
        assert response.status_code == 401
    # Jupyter's token works as before, with the keys configured.
    status, listed = await api("GET", "tasks")
    assert status == 200 and listed["tasks"]


async def test_each_scope_on_the_task_websocket(
    http: Any, jp_http_port: int, jp_base_url: str
) -> None:
    base = ws_base(jp_http_port, jp_base_url)
    task_id = await new_task(http)
    for key in (READ_KEY, WRITE_KEY):
        for headers, params in key_places(key):
            query = f"?api_key={quote(params['api_key'])}" if params else ""
            async with connect(f"{base}{task_id}{query}", additional_headers=headers) as ws:
                assert json.loads(await ws.recv())["type"] == "connected"
    # A read key watches but may not cancel.
    async with connect(base + task_id, additional_headers={"X-AgentKit-Api-Key": READ_KEY}) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "cancel"}))
        assert json.loads(await ws.recv())["data"]["code"] == "forbidden"
    assert (await call(http, "GET", f"tasks/{task_id}", READ_KEY)).json()["status"] == "running"
    # A wrong key: the seed's answer, error unauthenticated and close 4001.
    ws = await connect(base + task_id, additional_headers={"X-AgentKit-Api-Key": "nope"})
    assert json.loads(await ws.recv()) == {"type": "error", "data": REFUSAL}
    await ws.wait_closed()
    assert ws.close_code == 4001
    # A write key cancels.
    async with connect(base + task_id, additional_headers={"X-AgentKit-Api-Key": WRITE_KEY}) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "cancel"}))
        last = await read_result(ws)
    assert last["data"]["status"] == "cancelled"


async def read_result(ws: ClientConnection) -> dict[str, Any]:
    async for raw in ws:
        message = json.loads(raw)
        if message["type"] == "result":
            return dict(message)
    raise AssertionError("no result")


async def test_a_key_opens_nothing_else_of_the_jupyter_server(
    http: Any, jp_http_port: int, jp_base_url: str
) -> None:
    for key in (WRITE_KEY, SEED_KEY):
        for headers, params in key_places(key):
            for path in ("api/contents", "api/kernels", "api/sessions", "api/kernelspecs"):
                response = await http.get(path, headers=headers, params=params)
                assert response.status_code == 403, (path, response.status_code)
            response = await http.post("api/kernels", headers=headers, params=params, content=b"{}")
            assert response.status_code == 403
    # Nor the kernels' WebSocket.
    with pytest.raises(InvalidStatus) as info:
        await connect(
            f"ws://127.0.0.1:{jp_http_port}{jp_base_url}api/events/subscribe",
            additional_headers={"X-AgentKit-Api-Key": WRITE_KEY},
        )
    assert info.value.response.status_code == 403


async def test_keys_never_reach_the_log(
    http: Any, jp_serverapp: Any, jp_http_port: int, jp_base_url: str
) -> None:
    base = ws_base(jp_http_port, jp_base_url)
    guess = "guess-" + secrets.token_hex(8)
    with server_log(jp_serverapp) as log:
        task_id = await new_task(http)
        for key in (READ_KEY, WRITE_KEY, SEED_KEY, guess):
            for headers, params in key_places(key):
                await http.get("agentkit/api/tasks", headers=headers, params=params)
                await http.get("agentkit/api/tasks/%ff", headers=headers, params=params)
                await http.get("api/contents", headers=headers, params=params)
                query = f"?api_key={quote(params['api_key'])}" if params else ""
                async with connect(f"{base}{task_id}{query}", additional_headers=headers) as ws:
                    await ws.recv()
    # The server's lines only: the test's own clients (websockets, httpx) log what they send.
    client_loggers = ("websockets.", "httpx", "httpcore")
    text = "\n".join(
        line for line in log.lines if not line.split(" ", 2)[1].startswith(client_loggers)
    )
    assert "Opening websocket" in text and "[secret]" in text  # DEBUG, scrubbed access log
    for secret in (READ_KEY, WRITE_KEY, SEED_KEY, guess):
        assert secret not in text
        assert secret[: len(secret) // 2] not in text


async def test_key_requests_from_a_foreign_browser_origin_are_refused(
    http: Any, jp_http_port: int, jp_base_url: str
) -> None:
    """A key is for programs: a page of another origin presenting one (it leaked into a
    page, or a page guesses) is refused like a cookie request from there. Programs send
    no Origin; the server's own pages send their own; ServerApp.allow_origin widens it."""
    base = ws_base(jp_http_port, jp_base_url)
    task_id = await new_task(http)
    evil = {"Origin": "http://evil.example"}
    own = {"Origin": f"http://127.0.0.1:{jp_http_port}"}
    for headers, params in key_places(WRITE_KEY):
        response = await http.get("agentkit/api/tasks", headers={**headers, **evil}, params=params)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        response = await http.post(
            "agentkit/api/tasks",
            headers={**headers, **evil},
            params=params,
            content=json.dumps({"agent": "echo", "input": "x"}),
        )
        assert response.status_code == 403
        response = await http.get("agentkit/api/tasks", headers={**headers, **own}, params=params)
        assert response.status_code == 200
        query = f"?api_key={quote(params['api_key'])}" if params else ""
        with pytest.raises(InvalidStatus) as info:
            await connect(f"{base}{task_id}{query}", additional_headers={**headers, **evil})
        assert info.value.response.status_code == 403
        async with connect(f"{base}{task_id}{query}", additional_headers={**headers, **own}) as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
    listed = (await call(http, "GET", "tasks", READ_KEY)).json()["tasks"]
    assert [t["agent"] for t in listed] == ["hang-llm"]  # the foreign POST created nothing


def _documented_client() -> str:
    doc = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
    text = doc.read_text()
    section = text[text.index("### A client in the original route's style") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match
    return match.group(1)


async def test_a_client_of_the_original_route_works_with_its_url_and_api_key_only(
    http: Any, jp_http_port: int, jp_base_url: str, capsys: Any
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_documented_client(), "protocol.md", "exec"), namespace)
    task_id = await new_task(http, agent="demo")  # the task exists (created by a write key)
    url = f"{ws_base(jp_http_port, jp_base_url)}{task_id}?api_key={quote(SEED_KEY)}"
    result = await namespace["watch"](url, {})  # no header at all: the seed's way
    assert result["status"] == "succeeded" and result["task_id"] == task_id
    assert "final_answer" in capsys.readouterr().out


async def test_the_publish_socket_needs_a_write_key_and_the_tasks_secret(
    http: Any, jp_http_port: int, jp_base_url: str
) -> None:
    body = {"agent": "nb", "input": "q"}
    created = (await call(http, "POST", "kernel-tasks", WRITE_KEY, body)).json()
    url = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}agentkit/ws/publish/{created['task_id']}"
    secret = {"X-AgentKit-Publish-Token": created["publish_token"]}
    with pytest.raises(InvalidStatus) as info:
        await connect(url, additional_headers={**secret, "X-AgentKit-Api-Key": READ_KEY})
    assert info.value.response.status_code == 403
    async with connect(url, additional_headers={**secret, "X-AgentKit-Api-Key": WRITE_KEY}) as ws:
        event = {"event_type": "final_answer", "step": 1, "data": {"output": "ok"}, "timestamp": 1}
        await ws.send(json.dumps({"type": "event", "event": event}))
        await ws.wait_closed()
    task = (await call(http, "GET", f"tasks/{created['task_id']}", READ_KEY)).json()
    assert task["status"] == "succeeded"
