"""@tool: schemas from type hints and docstrings, argument validation."""

from __future__ import annotations

from enum import Enum

import pydantic
import pytest

from agentkit_jupyter.core import ToolArgumentError, tool


class Unit(Enum):
    METRIC = "metric"
    IMPERIAL = "imperial"


class Filter(pydantic.BaseModel):
    column: str
    minimum: float = 0


def test_schema_from_hints_and_google_docstring() -> None:
    @tool
    def search(
        query: str,
        limit: int = 5,
        exact: bool = False,
        unit: Unit = Unit.METRIC,
        tags: list[str] | None = None,
        threshold: float | None = None,
    ) -> list[str]:
        """Search the archive.

        Longer explanation.

        Args:
            query: What to look for.
            limit: At most this many hits.
        """
        return []

    spec = search.spec()["function"]
    assert spec["name"] == "search"
    assert spec["description"].startswith("Search the archive.")
    params = spec["parameters"]
    props = params["properties"]
    assert params["required"] == ["query"]
    assert props["query"] == {"type": "string", "description": "What to look for."}
    assert props["limit"]["type"] == "integer" and props["limit"]["default"] == 5
    assert props["limit"]["description"] == "At most this many hits."
    assert props["exact"]["type"] == "boolean"
    assert "anyOf" in props["tags"] or props["tags"].get("type") == "array"
    assert params["additionalProperties"] is False
    enum_schema = params["$defs"]["Unit"]
    assert enum_schema["enum"] == ["metric", "imperial"]


def test_numpy_and_rest_docstrings_and_pydantic_models() -> None:
    @tool(name="filter_rows", timeout=3)
    async def filter_rows(spec: Filter, note: str = "") -> int:
        """Filter rows.

        :param spec: Which column and bound.
        :param note: Free text.
        """
        return 0

    assert filter_rows.timeout == 3
    assert filter_rows.is_async
    props = filter_rows.parameters_schema["properties"]
    assert props["spec"]["description"] == "Which column and bound."
    kwargs = filter_rows.validate_arguments('{"spec": {"column": "a", "minimum": 2}}')
    assert kwargs["spec"] == Filter(column="a", minimum=2)


def test_validation_errors_name_the_problem() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert add.validate_arguments({"a": 1, "b": "2"}) == {"a": 1, "b": 2}
    with pytest.raises(ToolArgumentError, match="b: Field required"):
        add.validate_arguments({"a": 1})
    with pytest.raises(ToolArgumentError, match="a: Input should be a valid integer"):
        add.validate_arguments({"a": "one", "b": 2})
    with pytest.raises(ToolArgumentError, match="c: Extra inputs"):
        add.validate_arguments({"a": 1, "b": 2, "c": 3})
    with pytest.raises(ToolArgumentError, match="not valid JSON"):
        add.validate_arguments("{a: 1")
    with pytest.raises(ToolArgumentError, match="JSON object"):
        add.validate_arguments("[1, 2]")
    assert add(2, 3) == 5  # still callable as a plain function


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="tool name"):
        tool(name="has space")(lambda: None)

    def variadic(*args: int) -> None:
        """Nope."""

    with pytest.raises(TypeError, match=r"\*args"):
        tool(variadic)
