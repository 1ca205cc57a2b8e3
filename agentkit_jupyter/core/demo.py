"""Built-in offline demo agents, played by the scripted model."""

from __future__ import annotations

import ast
import asyncio
import json
import operator
from collections.abc import AsyncIterator, Callable
from typing import Any

from .agent import Agent
from .llm import LLMError, LLMGateway, ModelRequest, ModelTurn, TokenDelta, Usage
from .scripted import ScriptContext, ScriptedGateway, ScriptedTurn
from .tools import tool

CITIES: dict[str, dict[str, Any]] = {
    "Paris": {"country": "France", "population": 2_102_650, "area_km2": 105.4},
    "Berlin": {"country": "Germany", "population": 3_878_100, "area_km2": 891.1},
    "Madrid": {"country": "Spain", "population": 3_416_771, "area_km2": 604.3},
    "Rome": {"country": "Italy", "population": 2_748_109, "area_km2": 1_287.4},
    "Vienna": {"country": "Austria", "population": 2_005_760, "area_km2": 414.9},
    "Lisbon": {"country": "Portugal", "population": 567_131, "area_km2": 100.1},
    "Warsaw": {"country": "Poland", "population": 1_862_402, "area_km2": 517.2},
    "Amsterdam": {"country": "Netherlands", "population": 931_298, "area_km2": 219.3},
}

_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_evaluate(node.operand)))
    raise ValueError(f"unsupported expression element: {type(node).__name__}")


