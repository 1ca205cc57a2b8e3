"""The Jupyter server extension: configuration, the task hub, and routes."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable
from functools import partial, wraps
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from ..core import AgentPool, demo_agents, redact_url
from ..core.costs import set_prices
from ..core.demo import bench_agents
from ..core.llm import REDACTED
from ..core.mcp import configure_servers, configured_servers
from ..protocol import API_KEY_HEADER, ENV_API_KEY, ENV_SERVER_TOKEN, ENV_SERVER_URL
from ..tasks import HubLimits, StoreError, TaskHub, TaskStore
from ..tasks.shared import SharedTasks
from ..tasks.store import MAX_PENDING_BYTES
from ..tasks.telemetry import LiveExport, OtelExporter, export_requested, otel_secrets
from ..tasks.worker import Worker
from . import imports, rest, runs, telemetry, websocket
from .agents import AgentLoadError, agents_from, entry_point_sources, import_object
from .base import CreationLimiter, KeyRing

REDACTED_SECRET = REDACTED
# An MCP server's environment variable whose value is kept out of every event.
_CREDENTIAL_NAME = re.compile(r"key|token|secret|passw|auth|credential", re.IGNORECASE)

# The hub's own defaults are the traitlets' defaults: one source for each number.
_LIMITS = HubLimits()
# The most a server's stop waits for queued spans to reach the collector.
OTEL_SHUTDOWN_SECONDS = 5.0


class AgentKitExtension(ExtensionApp):
    """Hosts agent tasks and streams them over a WebSocket."""

    name = "agentkit_jupyter"
    load_other_extensions = True

    agents = List(
        Unicode(),
        default_value=[],
        help="Agents to host, as import strings 'package.module:attribute' naming an Agent, "
        "an AgentPool, a list of agents, or a callable returning one of those.",
    ).tag(config=True)
    load_demo_agents = Bool(
        True, help="Host the built-in offline demo agents ('demo', 'demo-slow')."
    ).tag(config=True)
    load_bench_agents = Bool(
        False,
        help="Host 'bench-firehose', the benchmark source: its input is an event count, "
        "which it emits as fast as the stream takes them.",
    ).tag(config=True)
    load_entry_points = Bool(
        True,
        help="Host agents advertised by installed packages in the entry-point group "
        "'agentkit_jupyter.agents'.",
    ).tag(config=True)
    llm_base_url = Unicode(
        None,
        allow_none=True,
        help="Base URL of an OpenAI-compatible endpoint (e.g. http://127.0.0.1:11434/v1). "
        "When set, an agent named 'assistant' with the demo tools runs on it.",
    ).tag(config=True)
    llm_api_key = Unicode(
        None,
        allow_none=True,
        help="API key for llm_base_url (default: the OPENAI_API_KEY environment variable).",
    ).tag(config=True)
    llm_timeout = Float(
        60.0, help="Seconds to wait for the endpoint of llm_base_url before giving up on a call."
    ).tag(config=True)
    llm_max_retries = Int(
        3, help="Retries (with backoff) of a call to llm_base_url on 429, 5xx or a timeout."
    ).tag(config=True)
    default_model = Unicode(
        "gpt-4o-mini", help="Model name the 'assistant' agent asks llm_base_url for."
    ).tag(config=True)
    mcp_servers = Dict(
        value_trait=Dict(),
        default_value={},
        help="MCP servers agents may use by name: {name: {'command': [...], 'env': {...}, "
        "'cwd': ...} for a server started per run over stdio, or {name: {'url': ..., "
        "'headers': {...}}} for streamable HTTP; also 'include', 'exclude', 'prefix', "
        "'timeout', 'approval', 'startup_timeout' (see agentkit_jupyter.core.mcp.MCPServer). "
        "An agent uses one with MCPServer.named(name) in its tools; the 'assistant' agent "
        "of llm_base_url gets them all.",
    ).tag(config=True)
    prices = Dict(
        default_value={},
        help="Prices of models the price library (genai-prices) does not know, or that "
        "you pay differently: {model: {'input_per_mtok': dollars, 'output_per_mtok': "
        "dollars}}. They win over the library's.",
    ).tag(config=True)
    heartbeat_timeout = Float(
        60.0,
        help="Seconds without any client message after which a task WebSocket is closed "
        "(1000, 'Heartbeat timeout'). The run is not affected. 0 disables.",
    ).tag(config=True)
    max_message_size = Int(
        64 * 1024, help="Largest client WebSocket message in bytes; larger ones get an error."
    ).tag(config=True)
    max_subscribers_per_task = Int(
        _LIMITS.max_subscribers_per_task, help="WebSocket subscribers allowed per task."
    ).tag(config=True)
    subscriber_max_lag_messages = Int(
        _LIMITS.subscriber_max_lag_messages,
        help="A subscriber this many messages behind the live end is closed (4008); it can "
        "resume with ?after=.",
    ).tag(config=True)
    subscriber_max_lag_bytes = Int(
        _LIMITS.subscriber_max_lag_bytes,
        help="As subscriber_max_lag_messages, in bytes of pending messages.",
    ).tag(config=True)
    max_events_in_memory = Int(
        _LIMITS.max_events_in_memory, help="Events of one task kept in memory for replay."
    ).tag(config=True)
    max_tasks = Int(
        _LIMITS.max_tasks, help="Tasks kept; the oldest finished ones are forgotten first."
    ).tag(config=True)
    client_message_rate = Float(
        50.0, help="Client messages per second allowed per connection (bursts of twice that)."
    ).tag(config=True)
    max_running_tasks = Int(
        _LIMITS.max_running_tasks,
        help="Runs in flight at once, server and kernel tasks together; one more is refused "
        "with 429 'too_many_running_tasks' (not queued).",
    ).tag(config=True)
    max_creations_per_minute = Float(
        60.0,
        help="Tasks one user (or API key) may create per minute, in bursts of as many; "
        "beyond: 429 'too_many_creations' with Retry-After. 0 disables.",
    ).tag(config=True)
    max_connections_per_user = Int(
        _LIMITS.max_subscribers_per_user,
        help="Task WebSocket connections one user (or API key) may hold to one task; one "
        "more gets error 'too_many_connections' and close 4009.",
    ).tag(config=True)
    max_event_bytes = Int(
        _LIMITS.max_event_bytes,
        help="Largest message (a step, the result) of a task's log, in bytes of JSON. A larger "
        "one (a huge tool output or answer) is logged and streamed with its longest texts "
        "cut and a 'truncated' marker; the whole one is kept in the task history and served "
        "by GET agentkit/api/tasks/{id}/events/{seq}. 0 disables the cap.",
    ).tag(config=True)
    max_pending_bytes = Int(
        MAX_PENDING_BYTES,
        help="Most that waits for the task history's disk (about, in bytes). While the disk "
        "refuses writes beyond it, a task's later events are kept in memory only: its history "
        "on disk stops there, and GET status and the task's history_incomplete_from say so.",
    ).tag(config=True)
    api_keys = Dict(
        value_trait=Dict(),
        default_value={},
        help="Named API keys for programs: {name: {'scope': 'read' | 'write', 'key': KEY}} "
        "(or 'sha256': the hex SHA-256 of the key's UTF-8 bytes, to keep the key itself "
        "out of the config). A request presenting a key (header "
        f"'{API_KEY_HEADER}', 'Authorization: ApiKey <key>', or '?api_key=') may use the "
        "agentkit REST API and task WebSocket within its scope ('read': list and watch; "
        "'write': also create, cancel, delete), without a Jupyter token, and nothing else "
        "of the server.",
    ).tag(config=True)
    api_key = Unicode(
        None,
        allow_none=True,
        help="The seed service's single key: the same as an api_keys entry named 'api_key' "
        "with scope 'write'. A client of the seed's route works with it unchanged (header "
        f"'{API_KEY_HEADER}', 'Authorization: ApiKey <key>', or '?api_key='). Default: the "
        f"{ENV_API_KEY} environment variable (preferred: a key given on the command line or "
        "in a config file shows up in Jupyter's DEBUG log).",
    ).tag(config=True)

    @default("api_key")
    def _api_key_from_environment(self) -> str | None:
        return os.environ.get(ENV_API_KEY) or None

    db_path = Unicode(
        None,
        allow_none=True,
        help="SQLite file keeping tasks and their events across restarts. Default: "
        "<jupyter data dir>/agentkit/tasks.sqlite3. ':memory:' keeps them only in memory "
        "(tests); '' turns persistence off.",
    ).tag(config=True)
    retention_max_age_days = Float(
        30.0, allow_none=True, help="Finished tasks older than this are deleted (None: never)."
    ).tag(config=True)
    retention_max_count = Int(
        1000, allow_none=True, help="At most this many finished tasks are kept (None: no limit)."
    ).tag(config=True)

    # -- OpenTelemetry export (docs/telemetry.md) -----------------------------------------
    otel_endpoint = Unicode(
        None,
        allow_none=True,
        help="OTLP/HTTP collector every finished run's spans go to (GenAI semantic "
        "conventions; needs agentkit-jupyter[otel]): a base URL, '/v1/traces' appended as "
        "for OTEL_EXPORTER_OTLP_ENDPOINT, or a URL ending in /v1/traces. Default: the "
        "standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT; none "
        "of them set: no export.",
    ).tag(config=True)
    otel_headers = Dict(
        value_trait=Unicode(),
        default_value={},
        help="HTTP headers of each OTLP request (e.g. {'Authorization': 'Basic ...'} for "
        "Langfuse, {'x-mlflow-experiment-id': '1'} for MLflow). Default: the standard "
        "OTEL_EXPORTER_OTLP_HEADERS. Their values are kept out of every event.",
    ).tag(config=True)
    otel_capture_content = Bool(
        None,
        allow_none=True,
        help="Put prompts, answers, tool arguments and tool results in the spans. Default: "
        "the standard OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT (off unless true).",
    ).tag(config=True)

    # -- tasks on a shared backend (docs/scale-out.md) ------------------------------------
    backend_url = Unicode(
        None,
        allow_none=True,
        help="Keep tasks on Redis (redis://[user:password@]host:port/db) instead of this "
        "server's memory and SQLite file, so that several servers and workers share them "
        "(needs the [redis] extra). None: this server alone (the default).",
    ).tag(config=True)
    backend_prefix = Unicode(
        "agentkit:", help="The prefix of every Redis key (one per user or team)."
    ).tag(config=True)
    run_tasks = Bool(
        True,
        help="With backend_url: run queued tasks in this server too (an embedded worker). "
        "False: only create, list, watch and command them; workers run them.",
    ).tag(config=True)
    lease_seconds = Float(
        30.0,
        help="With backend_url: how long a run's worker may go silent before another "
        "worker takes the task over (and ends it interrupted).",
    ).tag(config=True)

    otel_exporter: OtelExporter | None = None
    worker_grace_seconds = Float(
        5.0,
        help="With backend_url and run_tasks: when the server stops, how long its "
        "embedded worker's runs may go on before each is handed over (ended "
        "interrupted, its continuation queued for another worker).",
    ).tag(config=True)
    shared: SharedTasks | None = None
    worker: Worker | None = None

    hub: TaskHub
    key_ring: KeyRing
    creation_limiter: CreationLimiter
    # Agent sources that failed to load: [{"source", "message"}], in GET agents.
    agent_errors: list[dict[str, str]]

    def _agent_error(self, source: str, exc: BaseException) -> None:
        """One agent source failed: log it, report it, and go on with the others."""
        text = str(exc) if isinstance(exc, AgentLoadError | ImportError) else ""
        name = type(exc).__name__
        message = f"{name}: {text}" if text else f"{name} (the details are in the server log)"
        message = self._redact(message)
        self.agent_errors.append({"source": source, "message": message})
        self.log.error("agentkit: skipped %s: %s", source, message, exc_info=exc)

    def _load_agents(self) -> AgentPool:
        pool = AgentPool()
        self.agent_errors = []
        if self.load_demo_agents:
            for agent in demo_agents():
                pool.register(agent)
        if self.load_bench_agents:
            for agent in bench_agents():
                pool.register(agent)
        if self.llm_base_url:
            try:
                pool.register(self._endpoint_agent(), replace=True)
            except Exception as exc:
                self._agent_error(f"llm_base_url ({redact_url(self.llm_base_url)})", exc)
        sources: list[tuple[str, Callable[[], Any]]] = []
        if self.load_entry_points:
            try:
                sources.extend(entry_point_sources())
            except Exception as exc:
                self._agent_error("entry points 'agentkit_jupyter.agents'", exc)
        sources.extend((spec, partial(import_object, spec)) for spec in self.agents)
        for origin, load in sources:
            try:
                for agent in agents_from(load(), origin):
                    pool.register(agent, replace=True)
            except Exception as exc:  # a broken agent package never disables the rest
                self._agent_error(origin, exc)
        return pool

    def _secrets(self) -> list[str]:
        """What never goes into an event: the server's token, the API keys."""
        found = []
        server = self.serverapp
        token = server.identity_provider.token if server is not None else None
        if token and len(token) >= 8:
            found.append(token)
        for entry in [*self.api_keys.values(), {"key": self.api_key}]:
            key = entry.get("key") if isinstance(entry, dict) else None
            if isinstance(key, str) and len(key) >= 8:
                found.append(key)
        # What MCP servers get to authenticate: HTTP headers, credential-like variables.
        for config in self.mcp_servers.values():
            headers = config.get("headers") if isinstance(config, dict) else None
            env = config.get("env") if isinstance(config, dict) else None
            values = list(headers.values()) if isinstance(headers, dict) else []
            if isinstance(env, dict):
                values += [v for k, v in env.items() if _CREDENTIAL_NAME.search(str(k))]
            found.extend(v for v in values if isinstance(v, str) and len(v) >= 8)
        found.extend(otel_secrets(self.otel_headers))
        # Messages are JSON text: a secret with a quote, a backslash or non-ASCII in it
        # appears there escaped.
        escaped = [json.dumps(s)[1:-1] for s in found]
        return found + [e for e in escaped if e not in found]

    def _redact(self, text: str) -> str:
        for secret in getattr(self, "_known_secrets", ()):
            if secret in text:
                text = text.replace(secret, REDACTED_SECRET)
        return text

    def initialize_settings(self) -> None:
        self._known_secrets = self._secrets()
        try:
            set_prices(self.prices)
        except ValueError as exc:
            self.log.error("agentkit: AgentKitExtension.prices left out: %s", exc)
        for problem in configure_servers(self.mcp_servers):
            self.log.error("agentkit: AgentKitExtension.mcp_servers entry left out: %s", problem)
        pool = self._load_agents()
        self.key_ring, problems = KeyRing.from_config(self.api_keys, self.api_key)
        for problem in problems:
            self.log.error("agentkit: API key left out: %s", problem)
        self.creation_limiter = CreationLimiter(self.max_creations_per_minute)
        self.hub = TaskHub(
            pool,
            HubLimits(
                max_events_in_memory=self.max_events_in_memory,
                max_subscribers_per_task=self.max_subscribers_per_task,
                subscriber_max_lag_messages=self.subscriber_max_lag_messages,
                subscriber_max_lag_bytes=self.subscriber_max_lag_bytes,
                max_tasks=self.max_tasks,
                max_running_tasks=self.max_running_tasks,
                max_subscribers_per_user=self.max_connections_per_user,
                max_event_bytes=self.max_event_bytes,
            ),
            store=self._open_store() if not self.backend_url else None,
            redact=self._redact if self._known_secrets else None,
        )
        if self.backend_url:
            self._open_backend()
        self.settings["agentkit"] = self
        self._start_otel_export()
        self._apply_retention()
        self.log.info("agentkit: hosting agents %s", ", ".join(a.name for a in pool) or "none")
        self._advertise_to_kernels()

    def _start_otel_export(self) -> None:
        """Export each run's spans when it ends, if an OTLP endpoint is configured."""
        if not export_requested(self.otel_endpoint):
            return
        try:
            exporter = OtelExporter(
                self.otel_endpoint or None,
                self.otel_headers or None,
                capture_content=self.otel_capture_content,
                redact=self._redact if self._known_secrets else None,
            )
        except Exception as exc:  # the extra missing, a malformed variable: no export
            self.log.error("agentkit: OpenTelemetry export is off: %s", self._redact(str(exc)))
            return
        self.otel_exporter = exporter
        self._otel_live = LiveExport(self.hub, exporter)
        content = "with" if exporter.capture_content else "without"
        self.log.info(
            "agentkit: exporting runs to %s (OTLP/HTTP, %s content)", exporter.endpoint, content
        )

    def _open_store(self) -> TaskStore | None:
        path = self.db_path
        if path is None:
            from jupyter_core.paths import jupyter_data_dir

            path = os.path.join(jupyter_data_dir(), "agentkit", "tasks.sqlite3")
        if not path:
            return None
        try:
            store = TaskStore(path, max_pending_bytes=self.max_pending_bytes)
        except (StoreError, OSError) as exc:
            self.log.error("agentkit: task history is off for this session: %s", exc)
            return None
        self.log.info("agentkit: task history in %s", path)
        return store

    def _open_backend(self) -> None:
        """The shared backend: its client connects at the first call, so a Redis that is
        down now fails requests (503), not the server's start."""
        try:
            from ..tasks.redis_backend import RedisBackend, RedisWorkQueue, connect
        except ImportError as exc:  # the [redis] extra is missing: say so, loudly
            raise RuntimeError(
                "AgentKitExtension.backend_url needs the redis package: "
                "pip install 'agentkit-jupyter[redis]'"
            ) from exc
        url = str(self.backend_url)
        client = connect(url)
        backend = RedisBackend(client, self.backend_prefix)
        queue = RedisWorkQueue(client, self.backend_prefix, lease_seconds=self.lease_seconds)
        self.shared = SharedTasks(self.hub, backend, queue)
        if self.run_tasks:
            self.worker = Worker(
                backend,
                queue,
                self.hub.agents,
                limits=self.hub.limits,
                lease_seconds=self.lease_seconds,
            )
            # Once the loop runs (also where the server is not started by its own
            # start(), as in tests that embed it).
            IOLoop.current().add_callback(self.worker.start)
        self.log.info(
            "agentkit: tasks on %s (prefix %s), %s",
            redact_url(url),
            self.backend_prefix,
            "running them here too" if self.run_tasks else "relay only",
        )

    def _apply_retention(self) -> None:
        if self.shared is not None:
            # On the backend, for every server sharing it (once the loop runs).
            try:
                asyncio.get_running_loop().create_task(self._apply_shared_retention())
            except RuntimeError:
                pass  # not started yet: _start_jupyter_server_extension applies it
            return
        max_age = self.retention_max_age_days
        removed = self.hub.apply_retention(
            max_age * 86400 if max_age is not None else None, self.retention_max_count
        )
        if removed:
            self.log.info("agentkit: retention removed %d old task(s)", removed)

    def _endpoint_agent(self) -> Any:
        from ..core import Agent
        from ..core.demo import calculator, lookup_city
        from ..core.openai_gateway import OpenAIGateway

        return Agent(
            name="assistant",
            description=f"{self.default_model} at {redact_url(self.llm_base_url or '')}, "
            "with the demo tools.",
            gateway=OpenAIGateway(
                base_url=self.llm_base_url,
                api_key=self.llm_api_key,
                timeout=self.llm_timeout,
                max_retries=self.llm_max_retries,
            ),
            model=self.default_model,
            tools=[lookup_city, calculator, *configured_servers()],
            system_prompt="You are a helpful assistant. Use the tools when they help.",
        )

    def _advertise_to_kernels(self) -> None:
        """Tell the kernels this server starts where it is, and its token, in their own
        environment only: the server's ``os.environ`` (which terminals, language servers
        and every other child inherit) never holds the token."""
        server = self.serverapp
        if server is None:
            return
        manager = server.kernel_manager
        if getattr(manager, "_agentkit_env", False):
            return
        start = manager.start_kernel

        @wraps(start)
        async def start_kernel(*args: Any, **kwargs: Any) -> Any:
            env = dict(kwargs.get("env") or os.environ)
            env[ENV_SERVER_URL] = server.connection_url
            token = server.identity_provider.token
            if token:
                env[ENV_SERVER_TOKEN] = token
            kwargs["env"] = env
            return await start(*args, **kwargs)

        setattr(manager, "start_kernel", start_kernel)  # noqa: B010 - this instance only
        setattr(manager, "_agentkit_env", True)  # noqa: B010

    async def _apply_shared_retention(self) -> None:
        assert self.shared is not None
        max_age = self.retention_max_age_days
        try:
            removed = await self.shared.backend.apply_retention(
                max_age * 86400 if max_age is not None else None, self.retention_max_count
            )
        except Exception as exc:
            self.log.warning("agentkit: retention on the backend failed: %s", exc)
            return
        if removed:
            self.log.info("agentkit: retention removed %d old task(s)", len(removed))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        self._retention = PeriodicCallback(self._apply_retention, 3600 * 1000)
        self._retention.start()
        if self.shared is not None:
            self._apply_retention()

    def initialize_handlers(self) -> None:
        # Runs imported from a notebook: before rest's tasks/{task_id} (see imports.py).
        self.handlers.extend(imports.default_handlers)
        self.handlers.extend(rest.default_handlers)
        self.handlers.extend(runs.default_handlers)
        self.handlers.extend(telemetry.default_handlers)
        self.handlers.extend(websocket.default_handlers)

    async def stop_extension(self) -> None:
        retention = getattr(self, "_retention", None)
        if retention is not None:
            retention.stop()
        # After a failed start there is no hub: stopping must still work (SIGTERM, ^C).
        if self.worker is not None:
            # A culled server's runs: a grace to finish, then handed over to a worker.
            await self.worker.stop(grace_seconds=self.worker_grace_seconds)
        hub: TaskHub | None = getattr(self, "hub", None)
        if hub is not None:
            await hub.shutdown()
        if self.shared is not None:
            await self.shared.close()
            await self.shared.backend.close()
        await self._stop_otel_export()

    async def _stop_otel_export(self) -> None:
        """Send the spans still queued, waiting a few seconds at most (a dead collector
        must not hold the server's shutdown)."""
        exporter = self.otel_exporter
        if exporter is None:
            return
        self.otel_exporter = None
        live: LiveExport | None = getattr(self, "_otel_live", None)
        if live is not None:
            await live.drain()
            live.close()
        try:
            await asyncio.wait_for(asyncio.to_thread(exporter.shutdown), OTEL_SHUTDOWN_SECONDS)
        except TimeoutError:
            self.log.warning("agentkit: OpenTelemetry spans still queued at shutdown dropped")
