"""Run an agent in a terminal and print its steps as they arrive.

python -m agentkit_jupyter demo "Compare Paris and Rome"
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agentkit-jupyter", description="Run a built-in demo agent in the terminal."
    )
    parser.add_argument("agent", choices=[a.name for a in demo_agents()])
    parser.add_argument("question", nargs="?", default="How do Paris and Berlin compare?")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args.agent, args.question))


if __name__ == "__main__":
    sys.exit(main())
