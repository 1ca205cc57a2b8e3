"""Attacks: missing, wrong and foreign tokens; cookie-authenticated requests from other
origins; secrets in URLs and the log; exception text sent to clients."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import read_until_result
from hardening_support import ONLY_AGENTKIT, SECRET_IN_EXCEPTION, extension, server_log
from server_process import ServerProcess
from tornado.httpclient import HTTPClientError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agentkit_jupyter.protocol import ENV_API_KEY
from agentkit_jupyter.server.base import INTERNAL_ERROR_TEXT
from agentkit_jupyter.tasks import Task

OTHER_API_KEY = "seed-key-" + secrets.token_hex(8)
INTERNAL = {"code": "internal_error", "message": INTERNAL_ERROR_TEXT}


@pytest.fixture(scope="module")
def other_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A second server, at DEBUG log level, with the seed api_key on (from the environment,
    so that it is not in Jupyter's "Config changed" dump), hosting the extra agents."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv(ENV_API_KEY, OTHER_API_KEY)
        server = ServerProcess(
            tmp_path_factory.mktemp("other"),
            "--log-level=DEBUG",
            "--AgentKitExtension.log_level=DEBUG",  # the extension's handlers log there
            "--AgentKitExtension.db_path=",
            "--AgentKitExtension.agents=hardening_support:hardening_agents",
            *ONLY_AGENTKIT,
        ).start()
    try:
        yield server
    finally:
        server.stop()


async def create(api: Any, agent: str = "hang-llm") -> str:
    status, body = await api("POST", "tasks", body={"agent": agent, "input": "q"})
    assert status == 201, body
    return str(body["task_id"])


async def fetch_status(jp_fetch: Any, method: str, *parts: str, **kwargs: Any) -> int:
    if method == "POST":
        kwargs.setdefault("body", json.dumps({"agent": "echo", "input": "x"}))
    try:
        response = await jp_fetch(*parts, method=method, **kwargs)
    except HTTPClientError as exc:
        return exc.code
    return int(response.code)


async def refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        await connect(url, **kwargs)
    return info.value.response.status_code


# -- tokens ---------------------------------------------------------------------------


async def test_missing_wrong_and_foreign_tokens_are_refused_on_every_route(
    api: Any,
    jp_fetch: Any,
    ws_url: Any,
    jp_auth_header: dict[str, str],
    other_server: ServerProcess,
) -> None:
    task_id = await create(api)
    _, before = await api("GET", "tasks")
    routes = [
        ("GET", ("agentkit", "api", "agents")),
        ("GET", ("agentkit", "api", "tasks")),
        ("POST", ("agentkit", "api", "tasks")),
        ("GET", ("agentkit", "api", "tasks", task_id)),
        ("POST", ("agentkit", "api", "tasks", task_id, "cancel")),
        ("DELETE", ("agentkit", "api", "tasks", task_id)),
        ("POST", ("agentkit", "api", "kernel-tasks")),
    ]
    sockets = [ws_url(task_id), ws_url(task_id).replace("/ws/tasks/", "/ws/publish/")]
    credentials = {
        "none": {"Authorization": ""},
        "wrong": {"Authorization": "token " + secrets.token_hex(24)},
        "another server's": {"Authorization": f"token {other_server.token}"},
    }
    for name, headers in credentials.items():
        for method, parts in routes:
            status = await fetch_status(jp_fetch, method, *parts, headers=headers)
            assert status == 403, (name, method, parts)
        for url in sockets:
            assert await refused_status(url, additional_headers=headers) == 403, (name, url)
        # The same token in the query string instead of the header.
        query_token = headers["Authorization"].removeprefix("token ")
        assert await refused_status(f"{sockets[0]}?token={query_token}") == 403
    # Nothing happened: the task runs on, no task was created or deleted.
    _, after = await api("GET", "tasks")
    assert after["tasks"] == before["tasks"]
    assert after["tasks"][0]["status"] == "running"

    # And this server's token means nothing to the other one.
    async with httpx.AsyncClient() as http:
        response = await http.get(other_server.api("tasks"), headers=jp_auth_header)
        assert response.status_code == 403
        assert "tasks" not in response.text
    assert await refused_status(other_server.ws(task_id), additional_headers=jp_auth_header) == 403


# -- cookies and origins ----------------------------------------------------------------


async def login_cookie(jp_fetch: Any) -> str:
    """Log in through the token once, as a browser does, and keep only the cookie."""
    response = await jp_fetch("api", "status")
    cookie = "; ".join(c.split(";", 1)[0] for c in response.headers.get_list("Set-Cookie"))
    assert "username-" in cookie
    return cookie


async def test_cookie_websockets_from_a_foreign_or_null_origin_are_refused(
    api: Any, jp_fetch: Any, ws_url: Any, jp_http_port: int, jp_auth_header: dict[str, str]
) -> None:
    task_id = await create(api)
    cookie = {"Cookie": await login_cookie(jp_fetch)}
    stream = ws_url(task_id)
    publish = stream.replace("/ws/tasks/", "/ws/publish/")
    own = f"http://127.0.0.1:{jp_http_port}"
    foreign = [
        "http://evil.example",
        "null",  # sandboxed iframes, file:// pages, some redirects
        f"http://127.0.0.1:{jp_http_port}.evil.example",
        f"http://127.0.0.1:{jp_http_port + 1}",  # another local server
        f"http://localhost:{jp_http_port}",  # another name: another origin for the browser
    ]
    for url in (stream, publish):
        for origin in foreign:
            status = await refused_status(url, additional_headers=cookie, origin=origin)
            assert status == 403, (url, origin)

    # The same cookie from the server's own origin works...
    async with await connect(stream, additional_headers=cookie, origin=own) as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "connected"
    # ...and on the publish socket gets as far as its own check (the publish token).
    ws = await connect(publish, additional_headers=cookie, origin=own)  # type: ignore[arg-type]
    assert json.loads(await ws.recv())["data"]["code"] == "forbidden"
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 4003
    # Without the cookie (and without a token), even the right origin gets nothing.
    assert await refused_status(stream, origin=own) == 403  # type: ignore[arg-type]

    # By design (Jupyter's rule), a token-authenticated request skips the origin check:
    # a page on another origin cannot know the token, so it cannot do this.
    async with await connect(
        stream,
        additional_headers=jp_auth_header,
        origin="http://evil.example",  # type: ignore[arg-type]
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"


async def test_cookie_rest_writes_need_xsrf_and_the_servers_origin(
    api: Any, jp_fetch: Any, jp_http_port: int
) -> None:
    cookie = await login_cookie(jp_fetch)
    xsrf = secrets.token_hex(16)
    body = json.dumps({"agent": "hang-llm", "input": "x"})
    parts = ("agentkit", "api", "tasks")
    _, before = await api("GET", "tasks")

    def headers(extra: dict[str, str]) -> dict[str, str]:
        return {"Authorization": "", "Cookie": cookie, **extra}

    # A form posted from another site: no XSRF token.
    status = await fetch_status(jp_fetch, "POST", *parts, body=body, headers=headers({}))
    assert status == 403
    # Even with a matching XSRF pair, another origin is refused.
    forged = {"Cookie": f"{cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf}
    evil = headers({**forged, "Origin": "http://evil.example"})
    assert await fetch_status(jp_fetch, "POST", *parts, body=body, headers=evil) == 403
    # And a cross-origin read with the cookie: 403 as well (Jupyter itself answers 404).
    assert await fetch_status(jp_fetch, "GET", *parts, headers=evil) == 403
    _, after = await api("GET", "tasks")
    assert after == before  # nothing was created
    # The server's own page (cookie, XSRF token, own origin) may create a task.
    own = headers({**forged, "Origin": f"http://127.0.0.1:{jp_http_port}"})
    assert await fetch_status(jp_fetch, "POST", *parts, body=body, headers=own) == 201


# -- secrets in the log ---------------------------------------------------------------------


async def drain(ws: ClientConnection) -> list[dict[str, Any]]:
    messages = []
    try:
        async with asyncio.timeout(5):
            async for raw in ws:
                messages.append(json.loads(raw))
    except ConnectionClosed:
        pass
    return messages


async def test_secrets_in_urls_stay_out_of_a_debug_log(other_server: ServerProcess) -> None:
    server = other_server
    token, key = server.token, OTHER_API_KEY
    guessed_token, guessed_key = secrets.token_hex(24), "guess-" + secrets.token_hex(8)
    mark = len(server.log())  # Jupyter itself prints its URL with the token at startup
    auth = f"token={token}&api_key={quote(key)}"
    async with httpx.AsyncClient() as http:
        created = await http.post(
            server.api("tasks"), json={"agent": "hang-llm", "input": "q"}, headers=server.headers
        )
        task_id = created.json()["task_id"]
        leaky = await http.post(
            server.api("tasks"), json={"agent": "leaky", "input": "q"}, headers=server.headers
        )
        leaky_id = leaky.json()["task_id"]
        for path, expected in [
            (f"tasks?{auth}", 200),
            (f"tasks/0123456789abcdef?{auth}", 404),
            (f"tasks/{task_id}?{auth}&after=%ff", 400),
            (f"tasks?token={token}%ff", 400),  # Tornado would quote most of the token
            (f"tasks?token={guessed_token}", 403),
        ]:
            http.cookies.clear()  # no login cookie: only what the URL says
            assert (await http.get(server.api(path))).status_code == expected, path

    ws_base = f"ws://127.0.0.1:{server.port}/agentkit/ws/tasks/"
    answers = {}
    for name, url in {
        "ok": f"{ws_base}{task_id}?{auth}",
        "wrong key": f"{ws_base}{task_id}?token={token}&api_key={guessed_key}",
        "unknown": f"{ws_base}0123456789abcdef?{auth}",
        "bad after": f"{ws_base}{task_id}?{auth}&after=%ff",
        "leaky": f"{ws_base}{leaky_id}?{auth}",
    }.items():
        async with await connect(url) as ws:
            if name == "ok":
                answers[name] = [json.loads(await ws.recv())]
            else:
                answers[name] = await drain(ws)
    assert answers["ok"][0]["type"] == "connected"
    assert answers["wrong key"][0]["data"]["code"] == "unauthenticated"
    assert answers["unknown"][0]["data"]["code"] == "unknown_task"
    assert answers["bad after"][0]["data"]["code"] == "invalid_after"
    result = answers["leaky"][-1]["data"]
    assert result["status"] == "failed"
    assert result["error"]["code"] == "llm_error"
    assert "failed unexpectedly" in result["error"]["message"]
    assert "hunter2" not in json.dumps(answers)
    async with httpx.AsyncClient() as http:
        task = (await http.get(server.api(f"tasks/{leaky_id}"), headers=server.headers)).text
    assert "hunter2" not in task

    async with asyncio.timeout(5):  # until the server has written its last lines
        while f"200 GET /agentkit/api/tasks/{leaky_id} " not in (log := server.log()[mark:]):
            await asyncio.sleep(0.05)
    assert "Opening websocket /agentkit/ws/tasks/" in log  # DEBUG lines are there
    assert "[secret]" in log  # Jupyter's access log did scrub the query strings
    for secret in (token, token[:16], key, guessed_token, guessed_key):
        assert secret not in log
    assert key not in server.log()  # not even at startup: it came from the environment
    # The operator, not the client, gets the details of the unexpected exception.
    assert "Traceback" in log and SECRET_IN_EXCEPTION in log


# -- exception text never reaches a client ------------------------------------------------


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"unexpected: {SECRET_IN_EXCEPTION}")


async def test_an_unexpected_rest_error_is_generic_for_the_client_detailed_in_the_log(
    api: Any,
    jp_fetch: Any,
    jp_serverapp: Any,
    jp_auth_header: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(extension(jp_serverapp).hub, "all", boom)
    token = jp_auth_header["Authorization"].split()[1]
    with server_log(jp_serverapp) as log:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("agentkit", "api", "tasks", params={"token": token})
    assert info.value.code == 500
    assert info.value.response is not None
    assert json.loads(info.value.response.body) == {"error": INTERNAL}
    assert "Traceback" in log.text and SECRET_IN_EXCEPTION in log.text
    assert token not in log.text  # the URI was logged without its query string


async def test_an_unexpected_error_opening_a_stream_is_generic_with_close_1011(
    api: Any, ws_connect: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await create(api)
    monkeypatch.setattr(extension(jp_serverapp).hub, "get", boom)
    with server_log(jp_serverapp) as log:
        ws = await ws_connect(task_id)
        messages = await drain(ws)
    assert messages == [{"type": "error", "data": INTERNAL}]
    assert ws.close_code == 1011
    assert "Traceback" in log.text and SECRET_IN_EXCEPTION in log.text


async def test_an_unexpected_error_handling_a_message_is_generic_and_the_run_goes_on(
    api: Any, ws_connect: Any, jp_serverapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await create(api, "paced")
    ws = await ws_connect(task_id)
    assert json.loads(await ws.recv())["type"] == "connected"
    monkeypatch.setattr(extension(jp_serverapp).hub, "cancel", boom)
    with server_log(jp_serverapp) as log:
        await ws.send('{"type": "cancel"}')
        messages = await drain(ws)
    assert messages[-1] == {"type": "error", "data": INTERNAL}
    assert "hunter2" not in json.dumps(messages)
    assert ws.close_code == 1011
    assert "Traceback" in log.text and SECRET_IN_EXCEPTION in log.text
    # The run was not disturbed: resume where this connection stopped.
    last = max((m["seq"] for m in messages if "seq" in m), default=0)
    resumed = await read_until_result(await ws_connect(task_id, after=last))
    assert resumed[-1]["data"]["status"] == "succeeded"
    assert [m["seq"] for m in resumed if "seq" in m][0] == last + 1


async def test_an_unexpected_error_on_the_publish_socket_is_generic(
    api: Any,
    ws_url: Any,
    jp_auth_header: dict[str, str],
    jp_serverapp: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status, created = await api(
        "POST", "kernel-tasks", body={"agent": "notebook-agent", "input": "q"}
    )
    assert status == 201
    task_id = created["task_id"]
    publish = ws_url(task_id).replace("/ws/tasks/", "/ws/publish/")
    monkeypatch.setattr(Task, "publish_external", boom)
    headers = {**jp_auth_header, "X-AgentKit-Publish-Token": created["publish_token"]}
    with server_log(jp_serverapp) as log:
        async with await connect(publish, additional_headers=headers) as ws:
            event = {"event_type": "token", "step": 1, "data": {"delta": "hi"}, "timestamp": 1.0}
            await ws.send(json.dumps({"type": "event", "event": event}))
            messages = await drain(ws)
    # The resume offer every publish connection starts with, then the generic error.
    assert messages == [{"type": "resume", "last_seq": 0}, {"type": "error", "data": INTERNAL}]
    assert ws.close_code == 1011
    assert "Traceback" in log.text and SECRET_IN_EXCEPTION in log.text
    _, task = await api("GET", "tasks", task_id)
    # A publisher gone before the end fails its task, as a lost kernel does.
    assert task["status"] == "failed"
    assert task["result"]["error"]["code"] == "kernel_disconnected"
