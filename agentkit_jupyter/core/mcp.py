"""Tools from MCP servers: ``MCPServer(command=[...])`` (stdio) or ``MCPServer(url=...)``
(streamable HTTP) in an agent's ``tools``, next to plain functions.

**One session per server per run.** A server's tools exist only while a session with it
is open, so the engine opens one session per server at the start of each run (all of
them at once), lists the tools, and closes every session when the run ends, whatever
the end. Nothing is shared between runs: a server that dies, a cancel, a slow call or a
server's state affect one run; two concurrent runs of one agent start the server twice.
The cost is the server's start per run (a Python server: a second or two). Within the
run, the calls of one turn share the session and run concurrently.

What the model sees:

- the server's tools with their JSON schemas and descriptions, filtered by
  ``include`` / ``exclude`` (names or ``fnmatch`` patterns of the server's own names);
  a tool keeps its name unless another server or a plain tool of the agent has the same
  one, or ``prefix=True``: then it is ``<server name>__<tool>``. Names are made to fit
  the model's ``^[a-zA-Z0-9_-]{1,64}$``;
- a call's result: its text content (blocks joined by a newline), or its structured
  content as JSON when there is some (a server sends the same as text for older
  clients; a value the server wrapped as ``{"result": X}`` is X); an image, audio or
  binary resource as a short note (``[image: image/png, 12 KB]``), never its data: a
  tool message is text, and base64 would fill the model's context and the run's log;
  a result marked ``isError`` is an error observation (``tool_error``);
- the server's progress notifications of a call are ``tool_progress`` steps;
- a server that fails to start: the run goes on without its tools, the conversation
  gets a system note saying so (the model can tell the user), and the log a warning; a
  server that dies during a call: that call's observation is an error saying so, and
  every later call of its tools in the run fails at once the same way.

A cancel (or a call's ``timeout``) cancels the request: over stdio the SDK sends
``notifications/cancelled``; over streamable HTTP (protocol 2026-07-28) it aborts the
request's POST, which is that protocol's cancellation. Approval comes from the tools'
annotations: ``destructiveHint: true`` asks a person, ``readOnlyHint: true`` and tools
without annotations do not; ``approval=`` overrides (``"always"``, ``"never"``, or a
dict of tool name to ``True`` / ``False`` / a rule of the arguments).

A stdio server's stderr goes to the Python log (logger ``agentkit_jupyter.mcp``),
never to a client; its environment is the SDK's safe default (``HOME``, ``PATH``,
``USER``...) plus ``env``: it does not inherit the Jupyter server's secrets.

The ``mcp`` package is imported when a session opens, not with this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from .cancellation import CancellationToken
from .llm import redact_url
from .tool_output import ToolStream, current_stream
from .tools import RequiresApproval, Tool, ToolSource, schema_tool

if TYPE_CHECKING:
    import mcp.types as mcp_types
    from mcp import Client

log = logging.getLogger("agentkit_jupyter.mcp")

# Seconds a server has to start and list its tools; then the run goes on without it.
DEFAULT_STARTUP_TIMEOUT = 30.0
# Seconds closing a session may take (a stdio server is asked to exit, then killed).
CLOSE_TIMEOUT = 10.0
# Longest line of a server's stderr that is logged.
MAX_STDERR_LINE = 2000

ServerApproval = Literal["always", "never"] | Mapping[str, RequiresApproval] | None

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SERVER_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
_LAUNCHERS = re.compile(r"^(python[\d.]*|pypy[\d.]*|node|npx|uvx?|bunx?|deno|pipx|sh|bash)$")
_CONFIG_KEYS = frozenset(
    {
        "command",
        "url",
        "env",
        "cwd",
        "headers",
        "include",
        "exclude",
        "prefix",
        "timeout",
        "approval",
        "startup_timeout",
    }
)

# ``c.AgentKitExtension.mcp_servers``: name -> options, for MCPServer.named().
_CONFIGURED: dict[str, dict[str, Any]] = {}


class MCPServerError(Exception):
    """An MCP server or one of its calls failed."""


class MCPToolError(MCPServerError):
    """The server ran the call and says it failed (``isError``), or refused it."""


class MCPServerGone(MCPServerError):
    """The server's connection ended: the call, and every later one, cannot run."""


