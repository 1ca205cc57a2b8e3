"""Built-in offline demo agents, played by the scripted model."""

from __future__ import annotations

import ast
import asyncio
import json
import math
import operator
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
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

# Bounds of the calculator. A sync tool runs in a worker thread but holds the GIL
# while it computes, so one huge power (10**20000000) would freeze the whole
# server: every operation is checked *before* it is computed.
MAX_EXPRESSION_CHARS = 1000
MAX_NESTING = 100  # levels of parentheses, or of operations in the parsed expression
MAX_LITERAL_DIGITS = 100  # digits of one integer in the expression
MAX_RESULT_DIGITS = 1000  # digits of an exact integer at any point of the computation
_MAX_RESULT_BITS = math.ceil(MAX_RESULT_DIGITS * math.log2(10))

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_OUT_OF_RANGE = "result out of range: beyond the floating-point range of about ±1.8e308"


class ExpressionSyntaxError(ValueError):
    """The text is not an arithmetic expression the calculator understands."""


def _too_large(what: str) -> ValueError:
    return ValueError(f"result too large: {what} (the limit is {MAX_RESULT_DIGITS} digits)")


def parse_expression(expression: str) -> ast.expr:
    """Parse an arithmetic expression within the calculator's bounds.

    Raises :class:`ExpressionSyntaxError` if it is not arithmetic, ``ValueError``
    if it is too long or too deeply nested.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(
            f"expression too long: {len(expression):,} characters "
            f"(the limit is {MAX_EXPRESSION_CHARS:,})"
        )
    depth = deepest = 0
    for char in expression:
        depth += (char == "(") - (char == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise ValueError(f"expression too deeply nested (over {MAX_NESTING} levels)")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (RecursionError, MemoryError):
        raise ValueError(f"expression too deeply nested (over {MAX_NESTING} levels)") from None
    except (SyntaxError, ValueError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ExpressionSyntaxError(f"not an arithmetic expression: {detail}") from None
    _check_depth(tree.body)
    return tree.body


def _check_depth(root: ast.expr) -> None:
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_NESTING:
            raise ValueError(
                f"expression too deeply nested (over {MAX_NESTING} levels of operations)"
            )
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))


def _literal(node: ast.Constant) -> Number:
    value: object = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionSyntaxError(f"unsupported value: {value!r}")
    if isinstance(value, int) and abs(value) >= 10**MAX_LITERAL_DIGITS:
        raise ValueError(f"number too long: integers may have at most {MAX_LITERAL_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(_OUT_OF_RANGE)
    return value


def _shown(number: int) -> str:
    text = str(number)
    return text if len(text) <= 20 else f"a {len(text)}-digit number"


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        if abs(base) >= 2:
            # |base| ** exponent has about exponent * log10(|base|) digits: check first.
            if exponent.bit_length() > 64:
                raise _too_large(
                    f"a power with a {len(str(exponent))}-digit exponent would have "
                    "more than 10**18 digits"
                )
            digits = math.floor(exponent * math.log10(abs(base))) + 1
            if digits > MAX_RESULT_DIGITS:
                raise _too_large(f"{_shown(base)}**{exponent} would have {digits:,} digits")
        exact: int = base**exponent  # (0, 1 and -1 to any power are cheap)
        return exact
    b, e = float(base), float(exponent)  # OverflowError: beyond the float range
    if b < 0 and not e.is_integer():
        raise ValueError("a negative number to a fractional power has no real result")
    if b == 0 and e < 0:
        raise ZeroDivisionError("zero cannot be raised to a negative power")
    approximate: float = b**e
    return approximate


def _binary(op: type[ast.operator], left: Number, right: Number) -> Number:
    if op is ast.Pow:
        return _power(left, right)
    if op is ast.Mult and isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > _MAX_RESULT_BITS + 1:
            raise _too_large("the product would have too many digits")
    return _BINARY[op](left, right)


def _checked(value: Number) -> Number:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(_OUT_OF_RANGE)
    elif value.bit_length() > _MAX_RESULT_BITS:
        raise _too_large("an intermediate result has too many digits")
    return value


def _evaluate(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        return _literal(node)
    if isinstance(node, ast.BinOp):
        op = type(node.op)
        if op not in _BINARY:
            hint = " (use ** for powers)" if op is ast.BitXor else ""
            raise ExpressionSyntaxError(f"unsupported operator: {op.__name__}{hint}")
        left, right = _evaluate(node.left), _evaluate(node.right)
        try:
            return _checked(_binary(op, left, right))
        except OverflowError:
            raise ValueError(_OUT_OF_RANGE) from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ExpressionSyntaxError(f"unsupported expression element: {type(node).__name__}")


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, within the calculator's bounds.

    Integer arithmetic is exact; ``/`` and float operands give a float. Raises
    ``ValueError`` (or ``ZeroDivisionError``) with a message fit for the model.
    """
    value = _evaluate(parse_expression(expression))
    if abs(value) > sys.float_info.max:
        raise ValueError(_OUT_OF_RANGE)
    return value


