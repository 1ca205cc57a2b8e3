"""The offline demo agent answers what was asked; its calculator cannot freeze the server."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agentkit_jupyter.core import (
    Agent,
    CancellationToken,
    EventType,
    ScriptContext,
    ScriptedGateway,
    StepEvent,
    demo_agents,
)
from agentkit_jupyter.core.demo import CAPABILITIES, CITIES, MAX_EXPRESSION_CHARS, calculator, route

# -- the calculator's bounds -----------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("10**20000000", "result too large: 10**20000000 would have 20,000,001 digits"),
        ("9**9**9", "result too large: 9**387420489 would have"),
        ("(10**100)**(10**100)", "result too large: a power with a 101-digit exponent"),
        ("2**3322", "result too large"),  # 1001 digits: just over the limit
        ("(10**999) * (10**999)", "result too large: the product would have too many digits"),
        ("9 * 10**999 + 9 * 10**999", "result too large: an intermediate result"),
        ("1+" * 50_000 + "1", "expression too long: 100,001 characters (the limit is 1,000)"),
        ("9" * 100_000, "expression too long: 100,000 characters"),
        ("(" * 400 + "1" + ")" * 400, "expression too deeply nested"),
        ("-" * 900 + "1", "expression too deeply nested"),
        ("+".join(["1"] * 300), "expression too deeply nested"),
        ("7" * 101, "number too long: integers may have at most 100 digits"),
        ("10**400", "result out of range: beyond the floating-point range"),
        ("10**999 / 3", "result out of range"),
        ("1e308 * 10", "result out of range"),
        ("-1e308 - 1e308", "result out of range"),
        ("2.0 ** 10000", "result out of range"),
        ("2 ** 0.5 * 10**400", "result out of range"),
        ("1e999", "result out of range"),
        ("(-8) ** 0.5", "a negative number to a fractional power has no real result"),
        ("2 ^ 10", "use ** for powers"),
        ("__import__('os').system('true')", "unsupported expression element: Call"),
        ("True + 1", "unsupported value: True"),
        ("2 +", "not an arithmetic expression"),
        ("1\x00", "not an arithmetic expression"),
    ],
)
def test_the_calculator_refuses_work_it_cannot_bound_with_a_clear_error(
    expression: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        calculator(expression=expression)


def test_the_limit_on_expression_length_is_the_documented_one() -> None:
    assert calculator(expression="1" + " " * (MAX_EXPRESSION_CHARS - 1)) == 1
    with pytest.raises(ValueError, match="expression too long"):
        calculator(expression="1" + " " * MAX_EXPRESSION_CHARS)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("17 * 23", 391),
        ("(2+3)**2", 25),
        ("(2 + 3) * 4", 20),
        ("3**39", 4052555153018976267),  # exact, not a float's approximation
        ("2**1000", 2**1000),
        ("10**400 / 10**399", 10.0),
        ("1 / 3", 0.333333),
        ("2**-2", 0.25),
        ("-2**2", -4),
        ("(-1)**(10**99)", 1),
        ("0**(10**99)", 0),
        ("1e308 + 0", 1e308),
        ("2102650 / 3878100", 0.542186),
    ],
)
def test_the_calculator_still_computes(expression: str, value: float) -> None:
    result = calculator(expression=expression)
    assert result == value and type(result) is type(value)


def test_division_by_zero_is_a_clear_error() -> None:
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        calculator(expression="1 / 0")
    with pytest.raises(ZeroDivisionError, match="zero cannot be raised to a negative power"):
        calculator(expression="0 ** -1")


# -- running the demo agent --------------------------------------------------------------


def fast_demo() -> Agent:
    """The demo agent as shipped, without the pause between streamed tokens."""
    demo = demo_agents()[0]
    assert isinstance(demo.gateway, ScriptedGateway)
    demo.gateway.token_delay = 0
    return demo


async def run(agent: Agent, question: str) -> list[StepEvent]:
    return [e async for e in agent.stream(question, CancellationToken())]


def calls(events: list[StepEvent]) -> list[tuple[str, Any]]:
    return [
        (e.data["name"], e.data["arguments"]) for e in events if e.event_type == EventType.TOOL_CALL
    ]


def answer(events: list[StepEvent]) -> str:
    last = events[-1]
    assert last.event_type == EventType.FINAL_ANSWER, last.data
    return str(last.data["output"])


def observations(events: list[StepEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.event_type == EventType.OBSERVATION]


def other_cities(text: str, *named: str) -> list[str]:
    return [c for c in CITIES if c not in named and re.search(rf"\b{c}\b", text)]


async def test_arithmetic_goes_to_the_calculator_and_the_answer_states_the_result() -> None:
    events = await run(demo_agents()[0], "What is 17 * 23?")  # at the shipped pace
    assert calls(events) == [("calculator", {"expression": "17 * 23"})]
    assert [o["output"] for o in observations(events)] == ["391"]
    text = answer(events)
    assert "391" in text and other_cities(text) == []
    # The thought streamed token by token before the call, as for the city questions.
    kinds = [e.event_type for e in events]
    first_call = kinds.index(EventType.TOOL_CALL)
    assert kinds[:first_call].count(EventType.TOKEN) > 3
    assert EventType.THOUGHT in kinds[:first_call]


@pytest.mark.parametrize(
    ("question", "expression", "result"),
    [
        ("compute (2+3)**2", "(2+3)**2", "25"),
        ("What's 3 × 4 ÷ 2?", "3 * 4 / 2", "6"),
        ("what is 2^10", "2**10", "1024"),
        ("How much is 1,000 * 3?", "1000 * 3", "3000"),
        ("What is 10 / 4?", "10 / 4", "2.5"),
    ],
)
async def test_expressions_are_found_in_the_question(
    question: str, expression: str, result: str
) -> None:
    events = await run(fast_demo(), question)
    assert calls(events) == [("calculator", {"expression": expression})]
    assert answer(events) == f"{expression} = {result}"


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("What is 10**20000000?", "result too large"),
        ("What is 9**9**9?", "result too large"),
        ("What is (10**100)**(10**100)?", "result too large"),
        ("Sum this: " + "1+" * 50_000 + "1", "expression too long"),
        ("What is " + "(" * 300 + "1" + ")" * 300 + " + 1?", "too deeply nested"),
    ],
)
async def test_a_huge_calculation_ends_quickly_with_the_calculators_error(
    question: str, message: str
) -> None:
    events = await run(fast_demo(), question)
    [(name, _)] = calls(events)
    [observation] = observations(events)
    assert name == "calculator" and observation["is_error"]
    assert message in observation["output"]
    text = answer(events)
    assert text.startswith("The calculator could not evaluate") and message in text
    assert len(text) < 400  # a long expression is shortened, not repeated


async def test_two_cities_are_looked_up_and_compared() -> None:
    events = await run(demo_agents()[0], "How do Rome and Vienna compare?")
    assert calls(events) == [
        ("lookup_city", {"city": "Rome"}),
        ("lookup_city", {"city": "Vienna"}),
        ("calculator", {"expression": "2748109 / 2005760"}),
    ]
    text = answer(events)
    assert "Rome" in text and "Vienna" in text and "1.37 times" in text
    assert other_cities(text, "Rome", "Vienna") == []


async def test_one_city_gets_its_facts() -> None:
    events = await run(fast_demo(), "Tell me about lisbon")
    assert calls(events) == [("lookup_city", {"city": "Lisbon"})]
    text = answer(events)
    assert "Lisbon" in text and "Portugal" in text and "567,131" in text
    assert other_cities(text, "Lisbon") == []


async def test_several_cities_get_one_lookup_each_and_a_summary_of_just_those() -> None:
    events = await run(fast_demo(), "Compare Warsaw, Amsterdam and Madrid")
    assert calls(events) == [  # in the table's order
        ("lookup_city", {"city": "Madrid"}),
        ("lookup_city", {"city": "Warsaw"}),
        ("lookup_city", {"city": "Amsterdam"}),
    ]
    text = answer(events)
    assert all(c in text for c in ("Warsaw", "Amsterdam", "Madrid"))
    assert other_cities(text, "Warsaw", "Amsterdam", "Madrid") == []
    assert text.index("Madrid") < text.index("Warsaw") < text.index("Amsterdam")  # by size


@pytest.mark.parametrize(
    "question",
    [
        "Write me a poem",
        "Compare Oslo and Bern",  # cities the table does not have
        "Give me a comparison",  # "com-paris-on" names no city
        "What is 7?",  # a number, but nothing to compute
        "question",
        "",
    ],
)
async def test_anything_else_gets_told_what_the_demo_can_do(question: str) -> None:
    events = await run(fast_demo(), question)
    assert calls(events) == []
    assert answer(events) == CAPABILITIES
    assert "offline demo agent" in CAPABILITIES and "17 * 23" in CAPABILITIES
    assert "real LLM" in CAPABILITIES and all(c in CAPABILITIES for c in CITIES)


async def test_a_year_range_next_to_cities_is_not_arithmetic() -> None:
    events = await run(fast_demo(), "Paris and Rome in 2023-24")
    assert [name for name, _ in calls(events)] == ["lookup_city", "lookup_city", "calculator"]
    assert answer(events).startswith("Paris")
    assert route("What is 2023-24?").expression == "2023-24"


async def test_arithmetic_wins_over_cities_and_says_so() -> None:
    events = await run(fast_demo(), "What is 17 * 23, and where is Paris?")
    assert calls(events) == [("calculator", {"expression": "17 * 23"})]
    text = answer(events)
    assert text.startswith("17 * 23 = 391") and "Paris" in text


def test_routing_is_linear_on_pathological_questions() -> None:
    # These would take minutes with a backtracking pattern (the router runs on the event
    # loop); no timing asserted, the suite's timeout catches a regression.
    assert route(" " * 200_000).expression is None
    assert route("(" * 100_000 + "2+3").expression == "2+3"
    assert route("2+3" + ")" * 100_000).expression == "2+3"
    assert route("1+1 x " * 30_000).expression == "1+1"
    assert route("Paris " * 50_000).cities == ("Paris",)


# -- pacing: "demo" takes seconds, "demo-slow" over half a minute ----------------------


def scripted_seconds(agent: Agent, question: str) -> float:
    """The pauses the agent's script makes: token pacing plus simulated tool time."""
    gateway = agent.gateway
    assert isinstance(gateway, ScriptedGateway)
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    total = 0.0
    for step in gateway.script:
        turn = step(ScriptContext(messages)) if callable(step) else step
        total += gateway.latency + gateway.token_delay * len(turn.text.split())
        if not turn.tool_calls:
            return total
        messages.append({"role": "assistant", "content": turn.text})
        for name, arguments in turn.tool_calls:
            assert isinstance(arguments, dict)
            total += float(arguments.get("seconds", 0))
            tool = next(t for t in agent.tool_list if t.name == name)
            output = tool.func(**arguments) if not tool.is_async else ""
            messages.append({"role": "tool", "content": json.dumps(output)})
    raise AssertionError("the script ran out of turns")


@pytest.mark.parametrize(
    "question",
    ["What is 17 * 23?", "Compare Paris and Berlin", "Tell me about Rome", "Write me a poem"],
)
def test_the_demo_answers_within_a_few_seconds(question: str) -> None:
    assert scripted_seconds(demo_agents()[0], question) < 5


@pytest.mark.parametrize("question", ["The history of the city archive", "What is 17 * 23?"])
def test_demo_slow_still_takes_over_half_a_minute(question: str) -> None:
    slow = demo_agents()[1]
    assert slow.name == "demo-slow"
    assert scripted_seconds(slow, question) >= 30
