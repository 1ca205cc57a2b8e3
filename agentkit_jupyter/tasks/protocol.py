"""Wire protocol v1: every message a task stream carries, in one place.

Server messages are built here and serialised once per event; the same text goes
to every subscriber. Client messages are parsed here into typed models, and every
way a client message can be wrong maps to one stable error code.
"""

from __future__ import annotations

import json
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

import pydantic

PROTOCOL_VERSION = 1


class ErrorCode(StrEnum):
    """Codes of ``{"type": "error"}`` messages and of REST errors."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    INVALID_UTF8 = "invalid_utf8"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_TASK = "unknown_task"
    UNKNOWN_AGENT = "unknown_agent"
    TASK_FINISHED = "task_finished"
    FORBIDDEN = "forbidden"
    UNAUTHENTICATED = "unauthenticated"
    TOO_MANY_SUBSCRIBERS = "too_many_subscribers"
    SUBSCRIBER_TOO_SLOW = "subscriber_too_slow"
    INVALID_AFTER = "invalid_after"
    EVENTS_TRUNCATED = "events_truncated"
    AFTER_BEYOND_LOG = "after_beyond_log"
    INVALID_BODY = "invalid_body"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    KERNEL_DISCONNECTED = "kernel_disconnected"
    KERNEL_INTERRUPTED = "kernel_interrupted"
    SERVER_RESTARTED = "server_restarted"
    INTERNAL_ERROR = "internal_error"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000  # after the final result, or heartbeat timeout
    GOING_AWAY = 1001  # the server is shutting down
    INVALID_DATA = 1007  # a text frame that is not UTF-8
    INTERNAL_ERROR = 1011  # an unexpected server error (after error internal_error)
    UNAUTHENTICATED = 4001  # the seed api_key was missing or wrong
    FORBIDDEN = 4003  # not allowed (e.g. publishing to another kernel's task)
    UNKNOWN_TASK = 4004  # no such task, or it was deleted
    TOO_SLOW = 4008  # fell too far behind; resume with ?after=
    TOO_MANY_SUBSCRIBERS = 4009


# -- client -> server ---------------------------------------------------------------


class _ClientMessage(pydantic.BaseModel):
    # Seed clients may send extra fields; they are ignored, not an error.
    model_config = pydantic.ConfigDict(extra="ignore", strict=True)


class PingMessage(_ClientMessage):
    type: Literal["ping"]


class CancelMessage(_ClientMessage):
    type: Literal["cancel"]
    reason: str | None = pydantic.Field(default=None, max_length=500)


ClientMessage = Annotated[PingMessage | CancelMessage, pydantic.Field(discriminator="type")]
_client_adapter: pydantic.TypeAdapter[PingMessage | CancelMessage] = pydantic.TypeAdapter(
    ClientMessage
)
CLIENT_MESSAGE_TYPES = ("ping", "cancel")


class ClientMessageError(ValueError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_client_message(raw: str | bytes, max_size: int) -> PingMessage | CancelMessage:
    """Parse one client frame, or raise :class:`ClientMessageError` with a stable code."""
    if isinstance(raw, bytes):
        raise ClientMessageError(
            ErrorCode.BINARY_NOT_SUPPORTED, "Binary frames are not supported; send JSON text."
        )
    if len(raw.encode("utf-8", "surrogatepass")) > max_size:
        raise ClientMessageError(
            ErrorCode.MESSAGE_TOO_LARGE, f"Messages are limited to {max_size} bytes."
        )
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ClientMessageError(ErrorCode.INVALID_JSON, "The message is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ClientMessageError(ErrorCode.NOT_AN_OBJECT, "The message must be a JSON object.")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise ClientMessageError(ErrorCode.MISSING_TYPE, "The message needs a string field 'type'.")
    if kind not in CLIENT_MESSAGE_TYPES:
        known = ", ".join(CLIENT_MESSAGE_TYPES)
        raise ClientMessageError(
            ErrorCode.UNKNOWN_TYPE, f"Unknown message type; expected one of: {known}."
        )
    try:
        return _client_adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        fields = ", ".join(sorted({".".join(map(str, e["loc"][1:])) for e in exc.errors()}))
        raise ClientMessageError(
            ErrorCode.INVALID_MESSAGE, f"Invalid field(s) in {kind!r} message: {fields}."
        ) from None


# -- server -> client ---------------------------------------------------------------


# Built once: json.dumps() with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(message: dict[str, Any]) -> str:
    return _ENCODER.encode(message)


def step_message(task_id: str, seq: int, event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "step", "seq": seq, "task_id": task_id, "data": event}


def result_message(task_id: str, seq: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"type": "result", "seq": seq, "task_id": task_id, "data": result}


def connected_message(
    task_id: str, agent: str, status: str, last_seq: int, after: int
) -> dict[str, Any]:
    return {
        "type": "connected",
        "task_id": task_id,
        "agent": agent,
        "status": status,
        "last_seq": last_seq,
        "after": after,
        "protocol": PROTOCOL_VERSION,
    }


def error_message(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "data": {"code": code.value, "message": message, **extra}}


PONG = dumps({"type": "pong"})
