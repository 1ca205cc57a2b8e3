"""The Jupyter server extension: configuration, the task hub, and routes."""

from __future__ import annotations

import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Float, Int, List, Unicode, default

from ..core import AgentPool, demo_agents
from ..core.demo import bench_agents
from ..protocol import API_KEY_HEADER, ENV_API_KEY, ENV_SERVER_TOKEN, ENV_SERVER_URL
from ..tasks import HubLimits, StoreError, TaskHub, TaskStore
from . import rest, websocket
from .agents import AgentLoadError, agents_from, import_object, load_entry_point_agents

# The hub's own defaults are the traitlets' defaults: one source for each number.
_LIMITS = HubLimits()


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
    api_key = Unicode(
        None,
        allow_none=True,
        help="Optional extra secret every task WebSocket must present, as the seed service "
        f"did: header '{API_KEY_HEADER}' (or 'Authorization: ApiKey <key>'); the 'api_key' "
        "query parameter is accepted for old clients. Jupyter's own auth always applies. "
        f"Default: the {ENV_API_KEY} environment variable (preferred: a key given on the "
        "command line or in a config file shows up in Jupyter's DEBUG log).",
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

    hub: TaskHub

    def initialize_settings(self) -> None:
        pool = AgentPool()
        if self.load_demo_agents:
            for agent in demo_agents():
                pool.register(agent)
        if self.load_bench_agents:
            for agent in bench_agents():
                pool.register(agent)
        if self.llm_base_url:
            pool.register(self._endpoint_agent(), replace=True)
        sources: list[tuple[str, Any]] = []
        if self.load_entry_points:
            sources.extend(load_entry_point_agents())
        for spec in self.agents:
            try:
                sources.append((spec, import_object(spec)))
            except AgentLoadError as exc:
                self.log.error("agentkit: %s", exc)
        for origin, obj in sources:
            try:
                for agent in agents_from(obj, origin):
                    pool.register(agent, replace=True)
            except AgentLoadError as exc:
                self.log.error("agentkit: %s", exc)
        self.hub = TaskHub(
            pool,
            HubLimits(
                max_events_in_memory=self.max_events_in_memory,
                max_subscribers_per_task=self.max_subscribers_per_task,
                subscriber_max_lag_messages=self.subscriber_max_lag_messages,
                subscriber_max_lag_bytes=self.subscriber_max_lag_bytes,
                max_tasks=self.max_tasks,
            ),
            store=self._open_store(),
        )
        self.settings["agentkit"] = self
        self._apply_retention()
        self.log.info("agentkit: hosting agents %s", ", ".join(a.name for a in pool) or "none")
        self._advertise_to_kernels()

    def _open_store(self) -> TaskStore | None:
        path = self.db_path
        if path is None:
            from jupyter_core.paths import jupyter_data_dir

            path = os.path.join(jupyter_data_dir(), "agentkit", "tasks.sqlite3")
        if not path:
            return None
        try:
            store = TaskStore(path)
        except (StoreError, OSError) as exc:
            self.log.error("agentkit: task history is off for this session: %s", exc)
            return None
        self.log.info("agentkit: task history in %s", path)
        return store

    def _apply_retention(self) -> None:
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
            description=f"{self.default_model} at {self.llm_base_url}, with the demo tools.",
            gateway=OpenAIGateway(
                base_url=self.llm_base_url,
                api_key=self.llm_api_key,
                timeout=self.llm_timeout,
                max_retries=self.llm_max_retries,
            ),
            model=self.default_model,
            tools=[lookup_city, calculator],
            system_prompt="You are a helpful assistant. Use the tools when they help.",
        )

    def _advertise_to_kernels(self) -> None:
        """Kernels inherit the server's environment: tell them where the server is."""
        server = self.serverapp
        if server is None:
            return
        os.environ[ENV_SERVER_URL] = server.connection_url
        token = server.identity_provider.token
        if token:
            os.environ[ENV_SERVER_TOKEN] = token

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        # The port is final only once the server listens.
        self._advertise_to_kernels()
        self._retention = PeriodicCallback(self._apply_retention, 3600 * 1000)
        self._retention.start()

    def initialize_handlers(self) -> None:
        self.handlers.extend(rest.default_handlers)
        self.handlers.extend(websocket.default_handlers)

    async def stop_extension(self) -> None:
        retention = getattr(self, "_retention", None)
        if retention is not None:
            retention.stop()
        await self.hub.shutdown()