class MCPServer(ToolSource):
    """An MCP server whose tools an agent may call.

    ``MCPServer(command=["python", "server.py"], env=None, cwd=None)`` starts the
    server as a process and talks to it over its stdin and stdout;
    ``MCPServer(url="http://127.0.0.1:8000/mcp", headers=None)`` connects to a running
    one over streamable HTTP. ``name`` (default: from the script or the host) names it
    in logs, notes and prefixed tool names; ``include`` / ``exclude`` filter its tools
    by name (``fnmatch`` patterns); ``prefix=True`` always names them
    ``<name>__<tool>``; ``timeout`` bounds each call (seconds); ``approval`` overrides
    the annotations' approval defaults; ``startup_timeout`` bounds the start.

    The server is started (or connected to) at the start of each run, once per run;
    see the module's docstring. ``MCPServer.named("files")`` is the server configured
    as ``files`` in ``c.AgentKitExtension.mcp_servers``.
    """

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        prefix: bool = False,
        timeout: float | None = None,
        approval: ServerApproval = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        self._config_name: str | None = None
        self._options: dict[str, Any] = {}
        if isinstance(command, str):
            raise ValueError("command is a list of arguments, e.g. ['python', 'server.py']")
        self.command = [str(part) for part in command] if command is not None else None
        self.url = url
        if (self.command is None) == (url is None):
            raise ValueError("an MCPServer needs either command=[...] (stdio) or url=... (HTTP)")
        if self.command is not None and not self.command:
            raise ValueError("command is empty")
        if url is not None and not re.match(r"^https?://", url):
            raise ValueError(f"url must be http:// or https://, not {redact_url(url)!r}")
        if self.command is None and (env is not None or cwd is not None):
            raise ValueError("env and cwd are for a server started with command=[...]")
        if url is None and headers is not None:
            raise ValueError("headers are for a server reached at url=...")
        self.env = {str(k): str(v) for k, v in env.items()} if env is not None else None
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.headers = {str(k): str(v) for k, v in headers.items()} if headers else None
        self.name = name if name is not None else _default_name(self.command, url)
        if not _SERVER_NAME.match(self.name):
            raise ValueError(f"MCP server name {self.name!r}: 1 to 32 letters, digits, '_' or '-'")
        self.include = list(include) if include is not None else None
        self.exclude = list(exclude) if exclude is not None else []
        self.prefix = bool(prefix)
        self.timeout = timeout
        self.approval = _check_approval(approval, self.name)
        self.startup_timeout = float(startup_timeout)

    @classmethod
    def named(cls, name: str, **options: Any) -> MCPServer:
        """The server configured as ``name`` in ``c.AgentKitExtension.mcp_servers`` (or
        :func:`configure_servers`), looked up when a run starts; ``options`` (``include``,
        ``approval``...) win over the configured ones. Not configured: the run goes on
        without it, and says so."""
        unknown = set(options) - _CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown MCPServer option(s): {', '.join(sorted(unknown))}")
        if not _SERVER_NAME.match(name):
            raise ValueError(f"MCP server name {name!r}: 1 to 32 letters, digits, '_' or '-'")
        # A placeholder until the run: the configured server's options are not known yet.
        server = cls(["mcp-server"], name=name)
        server.command = None
        server._config_name = name
        server._options = dict(options)
        return server

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> MCPServer:
        """An MCPServer from a configuration entry (``command`` or ``url``, and the
        keyword options); ValueError for anything else."""
        if not isinstance(config, Mapping):
            raise ValueError(f"MCP server {name!r}: its configuration must be a dict")
        unknown = set(config) - _CONFIG_KEYS
        if unknown:
            raise ValueError(f"MCP server {name!r}: unknown option(s) {', '.join(sorted(unknown))}")
        options = dict(config)
        command = options.pop("command", None)
        if command is not None and (isinstance(command, str) or not isinstance(command, Sequence)):
            raise ValueError(f"MCP server {name!r}: command must be a list of arguments")
        return cls(command, name=name, **options)

    def resolved(self) -> MCPServer:
        """The server itself, or for :meth:`named` the configured one (MCPServerError if
        there is none)."""
        if self._config_name is None:
            return self
        config = _CONFIGURED.get(self._config_name)
        if config is None:
            known = ", ".join(sorted(_CONFIGURED)) or "none"
            raise MCPServerError(
                f"no MCP server named {self._config_name!r} is configured "
                f"(c.AgentKitExtension.mcp_servers has: {known})"
            )
        return MCPServer.from_config(self._config_name, {**config, **self._options})

    def summary(self) -> dict[str, Any]:
        """What an agent listing shows: the server, not its tools (listed per run)."""
        if self._config_name is not None:
            where = f"the configured MCP server {self.name!r}"
        elif self.url is not None:
            where = f"the MCP server at {redact_url(self.url)}"
        else:
            where = f"the MCP server {self.name!r} (stdio)"
        return {
            "name": f"{self.name} (MCP)",
            "description": f"The tools of {where}, listed when a run starts.",
        }

    async def list_tools(self) -> list[Tool]:
        """Start the server, list its tools as a run would see them alone, stop it."""
        opened = await open_sources([self])
        try:
            if opened.notes:
                raise MCPServerError(opened.notes[0])
            return list(opened.tools.values())
        finally:
            await opened.aclose()

    def __repr__(self) -> str:
        if self._config_name is not None:
            return f"MCPServer.named({self._config_name!r})"
        where = (
            f"url={redact_url(self.url)!r}" if self.url is not None else f"command={self.command!r}"
        )
        return f"MCPServer({where}, name={self.name!r})"


