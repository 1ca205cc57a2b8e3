"""Property-based: random client messages at one WebSocket, random bodies at the REST API.

The server must stay up, and every message must get its defined answer: the documented
response (``pong``; for a valid ``cancel``, the cancelled step and the result), or an
``error`` with the code the protocol gives for that kind of input — exactly one answer,
checked by a ``ping`` that must come back next. Deterministic for CI: ``derandomize=True``
and no example database.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hardening_support import ONLY_AGENTKIT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from server_process import ServerProcess
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

MAX_MESSAGE_SIZE = 1024  # small, so random text crosses it; frames stay under 10x (hard cap)
CI_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ERROR_CODES = {
    "invalid_json",
    "not_an_object",
    "missing_type",
    "unknown_type",
    "invalid_message",
    "message_too_large",
    "binary_not_supported",
    "invalid_utf8",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("property"),
        "--AgentKitExtension.db_path=",
        f"--AgentKitExtension.max_message_size={MAX_MESSAGE_SIZE}",
        # Hundreds of messages a second here: the rate limit has its own test.
        "--AgentKitExtension.client_message_rate=100000",
        *ONLY_AGENTKIT,
    ).start()
    try:
        yield process
    finally:
        process.stop()


# -- what the protocol says each frame must get ----------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def expected_answer(kind: str, payload: str | bytes) -> tuple[str, str | None]:
    """("error", code), ("pong", None), ("cancel", None) or ("close", code)."""
    if kind == "binary":
        return "error", "binary_not_supported"
    if isinstance(payload, bytes):  # bytes in a text frame
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            return "close", "invalid_utf8"
    if len(payload.encode("utf-8")) > MAX_MESSAGE_SIZE:
        return "error", "message_too_large"
    try:
        value = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return "error", "invalid_json"
    if not isinstance(value, dict):
        return "error", "not_an_object"
    kind_ = value.get("type")
    if not isinstance(kind_, str):
        return "error", "missing_type"
    if kind_ not in ("ping", "cancel"):
        return "error", "unknown_type"
    if kind_ == "ping":
        return "pong", None
    reason = value.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        return "error", "invalid_message"
    return "cancel", None


# -- random frames -----------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
types = st.sampled_from(["ping", "cancel", "Ping", "pong", "result", ""]) | st.text(max_size=8)
objects = st.builds(
    lambda fields, extra: {**extra, **fields},
    st.fixed_dictionaries(
        {},
        optional={
            "type": types | json_values,
            "reason": st.none() | st.text(max_size=600) | json_values,
        },
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
frames = st.one_of(
    json_values.map(lambda v: ("text", json.dumps(v))),  # NaN/Infinity included
    objects.map(lambda v: ("text", json.dumps(v))),
    st.text(max_size=2000).map(lambda t: ("text", t)),
    st.binary(max_size=2000).map(lambda b: ("binary", b)),
    st.binary(max_size=64).map(lambda b: ("text", b)),  # raw bytes in a text frame
)


class Stream:
    """One WebSocket to a running task, reused until a message legitimately ends it."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.ws: ClientConnection | None = None
        self.sockets = contextlib.ExitStack()

    def connection(self) -> ClientConnection:
        if self.ws is None:
            created = httpx.post(
                self.server.api("tasks"),
                json={"agent": "hang-llm", "input": "q"},
                headers=self.server.headers,
            )
            ws = connect(
                self.server.ws(created.json()["task_id"]),
                additional_headers=self.server.headers,
                max_size=None,
            )
            self.sockets.enter_context(ws)
            assert self.recv(ws)["type"] == "connected"
            self.ws = ws
        return self.ws

    @staticmethod
    def recv(ws: ClientConnection) -> dict[str, Any]:
        return json.loads(ws.recv(timeout=5))  # type: ignore[no-any-return]

    def closed_after(self, ws: ClientConnection) -> int | None:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        self.ws = None
        return ws.close_code

    def exchange(self, kind: str, payload: str | bytes) -> None:
        outcome, code = expected_answer(kind, payload)
        ws = self.connection()
        ws.send(payload, text=kind == "text")
        answer = self.recv(ws)
        if outcome == "error":
            assert answer["type"] == "error" and answer["data"]["code"] == code, answer
            assert answer["data"]["message"]
            ws.send('{"type": "ping"}')  # exactly one answer: the next one is the pong
            assert self.recv(ws) == {"type": "pong"}
        elif outcome == "pong":
            assert answer == {"type": "pong"}
        elif outcome == "cancel":
            assert answer["type"] == "step" and answer["data"]["event_type"] == "cancelled"
            result = self.recv(ws)
            assert result["type"] == "result" and result["data"]["status"] == "cancelled"
            assert self.closed_after(ws) == 1000
        else:  # not UTF-8: explained, then closed with 1007
            assert answer["type"] == "error" and answer["data"]["code"] == code
            assert self.closed_after(ws) == 1007


