"""Attacks again with the tasks on a real Redis: tokens, origins and XSRF on every
route, and unexpected errors generic for the client and detailed in the log
(tests/test_hardening_attacks.py).

test_missing_wrong_and_foreign_tokens_are_refused_on_every_route compares the list
right after the creation with the list after the attacks and expects the task
``running`` from the start; on Redis it is ``queued`` until the embedded worker takes
it, so the list legitimately changes in between. The version here waits for the run
to start, then checks the same refusals and that nothing changed.
The second server (``other_server``: its own process, at DEBUG level) is on Redis here
too, under a prefix of its own, so test_secrets_in_urls_stay_out_of_a_debug_log
checks a server whose runs (and their unexpected errors) are on its embedded worker."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hardening_support import ONLY_AGENTKIT
from on_redis import jp_server_config  # noqa: F401 - the tasks on Redis
from redis_support import RedisServer
from server_process import ServerProcess
from test_hardening_attacks import (  # noqa: F401 - collected again, on Redis
    OTHER_API_KEY,
    create,
    fetch_status,
    refused_status,
    test_an_unexpected_error_handling_a_message_is_generic_and_the_run_goes_on,
    test_an_unexpected_error_on_the_publish_socket_is_generic,
    test_an_unexpected_error_opening_a_stream_is_generic_with_close_1011,
    test_an_unexpected_rest_error_is_generic_for_the_client_detailed_in_the_log,
    test_cookie_rest_writes_need_xsrf_and_the_servers_origin,
    test_cookie_websockets_from_a_foreign_or_null_origin_are_refused,
    test_secrets_in_urls_stay_out_of_a_debug_log,
)

from agentkit_jupyter.protocol import ENV_API_KEY


@pytest.fixture(scope="module")
def other_server(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[ServerProcess]:
    """test_hardening_attacks.py's second server (DEBUG log, the seed api_key from the
    environment, the extra agents), with its tasks on Redis and its embedded worker."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv(ENV_API_KEY, OTHER_API_KEY)
        server = ServerProcess(
            tmp_path_factory.mktemp("other"),
            "--log-level=DEBUG",
            "--AgentKitExtension.log_level=DEBUG",
            "--AgentKitExtension.db_path=",
            "--AgentKitExtension.agents=hardening_support:hardening_agents",
            f"--AgentKitExtension.backend_url={redis_server.url}",
            f"--AgentKitExtension.backend_prefix=agentkit-test-{secrets.token_hex(4)}:",
            *ONLY_AGENTKIT,
        ).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_other_server_is_on_redis(
    other_server: ServerProcess, redis_server: RedisServer
) -> None:
    """Its log says where its tasks are (app.py logs the backend at start)."""
    assert f"agentkit: tasks on redis://127.0.0.1:{redis_server.port}/0" in other_server.log()


async def test_missing_wrong_and_foreign_tokens_are_refused_once_the_task_runs(
    api: Any,
    jp_fetch: Any,
    ws_url: Any,
    jp_auth_header: dict[str, str],
    other_server: ServerProcess,
) -> None:
    """Every route and both sockets refuse a missing, wrong or foreign token with 403,
    in the header or the query; the running task, the list and the other server are
    untouched (as test_hardening_attacks.py's test, once the worker runs the task)."""
    task_id = await create(api)
    async with asyncio.timeout(10):  # queued until the worker takes it
        while (await api("GET", "tasks", task_id, params={"limit": "0"}))[1]["status"] == (
            "queued"
        ):
            await asyncio.sleep(0.05)
    _, before = await api("GET", "tasks")
    assert [t["status"] for t in before["tasks"]] == ["running"]
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
        query_token = headers["Authorization"].removeprefix("token ")
        assert await refused_status(f"{sockets[0]}?token={query_token}") == 403
    # Nothing happened: the task runs on, no task was created or deleted.
    _, after = await api("GET", "tasks")
    assert after["tasks"] == before["tasks"]
    assert after["tasks"][0]["status"] == "running"

    async with httpx.AsyncClient() as http:
        response = await http.get(other_server.api("tasks"), headers=jp_auth_header)
        assert response.status_code == 403
        assert "tasks" not in response.text
    assert await refused_status(other_server.ws(task_id), additional_headers=jp_auth_header) == 403