def configure_servers(servers: Mapping[str, Any]) -> list[str]:
    """Set the servers :meth:`MCPServer.named` finds (``c.AgentKitExtension.mcp_servers``).
    Returns the problems of the entries left out, one line each."""
    problems: list[str] = []
    kept: dict[str, dict[str, Any]] = {}
    for name, config in servers.items():
        try:
            MCPServer.from_config(str(name), config)
        except (ValueError, TypeError) as exc:
            problems.append(str(exc))
            continue
        kept[str(name)] = dict(config)
    _CONFIGURED.clear()
    _CONFIGURED.update(kept)
    return problems


def configured_servers() -> list[MCPServer]:
    """Every configured server, by name (as :meth:`MCPServer.named`)."""
    return [MCPServer.named(name) for name in sorted(_CONFIGURED)]


# -- a run's sessions ----------------------------------------------------------------


@dataclass(slots=True)
class OpenedSources:
    """The tools of a run's MCP servers, while their sessions are open."""

    tools: dict[str, Tool] = field(default_factory=dict)
    # For the model: servers whose tools are missing from this run, and why.
    notes: list[str] = field(default_factory=list)
    sessions: list[_Session] = field(default_factory=list)

    def stop(self) -> None:
        """Start closing every session (the run has ended); :meth:`aclose` waits."""
        for session in self.sessions:
            session.stop()

    async def aclose(self) -> None:
        """Close every session (each within ``CLOSE_TIMEOUT``); never raises."""
        self.stop()
        if self.sessions:
            await asyncio.gather(*(s.closed() for s in self.sessions), return_exceptions=True)