@tool
def calculator(expression: str) -> int | float:
    """Evaluate an arithmetic expression.

    Args:
        expression: Numbers with + - * / ** and parentheses, e.g. "(2 + 3) * 4".
    """
    value = evaluate(expression)
    return value if isinstance(value, int) else round(value, 6)


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


# -- the demo agent's script: it picks its path from the question ---------------------

CAPABILITIES = (
    "I'm the offline demo agent: I can do arithmetic such as 'What is 17 * 23?' or look up "
    f"and compare cities ({', '.join(CITIES)}). Point agentkit at a real LLM for anything else."
)

# Runs of characters an arithmetic expression is made of (× ÷ ^ as people write them);
# one character class, so that matching stays linear in the question's length.
_EXPRESSION_RUN = re.compile(r"[\d.\s+\-*/()^×÷]+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER_RANGE = re.compile(r"\d+(?:-\d+)+")  # 2023-24, 1990-2000, 2024-05-01
_CITY_PATTERNS = {name: re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE) for name in CITIES}


@dataclass(frozen=True, slots=True)
class DemoRoute:
    """What the demo agent makes of a question: an expression, cities, or neither."""

    expression: str | None = None
    cities: tuple[str, ...] = ()


def _balanced(text: str) -> str:
    """Drop parentheses left open or closed at the edges of a run ("(so 2+3)")."""
    start, end = 0, len(text)
    opened, closed = text.count("("), text.count(")")
    while start < end:  # linear: the question may be long, and this runs on the event loop
        if text[start].isspace():
            start += 1
        elif text[end - 1].isspace():
            end -= 1
        elif opened > closed and text[start] == "(":
            start, opened = start + 1, opened - 1
        elif closed > opened and text[end - 1] == ")":
            end, closed = end - 1, closed - 1
        else:
            break
    return text[start:end]


def _is_arithmetic(candidate: str) -> bool:
    """An expression with at least one operation (a bare number is not a question)."""
    try:
        tree = parse_expression(candidate)
    except ExpressionSyntaxError:
        return False
    except ValueError:
        return True  # too long or too deep, but arithmetic: the calculator says why
    return any(isinstance(node, ast.BinOp) for node in ast.walk(tree))


def find_expression(question: str) -> str | None:
    """The longest arithmetic expression in the question, normalised for the calculator."""
    text = _THOUSANDS.sub("", question)
    best: str | None = None
    for match in _EXPRESSION_RUN.finditer(text):
        candidate = _balanced(match.group().strip().rstrip("."))
        candidate = candidate.replace("×", "*").replace("÷", "/").replace("^", "**")
        if not any(c.isdigit() for c in candidate) or not any(op in candidate for op in "+-*/"):
            continue
        if (best is None or len(candidate) > len(best)) and _is_arithmetic(candidate):
            best = candidate
    return best


def cities_in(question: str) -> tuple[str, ...]:
    """The CITIES named in the question (whole words, any case), in table order."""
    return tuple(name for name, pattern in _CITY_PATTERNS.items() if pattern.search(question))


def route(question: str) -> DemoRoute:
    """The expression and the cities in the question: the demo agent takes the
    expression to the calculator if there is one, else the cities to the city table,
    else it says what it can do. A number range or date next to a city ("Paris and
    Rome in 2023-24") is not taken for a subtraction.
    """
    cities = cities_in(question)
    expression = find_expression(question)
    if expression is not None and cities and _NUMBER_RANGE.fullmatch(expression):
        expression = None
    return DemoRoute(expression=expression, cities=cities)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _number(observation: str) -> int | float | None:
    try:
        value = json.loads(observation)
    except ValueError:
        return None
    return value if type(value) in (int, float) else None