@tool
def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression.

    Args:
        expression: Numbers with + - * / ** and parentheses, e.g. "(2 + 3) * 4".
    """
    return round(_evaluate(ast.parse(expression, mode="eval")), 6)


@tool
def lookup_city(city: str) -> dict[str, Any]:
    """Look up a European city's country, population and area.

    Args:
        city: The city's English name, e.g. "Paris".
    """
    key = city.strip().title()
    if key not in CITIES:
        raise KeyError(f"no city {city!r} in the table; known: {', '.join(CITIES)}")
    return {"city": key, **CITIES[key]}


@tool(timeout=60)
async def slow_search(query: str, seconds: float = 1.0) -> str:
    """Search a (simulated) slow archive.

    Args:
        query: What to search for.
        seconds: How long the search takes.
    """
    await asyncio.sleep(seconds)
    return f"3 archived notes mention {query!r}."


def _cities_in(question: str) -> list[str]:
    found = [name for name in CITIES if name.lower() in question.lower()]
    return (found + [c for c in ("Berlin", "Paris") if c not in found])[:2]


def _demo_turn_1(ctx: ScriptContext) -> ScriptedTurn:
    first, second = _cities_in(ctx.question)
    return ScriptedTurn(
        f"To compare {first} and {second} I need their populations, so I will look both "
        "up in the city table at once.",
        [("lookup_city", {"city": first}), ("lookup_city", {"city": second})],
    )


def _demo_turn_2(ctx: ScriptContext) -> ScriptedTurn:
    a, b = (json.loads(o) for o in ctx.observations[-2:])
    return ScriptedTurn(
        f"{a['city']} has {a['population']:,} people and {b['city']} {b['population']:,}. "
        "Now I compute the ratio with the calculator.",
        [("calculator", {"expression": f"{a['population']} / {b['population']}"})],
    )


def _demo_turn_3(ctx: ScriptContext) -> ScriptedTurn:
    a, b = (json.loads(o) for o in ctx.observations[-3:-1])
    ratio = float(ctx.observations[-1])
    return ScriptedTurn(
        f"{a['city']} ({a['population']:,} people) has {ratio:.2f} times the population "
        f"of {b['city']} ({b['population']:,} people)."
    )


def _slow_turn(n: int, total: int) -> Callable[[ScriptContext], ScriptedTurn]:
    def turn(ctx: ScriptContext) -> ScriptedTurn:
        return ScriptedTurn(
            f"Step {n} of {total}: I search the archive again, this time for part {n} "
            f"of {ctx.question!r}, to gather more evidence.",
            [("slow_search", {"query": f"{ctx.question} (part {n})", "seconds": 1.0})],
        )

    return turn


SLOW_STEPS = 12


def demo_agents() -> list[Agent]:
    """The offline demo agents: ``demo`` (a few seconds) and ``demo-slow`` (over 30 s)."""
    demo = Agent(
        name="demo",
        description="Compares two European cities with a table lookup and a calculator "
        "(offline scripted model, a few seconds).",
        gateway=ScriptedGateway([_demo_turn_1, _demo_turn_2, _demo_turn_3], token_delay=0.03),
        tools=[lookup_city, calculator],
        system_prompt="You answer questions about European cities using your tools.",
    )
    slow_script: list[Any] = [_slow_turn(n, SLOW_STEPS) for n in range(1, SLOW_STEPS + 1)]
    slow_script.append(
        ScriptedTurn(f"After {SLOW_STEPS} searches the archive has nothing more to add.")
    )
    slow = Agent(
        name="demo-slow",
        description="Searches a slow archive step after step for over 30 seconds "
        "(offline scripted model), to watch streaming and try Cancel.",
        gateway=ScriptedGateway(slow_script, token_delay=0.08),
        tools=[slow_search],
        max_steps=SLOW_STEPS + 1,
    )
    return [demo, slow]


class FirehoseGateway(LLMGateway):
    """A model that streams N one-word tokens as fast as they are taken, then answers.

    The user's input is ``N [rate=R] [delay=S]``: N tokens (default 1000); with
    ``rate``, R tokens per second on a fixed schedule instead of as fast as possible
    (for latency measurements); with ``delay``, S seconds of silence before the first
    token, so that many subscribers can connect before the stream starts. It
    measures the stream, not a model.
    """

    async def stream(self, request: ModelRequest) -> AsyncIterator[TokenDelta | ModelTurn]:
        text = next((str(m.get("content")) for m in request.messages if m["role"] == "user"), "")
        count, rate, delay = parse_firehose_input(text)
        loop = asyncio.get_running_loop()
        if delay > 0:
            await asyncio.sleep(delay)
        if rate is None:
            for _ in range(count):
                yield TokenDelta("tok ")
        else:
            start = loop.time()
            for index in range(count):
                # An absolute schedule, so that timer drift does not lower the rate.
                wait = start + index / rate - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                yield TokenDelta("tok ")
        yield ModelTurn(f"streamed {count} tokens", (), Usage(1, count))


def parse_firehose_input(text: str) -> tuple[int, float | None, float]:
    """``"N [rate=R] [delay=S]"`` -> (N, R or None, S); LLMError if malformed."""
    usage = "bench-firehose takes 'N [rate=R] [delay=S]' (an event count, events per "
    words = text.split()
    try:
        count = int(words[0]) if words else 1000
        options = dict(word.split("=", 1) for word in words[1:])
        rate = float(options.pop("rate")) if "rate" in options else None
        delay = float(options.pop("delay", 0))
    except ValueError:
        raise LLMError(f"{usage}second, seconds before the first), not {text!r}") from None
    if options or count < 0 or not delay >= 0 or (rate is not None and not 0 < rate < 1e9):
        raise LLMError(f"{usage}second, seconds before the first), not {text!r}")
    return count, rate, delay


def bench_agents() -> list[Agent]:
    """``bench-firehose``: input N gives N token events and a final answer (then the
    task's result), emitted without any sleep (or paced: see :class:`FirehoseGateway`)."""
    return [
        Agent(
            name="bench-firehose",
            description="Benchmark source: the input is an event count, optionally "
            "'rate=<events/s>' and 'delay=<seconds>'; emits that many token events as fast "
            "as the stream takes them, or at that rate.",
            gateway=FirehoseGateway(),
            llm_idle_timeout=None,
        )
    ]
