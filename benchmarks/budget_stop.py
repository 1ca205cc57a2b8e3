"""How soon after a run crosses its budget, mid-call, does it end?

The engine (the runtime, no server) asks a real OpenAI-compatible endpoint on
loopback (tests/llm_server.py) that streams a long answer, one word every
``--chunk-ms`` (default 20 ms), with a budget of ``--max-tokens`` (default 60). A
wrapper around the gateway notes when each streamed piece reaches the engine; the
piece that takes the run past the budget is the crossing. For each of ``--runs``
runs (default 100, after 3 uncounted) it measures:

- crossing -> ``cancelled`` event (its timestamp): the run has ended, code
  ``budget_exceeded``;
- crossing -> the endpoint sees the client hang up (its handler polls every 10 ms):
  the model call was aborted, not left streaming.

Prints p50 / p99 / max in milliseconds; the target is p99 under 200 ms for the
first (issue 15).

    .venv/bin/python benchmarks/budget_stop.py [--runs 100] [--max-tokens 60] [--chunk-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _harness import machine, percentile, table  # noqa: E402
from llm_server import FakeLLMServer, Reply  # noqa: E402

from agentkit_jupyter.core import OpenAIGateway, ReActEngine  # noqa: E402
from agentkit_jupyter.core.costs import Budget  # noqa: E402
from agentkit_jupyter.core.events import EventType  # noqa: E402
from agentkit_jupyter.core.llm import LLMGateway, ModelRequest, ModelTurn, TokenDelta  # noqa: E402

TARGET_MS = 200.0


class Timed(LLMGateway):
    """The gateway, with the arrival time of each streamed piece noted."""

    def __init__(self, inner: LLMGateway) -> None:
        self.inner = inner
        self.arrivals: list[float] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        async for item in self.inner.stream(request):
            if isinstance(item, TokenDelta) and item.text:
                self.arrivals.append(time.time())
            yield item

    async def aclose(self) -> None:
        await self.inner.aclose()


async def one_run(server: FakeLLMServer, max_tokens: int, chunk_s: float) -> tuple[float, float]:
    words = " ".join(f"w{i}" for i in range(max_tokens * 4))
    server.enqueue(Reply(text=words, chunk_delay=chunk_s))
    gateway = Timed(OpenAIGateway(server.url, timeout=30, max_retries=0))
    try:
        engine = ReActEngine(gateway)
        stream = engine.execute_stream(
            [{"role": "user", "content": "talk"}],
            [],
            "bench-model",
            "bench",
            None,
            budget=Budget(max_tokens=max_tokens),
        )
        events = [event async for event in stream]
    finally:
        await gateway.aclose()
    end = events[-1]
    assert end.event_type is EventType.CANCELLED and end.data["code"] == "budget_exceeded", end
    # The first call's prompt is not known while it streams: piece max_tokens + 1 crosses.
    crossing = gateway.arrivals[max_tokens]
    request = server.requests[-1]
    deadline = time.monotonic() + 5
    while not request.disconnected.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    hung_up = time.time()
    return (end.timestamp - crossing) * 1000, (hung_up - crossing) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=60)
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    args = parser.parse_args()
    print(machine())
    with FakeLLMServer() as server:
        ended: list[float] = []
        aborted: list[float] = []
        for n in range(args.warmup + args.runs):
            end_ms, abort_ms = await one_run(server, args.max_tokens, args.chunk_ms / 1000)
            if n >= args.warmup:
                ended.append(end_ms)
                aborted.append(abort_ms)
    rows = []
    for name, values, target in (
        ("crossing -> cancelled event", ended, TARGET_MS),
        ("crossing -> the endpoint sees the hang-up", aborted, None),
    ):
        p99 = percentile(values, 99)
        verdict = "-" if target is None else ("met" if p99 < target else "**missed**")
        rows.append(
            [
                name,
                f"{percentile(values, 50):.2f}",
                f"{p99:.2f}",
                f"{max(values):.2f}",
                verdict,
            ]
        )
    print(table(["figure (ms)", "p50", "p99", "max", f"target p99 < {TARGET_MS:g} ms"], rows))


if __name__ == "__main__":
    asyncio.run(main())