async def open_sources(
    sources: Sequence[ToolSource],
    taken: Collection[str] = (),
    token: CancellationToken | None = None,
) -> OpenedSources:
    """Open a session with each server (at once), list and filter their tools, name
    them (``taken``: the names of the agent's plain tools) and build the run's tools.
    Never raises: a server that does not start is a note; a cancel of ``token`` stops
    waiting (the caller checks it). The caller must :meth:`OpenedSources.aclose`."""
    opened = OpenedSources()
    servers: list[MCPServer] = []
    for source in sources:
        if not isinstance(source, MCPServer):
            opened.notes.append(_missing_note(source.name, "it is not an MCP server"))
            continue
        try:
            servers.append(source.resolved())
        except (MCPServerError, ValueError, TypeError) as exc:
            log.warning("MCP server %r left out of the run: %s", source.name, exc)
            opened.notes.append(_missing_note(source.name, str(exc)))
    opened.sessions = [_Session(server) for server in servers]
    if not opened.sessions:
        return opened
    starts = {asyncio.ensure_future(s.start()): s for s in opened.sessions}
    stop = asyncio.ensure_future(token.wait()) if token is not None else None
    try:
        waiting: set[asyncio.Future[Any]] = set(starts)
        while waiting and not (stop is not None and stop.done()):
            watched = waiting | ({stop} if stop is not None else set())
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            waiting -= done
        listings: list[tuple[_Session, list[mcp_types.Tool]]] = []
        for start, session in starts.items():
            if not start.done() or start.cancelled():
                start.cancel()  # a cancelled run: nothing more to wait for
                continue
            error = start.exception()
            if error is not None:
                log.warning("MCP server %r left out of the run: %s", session.name, error)
                opened.notes.append(_missing_note(session.name, str(error)))
                continue
            listings.append((session, _selected(session.server, start.result())))
        opened.tools = _build_tools(listings, taken)
    except BaseException:
        # The caller was cancelled (or worse): it gets no OpenedSources to close, so
        # what started closes itself.
        for start in starts:
            start.cancel()
        opened.stop()
        raise
    finally:
        if stop is not None:
            stop.cancel()
    return opened


def _missing_note(name: str, reason: str) -> str:
    return (
        f"Note: the tools of the MCP server {name!r} are not available in this run "
        f"({reason}). If the user's request needs them, say so."
    )


