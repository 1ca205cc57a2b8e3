"""Shared fixtures: a real Jupyter server with the extension, and a websockets client."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from llm_server import FakeLLMServer
from traitlets.config import Config
from websockets.asyncio.client import ClientConnection, connect

pytest_plugins = (
    "pytest_jupyter.jupyter_server",
    "pytest_jupyter.jupyter_client",
    # redis_server: a real redis-server per session (tests/redis_support.py)
    "redis_support",
)


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    """A chat-completions server on loopback (tests/llm_server.py), closed afterwards."""
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    """Override in a test module to change the extension's traitlets."""
    return {}


@pytest.fixture
def jp_server_config(agentkit_config: dict[str, Any]) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"agentkit_jupyter": True}},
            "AgentKitExtension": {
                "agents": ["support:test_agents"],
                "db_path": ":memory:",
                **agentkit_config,
            },
        }
    )


@pytest.fixture
def ws_url(http_server_client: Any, jp_http_port: int, jp_base_url: str) -> Callable[..., str]:
    """URL of a task's stream on the running test server (which listens once requested)."""

    def make(task_id: str, after: int | str | None = None, **params: str) -> str:
        query = "&".join(
            [f"after={after}"]
            if after is not None
            else [] + [f"{k}={v}" for k, v in params.items()]
        )
        path = quote(task_id, safe="%")
        url = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}agentkit/ws/tasks/{path}"
        return f"{url}?{query}" if query else url

    return make


@pytest.fixture
def ws_connect(
    ws_url: Callable[..., str], jp_auth_header: dict[str, str]
) -> Callable[..., Awaitable[ClientConnection]]:
    """Open a real `websockets` client connection to a task's stream."""

    async def open_(
        task_id: str,
        after: int | str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> ClientConnection:
        return await connect(
            ws_url(task_id, after),
            additional_headers={**jp_auth_header, **(headers or {})},
            **kwargs,
        )

    return open_


@pytest.fixture
def api(jp_fetch: Any) -> Callable[..., Awaitable[Any]]:
    """Call the REST API; returns (status, parsed JSON body or None)."""

    async def call(method: str, *path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        from tornado.httpclient import HTTPClientError

        if body is not None and not isinstance(body, str | bytes):
            body = json.dumps(body)
        if method == "POST" and body is None:
            body = b""
        try:
            response = await jp_fetch("agentkit", "api", *path, method=method, body=body, **kwargs)
        except HTTPClientError as exc:
            assert exc.response is not None
            return exc.code, json.loads(exc.response.body or b"null")
        return response.code, json.loads(response.body) if response.body else None

    return call


async def read_until_result(ws: ClientConnection, timeout: float = 30.0) -> list[dict[str, Any]]:
    """All messages up to and including the final result."""
    import asyncio

    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for raw in ws:
            message = json.loads(raw)
            messages.append(message)
            if message["type"] == "result":
                break
    return messages


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running on
    the main thread until the session ends, and pytest-jupyter's tests need that
    thread's loop for themselves. Every test under tests/browser/ is one, marked or
    not (a file that forgets the marker must not run first and break the rest)."""
    browser_dir = Path(__file__).parent / "browser"
    for item in items:
        if browser_dir in item.path.parents and item.get_closest_marker("browser") is None:
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
