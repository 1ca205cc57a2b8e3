"""What every agentkit handler shares: the extension's settings, logging without
secrets, raw query arguments, and JSON errors with stable codes."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast

from jupyter_core.utils import ensure_async
from jupyter_server.auth.identity import User
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web

from ..protocol import (
    API_KEY_AUTH_SCHEME,
    API_KEY_HEADER,
    API_KEY_QUERY,
    API_KEY_SCOPES,
    API_KEY_USER_PREFIX,
    TASK_WS_PREFIX,
    ErrorCode,
)
from ..tasks import Task, TaskHub
from ..tasks.shared import SharedTasks

AUTH_RESOURCE = "agentkit"
INTERNAL_ERROR_TEXT = "Internal server error; the details are in the server log."

# Tornado's "Invalid unicode in token: b'...'" quotes (part of) the value it could not decode.
_QUOTED_VALUE = re.compile(r"^(Invalid unicode in [^:]+):.*$", re.DOTALL)


class AgentKitSettings(Protocol):
    """What handlers read of the extension (``AgentKitExtension`` provides it)."""

    hub: TaskHub
    # Set when tasks live on a shared backend (backend_url): create, find, list there.
    shared: SharedTasks | None
    max_message_size: int
    client_message_rate: float
    heartbeat_timeout: float
    key_ring: KeyRing
    creation_limiter: CreationLimiter
    agent_errors: list[dict[str, str]]


# -- scoped API keys ----------------------------------------------------------------------

WRONG_KEY_TEXT = "Missing or wrong api_key."
BACKEND_DOWN_TEXT = "The task backend (Redis) cannot be reached; retry shortly."


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: its name (shown), scope, and the SHA-256 of its bytes (never
    the key itself, so it cannot end up in a repr or a log)."""

    name: str
    scope: str
    digest: bytes = b""

    def allows(self, action: str) -> bool:
        return action == "read" or (action == "write" and self.scope == "write")

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, scope={self.scope!r})"


class KeyRing:
    """The configured keys. A presented key is hashed once and compared with every
    key's digest in constant time (``hmac.compare_digest``), without an early exit."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    def __bool__(self) -> bool:
        return bool(self.keys)

    def match(self, presented: bytes) -> ApiKey | None:
        digest = hashlib.sha256(presented).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    @classmethod
    def from_config(
        cls, configured: Mapping[str, Any], seed_key: str | None
    ) -> tuple[KeyRing, list[str]]:
        """Keys from ``api_keys`` (``{name: {"scope": ..., "key" | "sha256": ...}}``) and
        the seed ``api_key`` (a ``write`` key named ``api_key``). Returns the ring and one
        problem per key left out (they name the key, never its value)."""
        keys: list[ApiKey] = []
        problems: list[str] = []
        entries = dict(configured)
        if seed_key:
            entries.setdefault(API_KEY_QUERY, {"scope": "write", "key": seed_key})
        for name, entry in entries.items():
            if not isinstance(entry, Mapping):
                problems.append(f"api_keys[{name!r}] must be a dict with 'scope' and 'key'")
                continue
            scope = entry.get("scope")
            key, hashed = entry.get("key"), entry.get("sha256")
            if scope not in API_KEY_SCOPES:
                problems.append(f"api_keys[{name!r}]: 'scope' must be one of {API_KEY_SCOPES}")
            elif (key is None) == (hashed is None):
                problems.append(f"api_keys[{name!r}] needs exactly one of 'key' and 'sha256'")
            elif key is not None and (not isinstance(key, str) or not key):
                problems.append(f"api_keys[{name!r}]: 'key' must be a non-empty string")
            elif key is not None:
                digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
                keys.append(ApiKey(str(name), scope, digest))
            else:
                try:
                    digest = bytes.fromhex(str(hashed))
                except ValueError:
                    digest = b""
                if len(digest) != hashlib.sha256().digest_size:
                    problems.append(f"api_keys[{name!r}]: 'sha256' must be 64 hex digits")
                else:
                    keys.append(ApiKey(str(name), scope, digest))
        return cls(keys), problems


# -- per-user creation rate ------------------------------------------------------------------


class CreationLimiter:
    """A token bucket per user: ``per_minute`` creations a minute, in bursts of as many."""

    def __init__(self, per_minute: float) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, user: str) -> float:
        """0 if ``user`` may create a task now (and count it), else seconds to wait."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic()
        rate = self.per_minute / 60.0
        allowance, at = self._buckets.get(user, (self.per_minute, now))
        allowance = min(self.per_minute, allowance + (now - at) * rate)
        if allowance < 1:
            self._buckets[user] = (allowance, now)
            return (1 - allowance) / rate
        self._buckets[user] = (allowance - 1, now)
        if len(self._buckets) > 10_000:  # forget full buckets: they are the default
            self._buckets = {
                u: (a, t)
                for u, (a, t) in self._buckets.items()
                if a + (now - t) * rate < self.per_minute
            }
        return 0.0