def test_random_client_messages_each_get_their_defined_answer(server: ServerProcess) -> None:
    stream = Stream(server)
    seen: set[str] = set()

    @CI_SETTINGS
    @given(frame=frames)
    @example(frame=("text", '{"type": "ping", "n": NaN}'))
    @example(frame=("text", '{"type": "ping", "n": 1e999}'))  # inf: a valid (extra) field
    @example(frame=("text", '{"type": "cancel", "reason": 1e400}'))
    @example(frame=("text", "[" * 500 + "]" * 500))
    @example(frame=("text", "x" * (MAX_MESSAGE_SIZE + 1)))
    @example(frame=("text", b"\xc3\x28"))
    @example(frame=("text", '{"type": "cancel", "reason": "enough"}'))
    def check(frame: tuple[str, str | bytes]) -> None:
        kind, payload = frame
        seen.add(str(expected_answer(kind, payload)[1] or expected_answer(kind, payload)[0]))
        stream.exchange(kind, payload)

    with stream.sockets:
        check()
        # Every kind of answer was exercised, and the server is still up and answering.
        assert ERROR_CODES | {"pong", "cancel"} <= seen
        ws = stream.connection()
        ws.send('{"type": "ping"}')
        assert Stream.recv(ws) == {"type": "pong"}
    assert server.proc is not None and server.proc.poll() is None
    assert httpx.get(server.api("agents"), headers=server.headers).status_code == 200
    assert "Traceback" not in server.log() and "Uncaught" not in server.log()


# -- random REST bodies ------------------------------------------------------------------

bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "agent": st.sampled_from(["echo", "nope", ""]) | st.text(max_size=210) | json_values,
            "input": st.text(max_size=50) | json_values,
        },
    ).map(lambda d: ("object", d)),
    json_values.map(lambda v: ("json", v)),
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
)


def expected_status(kind: str, value: Any, agents: set[str]) -> int | None:
    """201, 400 or 404 where the body is plainly valid or not; None: any of them."""
    if kind == "bytes" or (kind == "json" and isinstance(value, dict)):
        return None  # random bytes or keys: JSON parsers differ at the edges (BOMs, NaN)
    if kind == "json":
        return 400  # JSON, but not an object
    agent, text = value.get("agent"), value.get("input")
    if not isinstance(agent, str) or not isinstance(text, str) or not 1 <= len(agent) <= 200:
        return 400
    return 201 if agent in agents else 404


def test_random_rest_bodies_get_a_defined_answer(server: ServerProcess) -> None:
    with httpx.Client(headers=server.headers) as http:
        agents = {a["name"] for a in http.get(server.api("agents")).json()["agents"]}

        @settings(CI_SETTINGS, max_examples=120)
        @given(body=bodies)
        def check(body: tuple[str, Any]) -> None:
            kind, value = body
            raw = value if kind == "bytes" else json.dumps(value).encode()
            response = http.post(server.api("tasks"), content=raw)
            expected = expected_status(kind, value, agents)
            assert response.status_code in (201, 400, 404)
            if expected is not None:
                assert response.status_code == expected, response.text
            if response.status_code != 201:
                error = response.json()["error"]
                code = {400: "invalid_body", 404: "unknown_agent"}[response.status_code]
                assert error["code"] == code and error["message"]

        check()
        assert http.get(server.api("agents")).status_code == 200