def _shown_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _records(observations: list[str]) -> list[dict[str, Any]] | None:
    """The city records among these observations, or None if a lookup failed."""
    records = []
    for observation in observations:
        try:
            record = json.loads(observation)
        except ValueError:
            return None
        if not isinstance(record, dict) or "population" not in record:
            return None
        records.append(record)
    return records


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _arithmetic_turn(ctx: ScriptContext, step: int, path: DemoRoute) -> ScriptedTurn:
    assert path.expression is not None
    expression, shown = path.expression, _short(path.expression)
    if step == 0:
        return ScriptedTurn(
            f"This is arithmetic, so I hand {shown} to the calculator.",
            [("calculator", {"expression": expression})],
        )
    observation = ctx.observations[-1]
    value = _number(observation)
    if value is None:
        answer = f"The calculator could not evaluate {shown}: {observation}"
    else:
        answer = f"{shown} = {_shown_number(value)}"
    if path.cities:
        answer += f"\n\n(Ask me about {_listed(list(path.cities))} separately to look it up.)"
    return ScriptedTurn(answer)


def _city_facts(city: dict[str, Any]) -> str:
    density = city["population"] / city["area_km2"]
    return (
        f"{city['city']} is in {city['country']}: {city['population']:,} people on "
        f"{city['area_km2']:,} km², about {density:,.0f} people per km²."
    )


def _cities_turn(ctx: ScriptContext, step: int, cities: tuple[str, ...]) -> ScriptedTurn:
    if step == 0:
        if len(cities) == 1:
            text = f"{cities[0]} is in my city table, so I look it up."
        elif len(cities) == 2:
            text = (
                f"To compare {cities[0]} and {cities[1]} I need their populations, so I will "
                "look both up in the city table at once."
            )
        else:
            text = (
                f"To compare {_listed(list(cities))} I look them all up in the city table at once."
            )
        return ScriptedTurn(text, [("lookup_city", {"city": city}) for city in cities])
    records = _records(ctx.observations[: len(cities)])
    if records is None:
        return ScriptedTurn(
            f"The city table did not answer for {_listed(list(cities))}: "
            + " ".join(ctx.observations[: len(cities)])
        )
    if len(records) == 1:
        return ScriptedTurn(_city_facts(records[0]))
    if len(records) == 2:
        a, b = records
        if step == 1:
            return ScriptedTurn(
                f"{a['city']} has {a['population']:,} people and {b['city']} "
                f"{b['population']:,}. Now I compute the ratio with the calculator.",
                [("calculator", {"expression": f"{a['population']} / {b['population']}"})],
            )
        ratio = _number(ctx.observations[-1])
        if ratio is None:
            return ScriptedTurn(f"The calculator could not divide: {ctx.observations[-1]}")
        return ScriptedTurn(
            f"{a['city']} ({a['population']:,} people) has {ratio:.2f} times the population "
            f"of {b['city']} ({b['population']:,} people)."
        )
    by_people = sorted(records, key=lambda r: r["population"], reverse=True)
    by_area = sorted(records, key=lambda r: r["area_km2"], reverse=True)
    ranking = ", ".join(f"{r['city']} ({r['population']:,})" for r in by_people)
    return ScriptedTurn(
        f"By population: {ranking}. {by_people[0]['city']} is the largest and "
        f"{by_people[-1]['city']} the smallest; by area {by_area[0]['city']} is the largest "
        f"({by_area[0]['area_km2']:,} km²) and {by_area[-1]['city']} the smallest "
        f"({by_area[-1]['area_km2']:,} km²)."
    )


def _demo_turn(step: int) -> Callable[[ScriptContext], ScriptedTurn]:
    """Turn ``step`` (0-based) of the demo agent: the route is read off the question."""

    def turn(ctx: ScriptContext) -> ScriptedTurn:
        path = route(ctx.question)
        if path.expression is not None:
            return _arithmetic_turn(ctx, step, path)
        if path.cities:
            return _cities_turn(ctx, step, path.cities)
        return ScriptedTurn(CAPABILITIES)

    return turn


DEMO_TURNS = 3  # the longest path: look up two cities, divide, answer


def _slow_turn(n: int, total: int) -> Callable[[ScriptContext], ScriptedTurn]:
    def turn(ctx: ScriptContext) -> ScriptedTurn:
        # "Search n of total", not "Step": the answer is one more step (model turn).
        again = "" if n == 1 else " again"
        return ScriptedTurn(
            f"Search {n} of {total}: I search the archive{again}, this time for part {n} "
            f"of {ctx.question!r}, to gather more evidence.",
            [("slow_search", {"query": f"{ctx.question} (part {n})", "seconds": 1.0})],
        )

    return turn


SLOW_STEPS = 12


# -- demo-approval: tools that change things wait for a person ------------------------

# The demo's order table: rows per status (in memory; nothing real is deleted or sent).
ORDER_ROWS = {"test": 42, "paid": 958, "refunded": 17}


