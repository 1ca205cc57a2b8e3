"""What every agentkit handler shares: the extension's settings, logging without
secrets, raw query arguments, and JSON errors with stable codes."""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any, Protocol, cast

from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web

from ..protocol import TASK_WS_PREFIX, ErrorCode
from ..tasks import Task, TaskHub

AUTH_RESOURCE = "agentkit"
INTERNAL_ERROR_TEXT = "Internal server error; the details are in the server log."

# Tornado's "Invalid unicode in token: b'...'" quotes (part of) the value it could not decode.
_QUOTED_VALUE = re.compile(r"^(Invalid unicode in [^:]+):.*$", re.DOTALL)


class AgentKitSettings(Protocol):
    """What handlers read of the extension (``AgentKitExtension`` provides it)."""

    hub: TaskHub
    max_message_size: int
    client_message_rate: float
    heartbeat_timeout: float
    api_key: str | None


class ApiError(web.HTTPError):
    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.message = message


def header_bytes(value: str) -> bytes:
    """The bytes a client sent in a header (Tornado decodes header lines as latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def parse_nonnegative_int(raw: bytes) -> int:
    """A query value as an integer >= 0 (ASCII digits only), or ValueError."""
    raw = raw.strip()
    if not raw.isdigit():  # bytes.isdigit: ASCII digits only, so no sign, no blanks
        raise ValueError("not a non-negative integer")
    return int(raw)  # ValueError beyond Python's digit limit


class AgentKitHandlerMixin(ExtensionHandlerMixin):
    auth_resource = AUTH_RESOURCE
    request: Any  # from tornado's RequestHandler, which every handler here also is

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Log without the query string: it may hold ``?token=`` or ``?api_key=``.

        Tornado's own version logs the request's full URI (and, for an undecodable
        argument, part of its value); Jupyter scrubs only its access log lines.
        """
        request = self.request
        where = f"{request.method} {request.path} ({request.remote_ip})"
        log = self.log
        if isinstance(value, web.HTTPError):
            message = value.get_message()
            if message:
                message = _QUOTED_VALUE.sub(r"\1", message)
                log.warning("%d %s: %s", value.status_code, where, message)
        else:
            log.error("Uncaught exception %s", where, exc_info=value)

    def raw_query_argument(self, name: str) -> bytes | None:
        """The last ``?name=`` value as raw bytes (no decoding, so no decoding error)."""
        values: list[bytes] | None = self.request.query_arguments.get(name)
        return values[-1] if values else None

    @property
    def agentkit(self) -> AgentKitSettings:
        return cast(AgentKitSettings, self.extensionapp)

    @property
    def hub(self) -> TaskHub:
        return self.agentkit.hub

    def ws_path(self, task_id: str) -> str:
        return str(url_path_join(self.base_url, TASK_WS_PREFIX, task_id))

    def task_json(self, task: Task) -> dict[str, Any]:
        return {**task.to_dict(), "ws_url": self.ws_path(task.task_id)}
