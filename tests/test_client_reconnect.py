"""Both client iterators: a close before the result reconnects with ``after=`` and ends
with the result; a quiet run is kept alive by pings; a deleted task ends the stream.

The server here is a real WebSocket server on loopback that plays the task stream's
part exactly as scripted, so each close happens where the test says.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection, serve

from agentkit_jupyter.kernel import client as client_module
from agentkit_jupyter.kernel.client import AgentKitAPIError, AgentKitClient, ServerInfo
from agentkit_jupyter.protocol import CloseCode

TASK = "t1"


def _step(seq: int) -> dict[str, Any]:
    event = {"event_type": "thought", "step": seq, "data": {"text": f"s{seq}"}, "timestamp": 0}
    return {"type": "step", "seq": seq, "task_id": TASK, "data": event}


def _result(seq: int) -> dict[str, Any]:
    data = {"status": "succeeded", "task_id": TASK, "output": "done"}
    return {"type": "result", "seq": seq, "task_id": TASK, "data": data}


class ScriptedStream:
    """Serves a log of 6 messages (5 steps, then the result); each connection is handled
    by ``behaviour(connection_number, after, ws)``."""

    def __init__(self, behaviour: Callable[[int, int, ServerConnection], Any]) -> None:
        self.behaviour = behaviour
        self.afters: list[int] = []
        self.received: list[dict[str, Any]] = []
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    log = [_step(n) for n in range(1, 6)] + [_result(6)]

    async def send_from(self, ws: ServerConnection, after: int, until: int | None = None) -> None:
        for message in self.log:
            if message["seq"] > after and (until is None or message["seq"] <= until):
                await ws.send(json.dumps(message))

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        after = int(query.get("after", ["0"])[0])
        self.afters.append(after)
        number = len(self.afters)
        listener = asyncio.create_task(self._listen(ws))
        try:
            await self.behaviour(number, after, ws)
        finally:
            listener.cancel()

    async def _listen(self, ws: ServerConnection) -> None:
        async for raw in ws:
            self.received.append(json.loads(raw))

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            async with serve(self._handler, "127.0.0.1", 0) as server:
                self.port = next(iter(server.sockets)).getsockname()[1]
                self._ready.set()
                await self._stop

        asyncio.run(main())

    def __enter__(self) -> ScriptedStream:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    @property
    def client(self) -> AgentKitClient:
        return AgentKitClient(ServerInfo(f"http://127.0.0.1:{self.port}/"))


def _iterators() -> Iterator[Any]:
    yield pytest.param("sync", id="iter_messages")
    yield pytest.param("async", id="subscribe")


def _collect(kind: str, client: AgentKitClient) -> list[dict[str, Any]]:
    if kind == "sync":
        return list(client.iter_messages(TASK, timeout=30))

    async def gather() -> list[dict[str, Any]]:
        return [m async for m in client.subscribe(TASK)]

    return asyncio.run(gather())


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module.Resume, "retry_after", _quick(client_module.Resume))


def _quick(cls: type[client_module.Resume]) -> Callable[..., float]:
    original = cls.retry_after

    def retry_after(self: client_module.Resume, exc: Exception) -> float:
        original(self, exc)  # the same decisions, without the growing delay
        return 0.01

    return retry_after


@pytest.mark.parametrize("kind", list(_iterators()))
def test_a_normal_close_before_the_result_reconnects_and_ends_with_it(kind: str) -> None:
    async def behaviour(number: int, after: int, ws: ServerConnection) -> None:
        if number == 1:
            await stream.send_from(ws, after, until=3)
            await ws.close(CloseCode.NORMAL, "Heartbeat timeout")  # 1000, no result yet
        else:
            await stream.send_from(ws, after)
            await ws.close(CloseCode.NORMAL, "Task finished")

    with ScriptedStream(behaviour) as stream:
        messages = _collect(kind, stream.client)
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5, 6]
    assert messages[-1]["type"] == "result" and messages[-1]["data"]["output"] == "done"
    assert stream.afters == [0, 3]


@pytest.mark.parametrize("kind", list(_iterators()))
def test_a_dropped_connection_resumes_without_gap_or_duplicate(kind: str) -> None:
    async def behaviour(number: int, after: int, ws: ServerConnection) -> None:
        if number < 3:
            await stream.send_from(ws, after, until=after + 2)
            ws.transport.abort()  # no closing handshake at all
            return
        # A server that replays one message too many is not shown twice.
        await stream.send_from(ws, after - 1)

    with ScriptedStream(behaviour) as stream:
        messages = _collect(kind, stream.client)
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5, 6]
    assert stream.afters == [0, 2, 4]


@pytest.mark.parametrize("kind", list(_iterators()))
def test_a_quiet_run_is_kept_alive_by_pings(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "PING_INTERVAL", 0.05)

    async def behaviour(number: int, after: int, ws: ServerConnection) -> None:
        await stream.send_from(ws, after, until=1)
        await asyncio.sleep(0.5)  # a long tool call: nothing to send
        await stream.send_from(ws, 1)

    with ScriptedStream(behaviour) as stream:
        messages = _collect(kind, stream.client)
    assert messages[-1]["type"] == "result"
    assert stream.received and all(m == {"type": "ping"} for m in stream.received)
    assert stream.afters == [0]


@pytest.mark.parametrize("kind", list(_iterators()))
def test_a_deleted_task_ends_the_stream_with_an_error(kind: str) -> None:
    async def behaviour(number: int, after: int, ws: ServerConnection) -> None:
        await stream.send_from(ws, after, until=2)
        await ws.close(CloseCode.UNKNOWN_TASK, "The task was deleted.")

    with ScriptedStream(behaviour) as stream, pytest.raises(AgentKitAPIError) as caught:
        _collect(kind, stream.client)
    assert caught.value.code == "unknown_task" and caught.value.status == 404
    assert stream.afters == [0]


@pytest.mark.parametrize("kind", list(_iterators()))
def test_a_server_that_keeps_failing_is_given_up_on(kind: str) -> None:
    async def behaviour(number: int, after: int, ws: ServerConnection) -> None:
        ws.transport.abort()

    with ScriptedStream(behaviour) as stream, pytest.raises(Exception) as caught:
        _collect(kind, stream.client)
    assert not isinstance(caught.value, AgentKitAPIError)
    assert len(stream.afters) == client_module.RECONNECT_ATTEMPTS + 1