@tool
def count_rows(table: str, status: str) -> int:
    """Count the rows of a table with a given status.

    Args:
        table: The table, e.g. "orders".
        status: The status to count, e.g. "test".
    """
    if table != "orders":
        raise ValueError(f"no table {table!r}; the demo has 'orders'")
    return ORDER_ROWS.get(status, 0)


@tool(requires_approval=True)
def delete_rows(table: str, status: str, limit: int = 1000) -> str:
    """Delete rows of a table with a given status (needs a person's approval).

    Args:
        table: The table, e.g. "orders".
        status: Rows with this status are deleted.
        limit: At most this many rows are deleted.
    """
    if table != "orders":
        raise ValueError(f"no table {table!r}; the demo has 'orders'")
    deleted = min(ORDER_ROWS.get(status, 0), max(limit, 0))
    return f"Deleted {deleted} {status!r} rows from {table} (demo data: nothing real changed)."


@tool(requires_approval=True)
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email (needs a person's approval; the demo sends nothing).

    Args:
        to: The recipient's address.
        subject: The subject line.
        body: The message.
    """
    return f"Email to {to} with subject {subject!r} queued (demo: nothing was sent)."


def _last_output(ctx: ScriptContext) -> str:
    return ctx.observations[-1] if ctx.observations else ""


def _approval_turn(step: int) -> Callable[[ScriptContext], ScriptedTurn]:
    """Turn ``step`` of demo-approval: count, delete (approval), email (approval),
    answer; each turn reads what the person decided before."""

    def turn(ctx: ScriptContext) -> ScriptedTurn:
        last = _last_output(ctx)
        if step == 0:
            return ScriptedTurn(
                "First I count the test orders, so that I know what a cleanup would remove.",
                [("count_rows", {"table": "orders", "status": "test"})],
            )
        if step == 1:
            return ScriptedTurn(
                f"There are {last} test orders. I delete them; this needs your approval.",
                [("delete_rows", {"table": "orders", "status": "test", "limit": 1000})],
            )
        if step == 2:
            if last.startswith("Not run:"):
                why = last.partition("Reason: ")[2].strip() or "no reason was given"
                text = (
                    f"You rejected the deletion ({why}), so I delete nothing and tell the "
                    "team what I found instead."
                )
                body = f"I found {ORDER_ROWS['test']} test orders and left them in place: {why}"
            else:
                text = f"{last} Now I tell the team; the email needs your approval too."
                body = f"Cleanup done: {last}"
            return ScriptedTurn(
                text,
                [
                    (
                        "send_email",
                        {"to": "team@example.com", "subject": "Orders cleanup", "body": body},
                    )
                ],
            )
        deletion = ctx.observations[1] if len(ctx.observations) > 1 else ""
        email = last.splitlines()[-1] if last else ""
        if last.startswith("(Run with arguments edited"):
            email += " (with the arguments you edited)"
        return ScriptedTurn(
            "## Cleanup report\n\n"
            f"- **Deletion:** {deletion}\n"
            f"- **Email:** {email}\n\n"
            "Every change waited for your decision."
        )

    return turn


APPROVAL_TURNS = 4


def demo_agents() -> list[Agent]:
    """The offline demo agents: ``demo`` (a few seconds), ``demo-slow`` (over 30 s) and
    ``demo-approval`` (its deleting and emailing tools wait for a person)."""
    demo = Agent(
        name="demo",
        description="Does arithmetic with a calculator, or looks up and compares European "
        "cities in a table (offline scripted model, a few seconds).",
        gateway=ScriptedGateway([_demo_turn(step) for step in range(DEMO_TURNS)], token_delay=0.03),
        tools=[lookup_city, calculator],
        system_prompt="You answer arithmetic questions and questions about European cities "
        "using your tools.",
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
    approval = Agent(
        name="demo-approval",
        description="Cleans up test orders: counts them, then deletes them and emails the "
        "team, each only after you approve (edit or reject) the call (offline scripted model).",
        gateway=ScriptedGateway(
            [_approval_turn(step) for step in range(APPROVAL_TURNS)], token_delay=0.02
        ),
        tools=[count_rows, delete_rows, send_email],
        system_prompt="You clean up the orders table. Changes need a person's approval.",
    )
    return [demo, slow, approval]


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
        # The benchmarks' clock starts here (the answer says when), not at the first
        # step to arrive: the stream may queue tokens before any reaches a subscriber.
        started = time.time()
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
        yield ModelTurn(f"streamed {count} tokens; started {started:.6f}", (), Usage(1, count))


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