def _selected(server: MCPServer, listed: list[mcp_types.Tool]) -> list[mcp_types.Tool]:
    def matches(name: str, patterns: Iterable[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return [
        t
        for t in listed
        if (server.include is None or matches(t.name, server.include))
        and not matches(t.name, server.exclude)
    ]


def _build_tools(
    listings: list[tuple[_Session, list[mcp_types.Tool]]], taken: Collection[str]
) -> dict[str, Tool]:
    counts = Counter(_fit(_clean(t.name)) for _, listed in listings for t in listed)
    counts.update(set(taken))
    tools: dict[str, Tool] = {}
    for session, listed in listings:
        server = session.server
        for remote in listed:
            base = _fit(_clean(remote.name))
            name = base
            if server.prefix or counts[base] > 1:
                name = _fit(f"{server.name}__{base}")
            if name in tools or name in taken:
                log.warning(
                    "MCP server %r: tool %r left out: another tool is named %r",
                    server.name,
                    remote.name,
                    name,
                )
                continue
            tools[name] = schema_tool(
                name,
                remote.description or remote.title or "",
                _parameters(remote.input_schema),
                _caller(session, remote.name, remote.output_schema),
                timeout=server.timeout,
                requires_approval=_approval(server, remote, name),
            )
    return tools


def _parameters(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The tool's input schema as the model's ``parameters``: an object schema."""
    parameters = {k: v for k, v in schema.items() if k != "title"}
    if "type" not in parameters and not any(k in parameters for k in ("anyOf", "oneOf", "$ref")):
        parameters["type"] = "object"
    if parameters.get("type") == "object":
        parameters.setdefault("properties", {})
    return parameters


def _approval(server: MCPServer, remote: mcp_types.Tool, name: str) -> RequiresApproval:
    rule = server.approval
    if isinstance(rule, Mapping):
        for key in (remote.name, name):
            if key in rule:
                return rule[key]
    elif rule == "always":
        return True
    elif rule == "never":
        return False
    hints = remote.annotations
    if hints is not None and hints.read_only_hint is True:
        return False
    return bool(hints is not None and hints.destructive_hint is True)


def _caller(
    session: _Session, remote_name: str, output_schema: Mapping[str, Any] | None
) -> Callable[..., Any]:
    async def call_mcp_tool(**arguments: Any) -> str:
        result = await session.call(remote_name, arguments, current_stream())
        return observation(result, output_schema)

    call_mcp_tool.__name__ = call_mcp_tool.__qualname__ = f"mcp_{session.name}_{remote_name}"
    return call_mcp_tool


def observation(
    result: mcp_types.CallToolResult, output_schema: Mapping[str, Any] | None = None
) -> str:
    """A call's result as the model reads it (MCPToolError for an ``isError`` one).
    Structured content is JSON, but for a value the server wrapped as ``{"result": X}``
    (its output schema has that one property, as the SDK makes for a tool returning a
    string, a number or a list): X."""
    import mcp.types as types

    texts: list[str] = []
    notes: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            texts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            notes.append(f"[{block.type}: {block.mime_type}, {_size(block.data)}]")
        elif isinstance(block, types.ResourceLink):
            notes.append(f"[resource: {block.uri}" + (f" ({block.name})]" if block.name else "]"))
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                texts.append(resource.text)
            else:
                mime = f", {resource.mime_type}" if resource.mime_type else ""
                notes.append(f"[resource: {resource.uri}{mime}, {_size(resource.blob)}]")
    if result.is_error:
        message = "\n".join(texts + notes).strip()
        raise MCPToolError(message or "the tool failed and said nothing more")
    structured = result.structured_content
    if structured is not None:
        if (
            _wraps_result(output_schema)
            and isinstance(structured, dict)
            and set(structured) == {"result"}
        ):
            structured = structured["result"]
        if isinstance(structured, str):
            texts = [structured]
        else:
            texts = [json.dumps(structured, ensure_ascii=False, default=str)]
    return "\n".join(texts + notes)


def _wraps_result(schema: Mapping[str, Any] | None) -> bool:
    if not schema:
        return False
    properties = schema.get("properties")
    return isinstance(properties, Mapping) and set(properties) == {"result"}


def _size(data: str) -> str:
    size = len(data) * 3 // 4 - data[-2:].count("=")  # base64
    return f"{size} B" if size < 1024 else f"{max(1, round(size / 1024))} KB"


# -- one session ---------------------------------------------------------------------


class _Session:
    """One server's session for one run. It is opened and closed by its own task
    (the SDK's task groups and cancel scopes must stay in one task, whatever task the
    run's generator is finished in); calls come from the tool calls' tasks."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.name = server.name
        self.gone: str | None = None  # why its tools fail at once now
        self._client: Client | None = None
        self._ready: asyncio.Future[list[mcp_types.Tool]] | None = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._owner: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[Any]] = set()
        self._errlog: TextIO | None = None  # the write end of a stdio server's stderr

    async def start(self) -> list[mcp_types.Tool]:
        """Open the session and list the tools (MCPServerError with a clear reason)."""
        loop = asyncio.get_running_loop()
        self._ready = ready = loop.create_future()
        self._owner = asyncio.create_task(self._own(ready), name=f"agentkit-mcp-{self.name}")
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.server.startup_timeout)
        except TimeoutError:
            self.stop()
            self._owner.cancel()
            raise MCPServerError(
                f"it did not start within {self.server.startup_timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            self.stop()
            self._owner.cancel()
            raise

    def stop(self) -> None:
        self._stopping = True
        self._stop.set()

    async def closed(self) -> None:
        """Wait (bounded) until the session is closed (a stdio server: exited)."""
        owner = self._owner
        if owner is None or owner.done():
            return
        await asyncio.wait({owner}, timeout=CLOSE_TIMEOUT)
        if not owner.done():
            log.warning("MCP server %r: its session did not close in time", self.name)
            owner.cancel()

    async def _own(self, ready: asyncio.Future[list[mcp_types.Tool]]) -> None:
        from mcp import Client
        from mcp.types import Implementation

        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self._transport(stack)
                client = Client(
                    transport,
                    client_info=Implementation(name="agentkit-jupyter", version=_version()),
                    logging_callback=self._on_log,
                    message_handler=self._on_message,
                    cache=None,
                )
                try:
                    await stack.enter_async_context(client)
                finally:
                    self._spawned()
                listed = await _list_all(client)
                self._client = client
                if not ready.done():
                    ready.set_result(listed)
                await self._stop.wait()
                if self._calls:  # let the cancels of calls in flight go out first
                    await asyncio.wait(set(self._calls), timeout=1.0)
        except asyncio.CancelledError:
            _fail(ready, "its start was cancelled")
            raise
        except BaseException as exc:
            reason = _reason(exc, self.server)
            if not ready.done():
                log.debug("MCP server %r did not start", self.name, exc_info=exc)
                _fail(ready, reason)
            elif not self._stopping:
                self._gone(f"its session ended ({reason})")
                log.debug("MCP server %r: the session failed", self.name, exc_info=exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._spawned()
            self._client = None

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        server = self.server
        if server.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=server.command[0],
                args=server.command[1:],
                env=server.env,
                cwd=server.cwd,
            )
            self._errlog = _stderr_to_log(self.name)
            return stdio_client(params, errlog=self._errlog)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        assert server.url is not None
        http = httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(30.0, read=300.0))
        await stack.enter_async_context(http)
        return streamable_http_client(server.url, http_client=http)

    def _spawned(self) -> None:
        """The process has started (or failed to): the write end of its stderr pipe is
        the child's alone now."""
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None

    async def call(
        self, name: str, arguments: dict[str, Any], stream: ToolStream | None
    ) -> mcp_types.CallToolResult:
        """Call ``name``; a cancel of the caller cancels the request (the server is told)."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        client = self._client
        if self.gone is not None:
            raise self._gone(self.gone)
        if client is None:
            raise MCPServerGone(f"MCP server {self.name!r}: its session is closed.")

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if stream is not None:
                stream.progress(progress, total, message)

        # Its own task, cancelled once and left to finish: the SDK then sends the
        # cancellation (shielded) whatever else cancels the caller.
        request = asyncio.ensure_future(
            client.call_tool(name, arguments, progress_callback=on_progress)
        )
        self._calls.add(request)
        request.add_done_callback(self._call_done)
        try:
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            request.cancel()
            raise
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                how = (
                    "the process exited or crashed"
                    if self.server.command is not None
                    else "the connection was lost, or the server ended the session"
                )
                raise self._gone(
                    f"it closed the connection during a call of {name} ({how})"
                ) from None
            raise MCPToolError(exc.message) from None
        except (OSError, EOFError) as exc:
            raise self._gone(f"{type(exc).__name__} during a call of {name}: {exc}") from None
        except Exception as exc:
            if _is_transport_error(exc):
                raise self._gone(f"{type(exc).__name__} during a call of {name}: {exc}") from None
            raise

    def _call_done(self, request: asyncio.Task[Any]) -> None:
        self._calls.discard(request)
        if not request.cancelled():
            request.exception()  # retrieved: a call abandoned by a cancel is not an error

    def _gone(self, reason: str) -> MCPServerGone:
        if self.gone is None:
            self.gone = reason
            log.warning("MCP server %r is gone: %s", self.name, reason)
        return MCPServerGone(
            f"MCP server {self.name!r} is gone: {self.gone}. Its tools are unavailable for "
            "the rest of this run."
        )

    async def _on_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        log.info("[%s] %s: %s", self.name, params.level, params.data)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.debug("MCP server %r: %s", self.name, message)


def _fail(ready: asyncio.Future[Any], reason: str) -> None:
    """The start failed: ``start()`` raises it, if it still waits (if it gave up, the
    error is not logged as never retrieved)."""
    if not ready.done():
        ready.set_exception(MCPServerError(reason))
        ready.exception()


async def _list_all(client: Client) -> list[mcp_types.Tool]:
    listed: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # pages: a server that paginates forever is cut here
        page = await client.list_tools(cursor=cursor)
        listed.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return listed


def _stderr_to_log(name: str) -> TextIO:
    """A pipe for a server's stderr, whose lines a daemon thread logs; returns the
    write end (close it once the process has it)."""
    read_fd, write_fd = os.pipe()

    def pump() -> None:
        with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as reader:
            for line in reader:
                text = line.rstrip()
                if text:
                    log.info("[%s] %s", name, text[:MAX_STDERR_LINE])

    threading.Thread(target=pump, name=f"agentkit-mcp-stderr-{name}", daemon=True).start()
    return os.fdopen(write_fd, "w", encoding="utf-8")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _is_transport_error(exc: BaseException) -> bool:
    import anyio

    try:
        import httpx2
    except ImportError:  # pragma: no cover - a dependency of mcp
        return isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError)
    return isinstance(
        exc,
        anyio.ClosedResourceError
        | anyio.BrokenResourceError
        | anyio.EndOfStream
        | httpx2.TransportError,
    )


def _reason(exc: BaseException, server: MCPServer) -> str:
    """Why a session failed, in a line (no header, no environment, the URL redacted)."""
    leaves = _leaves(exc)
    leaf = next((e for e in leaves if not isinstance(e, asyncio.CancelledError)), leaves[0])
    from mcp import MCPError

    if isinstance(leaf, FileNotFoundError) and server.command is not None:
        return f"command not found: {server.command[0]}"
    if isinstance(leaf, PermissionError) and server.command is not None:
        return f"cannot run {server.command[0]}: permission denied"
    if isinstance(leaf, MCPError):
        if server.command is not None and "closed" in leaf.message.lower():
            return (
                "the process exited or closed its output before answering (its stderr is "
                "in the log 'agentkit_jupyter.mcp')"
            )
        return f"the server answered: {leaf.message}"
    if server.url is not None and _is_transport_error(leaf):
        return f"cannot reach {redact_url(server.url)}: {type(leaf).__name__}: {leaf}"
    text = str(leaf)
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


# -- names ---------------------------------------------------------------------------


def _clean(name: str) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9_-]+", "_", name).strip("_")
    return cleaned or "tool"


def _fit(name: str) -> str:
    """A tool name the model accepts: at most 64 characters (a long one keeps a hash
    of itself, so two long names stay apart)."""
    if _TOOL_NAME.match(name):
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def _default_name(command: Sequence[str] | None, url: str | None) -> str:
    if url is not None:
        from urllib.parse import urlsplit

        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            host = ""
        return _clean(host)[:32] or "mcp"
    assert command
    program = Path(command[0]).name.removesuffix(".exe")
    target = program
    if _LAUNCHERS.match(program):
        target = next((a for a in command[1:] if not a.startswith("-")), program)
    stem = re.sub(r"\.(py|js|mjs|cjs|ts)$", "", Path(target).name)
    return _clean(stem)[:32] or "mcp"


def _check_approval(approval: ServerApproval, name: str) -> ServerApproval:
    if approval is None or approval in ("always", "never"):
        return approval
    if isinstance(approval, Mapping):
        for tool_name, rule in approval.items():
            if not isinstance(rule, bool) and not callable(rule):
                raise ValueError(
                    f"MCP server {name!r}: approval[{tool_name!r}] must be a bool or a callable"
                )
        return dict(approval)
    raise ValueError(f"MCP server {name!r}: approval must be 'always', 'never', a dict or None")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentkit-jupyter")
    except PackageNotFoundError:  # pragma: no cover - a source tree
        return "0"


__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "MCPServer",
    "MCPServerError",
    "MCPServerGone",
    "MCPToolError",
    "OpenedSources",
    "configure_servers",
    "configured_servers",
    "observation",
    "open_sources",
]
