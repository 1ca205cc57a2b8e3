"""A Python client of the agentkit server API: REST with httpx, the stream with websockets."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as aconnect
from websockets.sync.client import connect as sconnect

from ..protocol import (
    API_PREFIX,
    ENV_SERVER_TOKEN,
    ENV_SERVER_URL,
    IMPORT_PATH,
    OTEL_TASK_PATH,
    RECORD_ONLY_LIMIT,
    TASK_WS_PREFIX,
    ApproveMessage,
    CloseCode,
    ControlMessage,
    ErrorCode,
    OtelExportAnswer,
    PauseMessage,
    RejectMessage,
    dumps,
)

# Consecutive failed (re)connections before a stream gives up; a message received
# resets the count, so a long run may lose its connection any number of times.
RECONNECT_ATTEMPTS = 5
# A quiet run (a long tool call) must not end the stream on the server's heartbeat
# timeout (60 s without a client message): both iterators ping this often.
PING_INTERVAL = 20.0
_PING = dumps({"type": "ping"})


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
        return urljoin(self.url, API_PREFIX + path)

    def ws_path(self, path: str) -> str:
        """A WebSocket URL for an absolute path on this server (as the API returns them)."""
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, path, "", ""))

    def ws(self, task_id: str, after: int = 0) -> str:
        base = "ws" + self.url[len("http") :] if self.url.startswith("http") else self.url
        query = f"?{urlencode({'after': after})}" if after else ""
        return urljoin(base, TASK_WS_PREFIX + quote(task_id, safe="")) + query


class TaskClient(Protocol):
    """What a view of one task needs: the task's record, its stream, and cancel.

    :class:`AgentKitClient` answers from the server; ``local_run.LocalRunClient`` from a
    run in this process that the server does not see.
    """

    def get_task(
        self, task_id: str, after: int | None = None, limit: int | None = None
    ) -> dict[str, Any]: ...

    def cancel_task(self, task_id: str) -> dict[str, Any]: ...

    def send_control(self, task_id: str, command: ControlMessage) -> dict[str, Any]: ...

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
        self,
        agent: str,
        user_input: str,
        description: str = "",
        parent: tuple[str, int, str] | None = None,
    ) -> dict[str, Any]:
        """Register a run this process will publish itself (see ``local_run.LocalRun``);
        ``parent`` is a fork's ``(parent_id, forked_at_seq, fork_kind)``.

        The answer holds ``publish_url`` and the ``publish_token`` only this caller gets.
        """
        body: dict[str, Any] = {"agent": agent, "input": user_input, "description": description}
        if parent is not None:
            body.update(parent_id=parent[0], forked_at_seq=parent[1], fork_kind=parent[2])
        return dict(self._request("POST", "kernel-tasks", json=body).json())

    def fork_task(
        self, task_id: str, at_seq: int, edit: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``POST tasks/{id}/fork``: the new task's record."""
        body: dict[str, Any] = {"at_seq": at_seq}
        if edit is not None:
            body["edit"] = edit
        return dict(
            self._request("POST", f"tasks/{quote(task_id, safe='')}/fork", json=body).json()
        )

    def export_otel(self, task_id: str) -> OtelExportAnswer:
        """``POST tasks/{id}/otel``: the server sends the finished task's spans to its
        OpenTelemetry collector (409 ``otel_off`` when it exports nothing)."""
        path = OTEL_TASK_PATH.format(task_id=quote(task_id, safe=""))
        return cast(OtelExportAnswer, self._request("POST", path, content=b"").json())

    def resume_task(self, task_id: str, steps: int | None = None) -> dict[str, Any]:
        """``POST tasks/{id}/resume``: a paused task's status, or an interrupted one's
        continuation (a new task's record, with ``parent_id``)."""
        body = {} if steps is None else {"steps": steps}
        return dict(
            self._request("POST", f"tasks/{quote(task_id, safe='')}/resume", json=body).json()
        )

    def import_runs(self, runs: list[dict[str, Any]], source: str | None = None) -> dict[str, Any]:
        """``POST tasks/import`` of run logs read from a notebook (``protocol.RunLog``):
        the ``protocol.ImportAnswer`` (``ids``: old id -> new id, ``tasks``)."""
        body: dict[str, Any] = {"runs": runs}
        if source is not None:
            body["source"] = source
        return dict(self._request("POST", IMPORT_PATH, json=body).json())

    def list_tasks(
        self,
        agent: str | None = None,
        status: str | Iterable[str] | None = None,
        since: str | float | date | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The task list's summaries (``protocol.TaskSummary``), oldest first: all of
        them, or those of ``agent``, in ``status`` (one, or several), created at or after
        ``since`` (a ``datetime`` (naive: local time), a ``date`` (midnight UTC), epoch
        seconds, or an ISO 8601 text), and of those the newest ``limit``."""
        params: list[tuple[str, str]] = []
        if agent is not None:
            params.append(("agent", agent))
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            params.append(("status", ",".join(statuses)))
        if since is not None:
            if isinstance(since, datetime):
                when = since if since.tzinfo is not None else since.astimezone()
                params.append(("since", when.isoformat()))
            elif isinstance(since, date):
                params.append(("since", since.isoformat()))
            elif isinstance(since, int | float) and not isinstance(since, bool):
                params.append(("since", datetime.fromtimestamp(since, UTC).isoformat()))
            else:
                params.append(("since", str(since)))
        if limit is not None:
            params.append(("limit", str(limit)))
        return list(self._request("GET", "tasks", params=params or None).json()["tasks"])

    def get_task(
        self, task_id: str, after: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """The task's record and its events after ``after``: at most ``limit``, or
        (``limit=None``) all of them, fetched page by page (the server answers at most
        ``GET_PAGE_MAX_EVENTS`` a call; ``has_more`` and ``next_after`` say what is left)."""
        params = {k: v for k, v in (("after", after), ("limit", limit)) if v is not None}
        path = f"tasks/{quote(task_id, safe='')}"
        task = dict(self._request("GET", path, params=params or None).json())
        if limit is not None:
            return task
        events = list(task.get("events") or [])
        while task.get("has_more") and task.get("next_after") is not None:
            page = self._request("GET", path, params={"after": task["next_after"]}).json()
            if int(page["next_after"]) <= int(task["next_after"]):
                break  # no progress: never loop forever on a confused server
            events.extend(page.get("events") or [])
            task = dict(page)
        task["events"] = events
        return task

    def get_record(self, task_id: str) -> dict[str, Any]:
        """The task's record (status, result, ...) without its events."""
        return self.get_task(task_id, limit=RECORD_ONLY_LIMIT)

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        return dict(self._request("POST", f"tasks/{quote(task_id, safe='')}/cancel").json())

    def delete_task(self, task_id: str) -> None:
        self._request("DELETE", f"tasks/{quote(task_id, safe='')}")

    # -- human in the loop --------------------------------------------------------------

    def send_control(self, task_id: str, command: ControlMessage) -> dict[str, Any]:
        """approve / reject / pause / resume through the REST API (the server decides
        who was first); ``AgentKitAPIError`` with the code if refused."""
        task = f"tasks/{quote(task_id, safe='')}"
        body: dict[str, Any]
        if isinstance(command, ApproveMessage):
            body = {"decision": "approve", "scope": command.scope}
            if command.arguments is not None:
                body["arguments"] = command.arguments
            path = f"{task}/approvals/{quote(command.call_id, safe='')}"
        elif isinstance(command, RejectMessage):
            body = {"decision": "reject", "reason": command.reason}
            path = f"{task}/approvals/{quote(command.call_id, safe='')}"
        elif isinstance(command, PauseMessage):
            body, path = {"reason": command.reason}, f"{task}/pause"
        else:
            body, path = {"steps": command.steps}, f"{task}/resume"
        return dict(self._request("POST", path, json=body).json())

    # -- streams ------------------------------------------------------------------------

    def iter_messages(
        self, task_id: str, after: int = 0, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Server messages of the task after ``after``, until its result.

        Any close before the result (a dropped connection, a heartbeat timeout, a
        server restart) reconnects with ``?after=`` the last ``seq`` seen; see
        :class:`Resume`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        resume = Resume(task_id, after)
        while True:
            try:
                with sconnect(
                    self.server.ws(task_id, resume.after),
                    additional_headers=self.server.headers(),
                    open_timeout=self.timeout,
                    max_size=None,
                ) as ws:
                    while True:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise TimeoutError(f"task {task_id} did not finish in {timeout} s")
                        wait = PING_INTERVAL if remaining is None else min(remaining, PING_INTERVAL)
                        try:
                            raw = ws.recv(timeout=wait)
                        except TimeoutError:
                            ws.send(_PING)
                            continue
                        message = json.loads(raw)
                        if resume.accept(message):
                            yield message
                        if message.get("type") == "result":
                            return
            except (OSError, websockets.WebSocketException) as exc:
                time.sleep(resume.retry_after(exc))

    async def subscribe(self, task_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Async :meth:`iter_messages`, with the same reconnect policy."""
        resume = Resume(task_id, after)
        while True:
            try:
                async with aconnect(
                    self.server.ws(task_id, resume.after),
                    additional_headers=self.server.headers(),
                    open_timeout=self.timeout,
                    max_size=None,
                ) as ws:
                    pinger = asyncio.create_task(_ping_forever(ws))
                    try:
                        while True:
                            message = json.loads(await ws.recv())
                            if resume.accept(message):
                                yield message
                            if message.get("type") == "result":
                                return
                    finally:
                        pinger.cancel()
            except (OSError, websockets.WebSocketException) as exc:
                await asyncio.sleep(resume.retry_after(exc))

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task ends; returns its result (``status``, ``output``, ...)."""
        task = self.get_record(task_id)
        if task["result"] is not None:
            return dict(task["result"])
        for message in self.iter_messages(task_id, after=task["last_seq"], timeout=timeout):
            if message.get("type") == "result":
                return dict(message["data"])
        raise RuntimeError("the stream ended without a result")  # pragma: no cover


async def _ping_forever(ws: ClientConnection) -> None:
    try:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            await ws.send(_PING)
    except websockets.ConnectionClosed:
        return  # the reader sees the close and decides


class Resume:
    """The one reconnect policy of both stream iterators.

    It remembers the last ``seq`` seen (the next connection asks for ``?after=`` it,
    so nothing is missed or repeated) and decides after each failure: the task is
    gone (``CloseCode.UNKNOWN_TASK``) or access is refused (``UNAUTHENTICATED``,
    ``FORBIDDEN``, an HTTP 4xx at the handshake):
    raise; anything else before the result (a drop, a 1000 on heartbeat timeout, a
    restarting server): wait a growing delay and reconnect, giving up after
    ``RECONNECT_ATTEMPTS`` failures in a row.
    """

    def __init__(self, task_id: str, after: int) -> None:
        self.task_id = task_id
        self.after = after
        self.failures = 0

    def accept(self, message: dict[str, Any]) -> bool:
        """Note a received message; False for a log message already seen."""
        self.failures = 0
        seq = message.get("seq")
        if isinstance(seq, int) and message.get("type") in ("step", "result"):
            if seq <= self.after:
                return False
            self.after = seq
        return True

    def retry_after(self, exc: Exception) -> float:
        """Seconds to wait before reconnecting after ``exc``; raises when it is final."""
        if isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is not None:
            code = exc.rcvd.code
            if code == CloseCode.UNKNOWN_TASK:
                raise AgentKitAPIError(
                    404, ErrorCode.UNKNOWN_TASK.value, "No task with that id."
                ) from exc
            if code in (CloseCode.UNAUTHENTICATED, CloseCode.FORBIDDEN):
                raise AgentKitAPIError(
                    403, ErrorCode.FORBIDDEN.value, f"The server refused the stream: {exc}"
                ) from exc
        if isinstance(exc, websockets.InvalidStatus):
            status = exc.response.status_code
            if 400 <= status < 500:
                raise AgentKitAPIError(
                    status, ErrorCode.FORBIDDEN.value, f"The server refused the stream: {exc}"
                ) from exc
        self.failures += 1
        if self.failures > RECONNECT_ATTEMPTS:
            raise exc
        return min(0.2 * 2.0**self.failures, 5.0)