class ApiError(web.HTTPError):
    def __init__(
        self, status: int, code: ErrorCode, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(status, reason=None)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, for a 429


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
    # Set by prepare() when the request presented a key: the key, or True if it was wrong.
    api_key: ApiKey | None = None
    api_key_refused = False

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        """Jupyter's authentication, unless the request presents an agentkit API key.

        A key (header, ``Authorization: ApiKey``, or ``?api_key=``) authenticates this
        request alone, as the user ``apikey:<name>`` limited to the key's scope; Jupyter's
        identity provider is not asked, and no other handler of the server accepts keys.
        """
        handler = cast(JupyterHandler, self)
        ring = self.agentkit.key_ring
        presented = self.presented_api_key() if ring else None
        if presented is None:
            await super().prepare(*args, **kwargs)  # type: ignore[misc]
            return
        if not handler.check_host():  # against DNS rebinding, as for any request
            handler.current_user = handler._jupyter_current_user = None
            raise web.HTTPError(403)
        key = ring.match(presented)
        user = None
        if key is None:
            self.api_key_refused = True
        else:
            self.api_key = key
            user = User(
                username=API_KEY_USER_PREFIX + key.name,
                name=key.name,
                display_name=f"API key {key.name}",
            )
        handler.current_user = handler._jupyter_current_user = user
        self.after_key_authentication()

    def after_key_authentication(self) -> None:
        """What a handler checks once a key was presented (REST: refusal and origin)."""

    def check_xsrf_cookie(self) -> None:
        # A key request carries no cookie: a cross-site page cannot make one without the
        # key, and its Origin is checked in prepare() (REST) or by the upgrade (WebSocket).
        if self.api_key is not None or self.api_key_refused:
            return
        super().check_xsrf_cookie()  # type: ignore[misc]

    def presented_api_key(self) -> bytes | None:
        """The key as the client sent it, in bytes: header, ``ApiKey`` scheme, or query."""
        headers = self.request.headers
        value = headers.get(API_KEY_HEADER)
        if value is None:
            scheme, _, rest = headers.get("Authorization", "").partition(" ")
            if scheme.lower() == API_KEY_AUTH_SCHEME.lower():
                value = rest.strip()
        if value is not None:
            return header_bytes(value)
        return self.raw_query_argument(API_KEY_QUERY)  # percent-decoded, not UTF-8-decoded

    @property
    def limit_owner(self) -> str:
        """Whom per-user limits count this request against: the key, else the user.

        Jupyter's default identity provider gives every token request without a cookie a
        new random user, so all holders of the server's token count as one ("token").
        """
        if self.api_key is not None:
            return API_KEY_USER_PREFIX + self.api_key.name
        handler = cast(JupyterHandler, self)
        if handler.token_authenticated:
            return "token"
        user = handler.current_user
        return "user:" + str(getattr(user, "username", None) or user or "anonymous")

    @property
    def actor_name(self) -> str | None:
        """Who did it, for the record (``by`` of a decision): the API key's name, else
        the Jupyter user name."""
        if self.api_key is not None:
            return self.api_key.name
        user = cast(JupyterHandler, self).current_user
        if not user:
            return None
        # ``name`` is the readable one (a token user's ``username`` is a random id).
        return str(getattr(user, "name", None) or getattr(user, "username", None) or user)

    async def is_allowed(self, action: str) -> bool:
        """``read`` or ``write`` on agentkit: the key's scope, else Jupyter's authorizer."""
        if self.api_key is not None:
            return self.api_key.allows(action)
        handler = cast(JupyterHandler, self)
        user = handler.current_user
        if user is None:
            return False
        authorizer = handler.authorizer
        return bool(
            await ensure_async(authorizer.is_authorized(handler, user, action, AUTH_RESOURCE))
        )

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

    async def lookup_task(self, task_id: str) -> Task | None:
        """The task, from this server's hub or (with a shared backend) the backend's
        records; None: no such task. BackendUnavailableError when Redis is away."""
        shared = self.agentkit.shared
        if shared is not None:
            return await shared.find(task_id)
        try:
            return self.hub.get(task_id)
        except KeyError:
            return None

    def ws_path(self, task_id: str) -> str:
        return str(url_path_join(self.base_url, TASK_WS_PREFIX, task_id))

    def task_json(self, task: Task) -> dict[str, Any]:
        return {**task.to_dict(), "ws_url": self.ws_path(task.task_id)}


_Method = TypeVar("_Method", bound=Callable[..., Awaitable[None]])


def requires(action: str) -> Callable[[_Method], _Method]:
    """A REST method needs an authenticated user (Jupyter's or a key) allowed ``action``."""

    def decorate(method: _Method) -> _Method:
        @wraps(method)
        async def wrapper(self: AgentKitHandlerMixin, *args: Any, **kwargs: Any) -> None:
            if cast(JupyterHandler, self).current_user is None:
                raise web.HTTPError(403)
            if not await self.is_allowed(action):
                needed = "a 'write' key" if self.api_key is not None else f"'{action}' permission"
                raise ApiError(403, ErrorCode.FORBIDDEN, f"This needs {needed}.")
            await method(self, *args, **kwargs)

        return cast(_Method, wrapper)

    return decorate
