"""A Python client of the agentkit server API: REST with httpx, the stream with websockets."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import websockets
from websockets.asyncio.client import connect as aconnect
from websockets.sync.client import connect as sconnect

ENV_SERVER_URL = "AGENTKIT_SERVER_URL"
ENV_SERVER_TOKEN = "AGENTKIT_SERVER_TOKEN"
RECONNECT_ATTEMPTS = 5


class ServerNotFoundError(RuntimeError):
    """No Jupyter server with the agentkit extension could be located."""


class AgentKitAPIError(RuntimeError):
    """The server answered with an error (``status`` and stable ``code``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Where a server is: its URL including the base path, and a token (if any)."""

    url: str
    token: str | None = None

    def __post_init__(self) -> None:
        if not self.url.endswith("/"):
            object.__setattr__(self, "url", self.url + "/")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def api(self, path: str) -> str:
        return urljoin(self.url, "agentkit/api/" + path)

    def ws_path(self, path: str) -> str:
        """A WebSocket URL for an absolute path on this server (as the API returns them)."""
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, path, "", ""))

    def ws(self, task_id: str, after: int = 0) -> str:
        base = "ws" + self.url[len("http") :] if self.url.startswith("http") else self.url
        query = f"?{urlencode({'after': after})}" if after else ""
        return urljoin(base, f"agentkit/ws/tasks/{quote(task_id, safe='')}") + query


class TaskClient(Protocol):
    """What a view of one task needs: the task's record, its stream, and cancel.

    :class:`AgentKitClient` answers from the server; ``runner.LocalRunClient`` from a
    run in this process that the server does not see.
    """

    def get_task(self, task_id: str, after: int | None = None) -> dict[str, Any]: ...

    def cancel_task(self, task_id: str) -> dict[str, Any]: ...

    def iter_messages(
        self, task_id: str, after: int = 0, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]: ...


def find_server(url: str | None = None, token: str | None = None) -> ServerInfo:
    """Locate the server: explicit arguments, then what the extension put in the
    environment of kernels it started, then the runtime file of the parent server."""
    if url:
        return ServerInfo(url, token)
    env_url = os.environ.get(ENV_SERVER_URL)
    if env_url:
        return ServerInfo(env_url, token or os.environ.get(ENV_SERVER_TOKEN))
    parent = os.environ.get("JPY_PARENT_PID")
    if parent:
        from jupyter_core.paths import jupyter_runtime_dir

        info_file = Path(jupyter_runtime_dir()) / f"jpserver-{parent}.json"
        if info_file.exists():
            info = json.loads(info_file.read_text())
            return ServerInfo(
                info["url"].rstrip("/") + info.get("base_url", "/"), info.get("token")
            )
    raise ServerNotFoundError(
        "No Jupyter server with agentkit-jupyter found: this is not a kernel started by a "
        "Jupyter server with the extension. Pass server=ServerInfo(url, token), or set "
        f"{ENV_SERVER_URL} (and {ENV_SERVER_TOKEN})."
    )


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.reason_phrase or "request failed"
    raise AgentKitAPIError(response.status_code, code, message)


class AgentKitClient:
    """REST calls are synchronous (safe in a kernel cell); streams come sync and async."""

    def __init__(self, server: ServerInfo | None = None, timeout: float = 30.0) -> None:
        self.server = server or find_server()
        self.timeout = timeout
        self._http = httpx.Client(headers=self.server.headers(), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentKitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, self.server.api(path), **kwargs)
        except httpx.TransportError as exc:
            raise ServerNotFoundError(
                f"Cannot reach the Jupyter server at {self.server.url}: {exc}"
            ) from exc
        _raise_for_error(response)
        return response

    # -- REST ---------------------------------------------------------------------------

    def list_agents(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "agents").json()["agents"])

    def create_task(self, agent: str, user_input: str) -> dict[str, Any]:
        return dict(
            self._request("POST", "tasks", json={"agent": agent, "input": user_input}).json()
        )

    def register_kernel_task(
        self, agent: str, user_input: str, description: str = ""
    ) -> dict[str, Any]:
        """Register a run this process will publish itself (see ``runner.LocalRun``).

        The answer holds ``publish_url`` and the ``publish_token`` only this caller gets.
        """
        body = {"agent": agent, "input": user_input, "description": description}
        return dict(self._request("POST", "kernel-tasks", json=body).json())

    def list_tasks(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "tasks").json()["tasks"])

    def get_task(self, task_id: str, after: int | None = None) -> dict[str, Any]:
        params = {"after": after} if after is not None else None
        return dict(self._request("GET", f"tasks/{quote(task_id, safe='')}", params=params).json())

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        return dict(self._request("POST", f"tasks/{quote(task_id, safe='')}/cancel").json())

    def delete_task(self, task_id: str) -> None:
        self._request("DELETE", f"tasks/{quote(task_id, safe='')}")

    # -- streams ------------------------------------------------------------------------

    def iter_messages(
        self, task_id: str, after: int = 0, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Server messages of the task after ``after``, until its result.

        Reconnects with ``?after=`` the last ``seq`` seen when the connection drops.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        attempts = 0
        while True:
            try:
                with sconnect(
                    self.server.ws(task_id, after),
                    additional_headers=self.server.headers(),
                    open_timeout=self.timeout,
                    max_size=None,
                ) as ws:
                    attempts = 0
                    while True:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise TimeoutError(f"task {task_id} did not finish in {timeout} s")
                        message = json.loads(ws.recv(timeout=remaining))
                        after = max(after, int(message.get("seq") or 0))
                        yield message
                        if message.get("type") == "result":
                            return
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 4004:
                    raise AgentKitAPIError(404, "unknown_task", "No task with that id.") from exc
                attempts += 1
                if attempts > RECONNECT_ATTEMPTS:
                    raise
                time.sleep(min(0.2 * 2**attempts, 5.0))

    async def subscribe(self, task_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Async :meth:`iter_messages`."""
        import asyncio

        attempts = 0
        while True:
            try:
                async with aconnect(
                    self.server.ws(task_id, after),
                    additional_headers=self.server.headers(),
                    open_timeout=self.timeout,
                    max_size=None,
                ) as ws:
                    attempts = 0
                    async for raw in ws:
                        message = json.loads(raw)
                        after = max(after, int(message.get("seq") or 0))
                        yield message
                        if message.get("type") == "result":
                            return
                    return
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 4004:
                    raise AgentKitAPIError(404, "unknown_task", "No task with that id.") from exc
                attempts += 1
                if attempts > RECONNECT_ATTEMPTS:
                    raise
                await asyncio.sleep(min(0.2 * 2**attempts, 5.0))

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task ends; returns its result (``status``, ``output``, ...)."""
        task = self.get_task(task_id, after=1 << 62)
        if task["result"] is not None:
            return dict(task["result"])
        for message in self.iter_messages(task_id, after=task["last_seq"], timeout=timeout):
            if message.get("type") == "result":
                return dict(message["data"])
        raise RuntimeError("the stream ended without a result")  # pragma: no cover
