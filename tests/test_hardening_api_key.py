"""The seed api_key under attack: guessed, non-ASCII, undecodable. Compared in constant time
on bytes; every wrong key gets the same 4001 answer, never a 500, and no key (right or
wrong) is ever echoed to the client or written to the log."""

from __future__ import annotations

import hashlib
import json
import types
from typing import Any
from urllib.parse import quote

import pytest
from hardening_support import server_log
from raw_ws import close_code, raw_connect, raw_http
from websockets.asyncio.client import connect

from agentkit_jupyter.server import base

API_KEY = "clé-ключ-🔑-7f3a"  # non-ASCII on purpose
REFUSAL = {"code": "unauthenticated", "message": "Missing or wrong api_key."}


@pytest.fixture
def agentkit_config() -> dict[str, Any]:
    return {"api_key": API_KEY}


async def create(api: Any, agent: str = "hang-llm") -> str:
    _, body = await api("POST", "tasks", body={"agent": agent, "input": "q"})
    return str(body["task_id"])


def stream_path(base_url: str, task_id: str, query: str = "") -> str:
    return f"{base_url}agentkit/ws/tasks/{task_id}" + (f"?{query}" if query else "")


async def test_the_right_non_ascii_key_is_accepted_in_every_place(
    api: Any, jp_http_port: int, jp_base_url: str, jp_auth_header: dict[str, str], ws_url: Any
) -> None:
    task_id = await create(api)
    token = jp_auth_header["Authorization"].split()[1]
    raw_key = API_KEY.encode("utf-8")  # what a client sends: the key's UTF-8 bytes
    for headers, query in (
        ({**jp_auth_header, "X-AgentKit-Api-Key": raw_key}, ""),
        # "Authorization: ApiKey": Jupyter's token then goes in the query.
        ({"Authorization": b"ApiKey " + raw_key}, f"token={token}"),
    ):
        path = stream_path(jp_base_url, task_id, query)
        sock = await raw_connect(jp_http_port, path, dict(headers))
        assert sock.status == 101
        assert (await sock.message())["type"] == "connected"
        sock.abort()
    # The seed's query parameter, percent-encoded UTF-8.
    async with await connect(
        ws_url(task_id, api_key=quote(API_KEY)), additional_headers=jp_auth_header
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"


GUESSES: list[bytes] = [
    b"",
    "clé-ключ-🔑-7f3".encode(),  # a prefix (one character short)
    "clé-ключ-🔑-7f3b".encode(),  # same length, last byte wrong
    (API_KEY + "0").encode(),  # one too many
    API_KEY.upper().encode(),
    API_KEY.encode("utf-8")[:-1] + b"\xff",  # invalid UTF-8
    b"\xff\xfe\x80\x81",  # not UTF-8 at all
    "cle\u0301-ключ-🔑-7f3a".encode(),  # the same text, decomposed (NFD): other bytes
    b"A" * 4096,
]


async def test_guessed_keys_get_the_same_refusal_never_a_500_never_echoed_nor_logged(
    api: Any,
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
    jp_serverapp: Any,
) -> None:
    task_id = await create(api)
    path = stream_path(jp_base_url, task_id)
    answers: list[tuple[int, dict[str, Any], int | None]] = []
    with server_log(jp_serverapp) as log:
        for guess in GUESSES:
            for headers, query in (
                ({**jp_auth_header, "X-AgentKit-Api-Key": guess}, ""),
                (jp_auth_header, "api_key=" + quote(guess)),
            ):
                if not guess and not query:
                    continue
                sock = await raw_connect(
                    jp_http_port, path + (f"?{query}" if query else ""), dict(headers)
                )
                message = await sock.message()
                opcode, payload = await sock.frame()
                answers.append((sock.status, message, close_code(payload) if opcode == 8 else None))
                sock.abort()
        # The same guesses without Jupyter's token: the same refusal (a key alone
        # authenticates, so a wrong one is told so, not sent a bare 403).
        for guess in GUESSES[:4]:
            sock = await raw_connect(jp_http_port, path, {"X-AgentKit-Api-Key": guess or b"x"})
            message = await sock.message()
            opcode, payload = await sock.frame()
            assert (sock.status, message, close_code(payload)) == (
                101,
                {"type": "error", "data": REFUSAL},
                4001,
            )
            sock.abort()
        # A wrong key on REST: 401 unauthenticated, with the same text.
        for guess in GUESSES[1:4]:
            status, body = await raw_http(
                jp_http_port,
                "GET",
                f"{jp_base_url}agentkit/api/tasks",
                {"X-AgentKit-Api-Key": guess.decode("latin-1")},
            )
            assert status == 401
            assert json.loads(body)["error"] == REFUSAL
    assert len(answers) == 2 * len(GUESSES) - 1
    for status, message, code in answers:
        assert status == 101  # authenticated with Jupyter: the key is checked after upgrade
        assert message == {"type": "error", "data": REFUSAL}  # identical, whatever was sent
        assert code == 4001
    text = log.text
    assert "Opening websocket" in text  # the log was really captured, at DEBUG level
    assert "Uncaught" not in text and "Traceback" not in text
    for secret in [API_KEY, quote(API_KEY), *(g.decode("latin-1") for g in GUESSES if g)]:
        assert secret not in text
    _, task = await api("GET", "tasks", task_id)
    assert task["status"] == "running"  # nothing reached the task


async def test_the_key_is_compared_in_constant_time_on_bytes(
    api: Any,
    ws_connect: Any,
    ws_url: Any,
    jp_auth_header: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hmac

    calls: list[tuple[object, object]] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(base, "hmac", types.SimpleNamespace(compare_digest=spy))
    task_id = await create(api)
    for key in ("wrong", API_KEY):
        ws = await connect(ws_url(task_id, api_key=quote(key)), additional_headers=jp_auth_header)
        await ws.recv()
        await ws.close()
    ws = await ws_connect(task_id, headers={"X-AgentKit-Api-Key": "wrong"})
    await ws.recv()
    await ws.close()
    assert len(calls) == 3
    # Digests of equal length, so the time says nothing of the key's length or bytes.
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)
    assert all(b == hashlib.sha256(API_KEY.encode("utf-8")).digest() for _, b in calls)
    assert calls[1][0] == calls[1][1] and calls[0][0] != calls[0][1]


async def test_an_undecodable_query_value_is_refused_without_being_quoted(
    http_server_client: Any,  # the test server listens once this is requested
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
    jp_serverapp: Any,
) -> None:
    """Tornado's message for it quotes the value (for ?token=, most of a token)."""
    path = f"{jp_base_url}agentkit/api/tasks?token=guessed-token-0123%ff"
    with server_log(jp_serverapp) as log:
        status, body = await raw_http(jp_http_port, "GET", path, jp_auth_header)
    assert status == 400
    assert json.loads(body)["error"] == {"code": "bad_request", "message": "Bad Request."}
    assert "400" in log.text and "Invalid unicode in token" in log.text
    assert "guessed-token" not in log.text
