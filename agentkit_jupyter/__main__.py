"""Run an agent in a terminal and print its steps as they arrive.

python -m agentkit_jupyter demo "Compare Paris and Rome"

Other commands are subcommands (``agentkit-jupyter <command> --help``):

agentkit-jupyter export-otel [--db FILE] [--endpoint URL] [--task ID ...] [filters]
    back-fill finished runs of a task history to an OpenTelemetry collector.

agentkit-jupyter worker --backend redis://... --agents pkg.mod:agents [...]
    run tasks queued on Redis by Jupyter servers (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from .core import AgentPool, CancellationToken, EventType, StepEvent, demo_agents


def _print_event(event: StepEvent) -> None:
    data = event.data
    kind = event.event_type
    if kind is EventType.TOKEN:
        print(data["delta"], end="", flush=True)
    elif kind is EventType.THOUGHT:
        print()
    elif kind is EventType.TOOL_CALL:
        print(f"  -> {data['name']}({json.dumps(data['arguments'], ensure_ascii=False)})")
    elif kind is EventType.OBSERVATION:
        mark = "!!" if data["is_error"] else "<-"
        print(f"  {mark} {data['output'][:200]}  ({data['duration_ms']:.0f} ms)")
    elif kind is EventType.FINAL_ANSWER:
        print(f"\n\nAnswer: {data['output']}")
        print(f"({data['total_steps']} steps, {data['total_tokens']} tokens)")
    elif kind is EventType.ERROR:
        print(f"\nError [{data['code']}]: {data['message']}", file=sys.stderr)
    elif kind is EventType.CANCELLED:
        print(f"\nCancelled: {data['message']}", file=sys.stderr)


async def _run(agent_name: str, question: str) -> int:
    pool = AgentPool(demo_agents())
    agent = pool.get(agent_name)
    token = CancellationToken()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, token.cancel, "Ctrl+C")
    status = 1
    async for event in agent.stream(question, token):
        _print_event(event)
        if event.event_type is EventType.FINAL_ANSWER:
            status = 0
    return status


def _export_otel(argv: list[str]) -> int:
    """``agentkit-jupyter export-otel``: finished runs of the SQLite history, as spans."""
    from .tasks.listing import ListFilter, parse_statuses, parse_time

    parser = argparse.ArgumentParser(
        prog="agentkit-jupyter export-otel",
        description="Send the spans of finished runs in a task history (the server's "
        "SQLite file) to an OTLP/HTTP collector (GenAI semantic conventions). The "
        "collector and its headers default to the standard OTEL_EXPORTER_OTLP_* "
        "variables; content goes out only with "
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.",
    )
    parser.add_argument("--db", help="the history file (default: the server's default)")
    parser.add_argument("--endpoint", help="collector base URL or .../v1/traces URL")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an HTTP header of each request (repeatable)",
    )
    parser.add_argument("--task", action="append", metavar="ID", help="a task id (repeatable)")
    parser.add_argument("--agent", action="append", help="only runs of this agent (repeatable)")
    parser.add_argument("--status", action="append", help="only runs in this status")
    parser.add_argument("--since", help="only runs created at or after (ISO 8601)")
    parser.add_argument("--limit", type=int, help="only the newest N runs")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait per run")
    args = parser.parse_args(argv)

    from .tasks.store import TaskStore
    from .tasks.telemetry import OtelExporter, OtelUnavailableError, export_history

    path = args.db
    if path is None:
        from jupyter_core.paths import jupyter_data_dir

        path = os.path.join(jupyter_data_dir(), "agentkit", "tasks.sqlite3")
    if not os.path.exists(path):
        print(f"No task history at {path}.", file=sys.stderr)
        return 2
    headers = dict(h.split("=", 1) for h in args.header if "=" in h)
    try:
        chosen = ListFilter(
            frozenset(args.agent or ()),
            parse_statuses(args.status or []),
            parse_time(args.since) if args.since else None,
            args.limit,
        )
        exporter = OtelExporter(args.endpoint, headers or None)
    except (ValueError, OtelUnavailableError) as exc:
        print(exc, file=sys.stderr)
        return 2
    store = TaskStore(path)
    try:
        done = export_history(
            store, exporter, task_ids=args.task, chosen=chosen, timeout=args.timeout
        )
    finally:
        store.close()
        exporter.shutdown()
    for task_id in done.skipped:
        print(f"skipped {task_id}: not a finished task of this history", file=sys.stderr)
    where = exporter.endpoint
    if not done.delivered:
        print(
            f"{len(done.task_ids)} run(s), {done.spans} span(s): {where} did not take them all",
            file=sys.stderr,
        )
        return 1
    print(f"exported {len(done.task_ids)} run(s), {done.spans} span(s) to {where}")
    return 0


def _worker(argv: list[str]) -> int:
    """``agentkit-jupyter worker``: run tasks queued on a shared backend."""
    parser = argparse.ArgumentParser(
        prog="agentkit-jupyter worker",
        description="Take tasks that Jupyter servers queued on Redis and run them, "
        "streaming their events back through Redis (docs/scale-out.md). SIGTERM or "
        "Ctrl+C stops it: its runs get --grace-seconds to finish, then each one still "
        "going ends interrupted and its continuation is queued for another worker.",
    )
    parser.add_argument("--backend", required=True, help="redis://[user:password@]host:port/db")
    parser.add_argument(
        "--agents",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="agents to run: an Agent, an AgentPool, a list or a callable (repeatable)",
    )
    parser.add_argument("--demo-agents", action="store_true", help="also the built-in demo agents")
    parser.add_argument("--prefix", default="agentkit:", help="the prefix of every Redis key")
    parser.add_argument("--name", help="this worker's name (default: host-pid)")
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--max-running", type=int, default=100, help="runs at once")
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=10.0,
        help="on SIGTERM: how long runs may go on before they are handed over (0: at once)",
    )
    args = parser.parse_args(argv)
    if not args.backend.startswith(("redis://", "rediss://", "unix://")):
        parser.error("--backend must be a redis:// (or rediss://, unix://) URL")
    if args.lease_seconds <= 0 or args.max_running < 1 or args.grace_seconds < 0:
        parser.error("--lease-seconds must be > 0, --max-running >= 1, --grace-seconds >= 0")
    from .server.agents import AgentLoadError, agents_from, import_object

    found = list(demo_agents()) if args.demo_agents else []
    try:
        for spec in args.agents:
            found += agents_from(import_object(spec), spec)
    except AgentLoadError as exc:
        print(f"agentkit-jupyter worker: {exc}", file=sys.stderr)
        return 2
    if not found:
        parser.error("no agents: give --agents MODULE:ATTR (or --demo-agents)")
    try:
        from .tasks.redis_backend import RedisBackend, RedisWorkQueue, connect
    except ImportError:
        print("the worker needs redis: pip install 'agentkit-jupyter[redis]'", file=sys.stderr)
        return 2
    from .tasks.worker import Worker

    async def serve() -> int:
        client = connect(args.backend)
        backend = RedisBackend(client, args.prefix)
        queue = RedisWorkQueue(client, args.prefix, lease_seconds=args.lease_seconds)
        worker = Worker(
            backend,
            queue,
            AgentPool(found),
            name=args.name,
            lease_seconds=args.lease_seconds,
            max_running=args.max_running,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker.start()
        names = ", ".join(a.name for a in found)
        print(f"worker {worker.name}: agents {names}; waiting for tasks", flush=True)
        await stop.wait()
        print(f"worker {worker.name}: stopping", flush=True)
        # A grace of 0 still hands over (at once): only a crash leaves it to the lease.
        await worker.stop(grace_seconds=max(args.grace_seconds, 1e-3))
        await backend.close()
        return 0

    return asyncio.run(serve())


# Subcommands by name; anything else is the name of a demo agent to run.
COMMANDS = {"export-otel": _export_otel, "worker": _worker}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(
        prog="agentkit-jupyter", description="Run a built-in demo agent in the terminal."
    )
    parser.add_argument("agent", choices=[a.name for a in demo_agents()])
    parser.add_argument("question", nargs="?", default="How do Paris and Berlin compare?")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args.agent, args.question))


if __name__ == "__main__":
    sys.exit(main())
