"""Tools from plain Python functions: JSON schema from type hints and docstrings."""

from __future__ import annotations

import copy
import inspect
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints, overload

import docstring_parser
import pydantic

from .workers import abandoned_threads, configure_tool_workers, worker_stats

_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# Where a sync tool runs: a pool thread (the default), or a worker process.
Isolation = Literal["thread", "process"]

# Whether a call needs a person's approval: always, never, or decided per call from
# its (validated) arguments.
ApprovalRule = Callable[[dict[str, Any]], bool]
RequiresApproval = bool | ApprovalRule


class ToolArgumentError(ValueError):
    """The model's arguments do not fit the tool's signature."""


class ToolSource:
    """Tools that exist only while a run holds something open (an MCP server's session):
    given in an agent's ``tools`` like a tool, kept aside by :func:`as_tools`, and turned
    into tools by the engine at the start of each run (see ``core.mcp``)."""

    name: str

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "description": ""}


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable the model may invoke, with the schema the model sees."""

    name: str
    description: str
    func: Callable[..., Any]
    arguments_model: type[pydantic.BaseModel]
    timeout: float | None = None
    isolate: Isolation = "thread"
    requires_approval: RequiresApproval = False
    # The parameters as a JSON schema, for a tool not made from a Python signature (an
    # MCP server's): the model sees it as is and the arguments are checked against it.
    json_schema: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @property
    def parameters_schema(self) -> dict[str, Any]:
        if self.json_schema is not None:
            return copy.deepcopy(self.json_schema)
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    def spec(self) -> dict[str, Any]:
        """The OpenAI chat-completions ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters_schema,
            },
        }

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description}

    def validate_arguments(self, raw: str | dict[str, Any]) -> dict[str, Any]:
        """Parse and validate the model's arguments into keyword arguments."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolArgumentError(f"arguments are not valid JSON: {exc.msg}") from exc
        if not isinstance(raw, dict):
            raise ToolArgumentError("arguments must be a JSON object")
        if self.json_schema is not None:
            problems = _schema_problems(raw, self.json_schema)
            if problems:
                raise ToolArgumentError(problems)
            return dict(raw)
        try:
            parsed = self.arguments_model.model_validate(raw)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ToolArgumentError(problems) from exc
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly, as if undecorated."""
        return self.func(*args, **kwargs)


class _ArgumentsBase(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False)


class _SchemaArguments(pydantic.BaseModel):
    """The arguments model of a JSON-schema tool: unused (its ``json_schema`` rules)."""

    model_config = pydantic.ConfigDict(extra="allow")


def _schema_problems(arguments: dict[str, Any], schema: dict[str, Any]) -> str:
    """What is wrong with ``arguments`` for ``schema`` ("" if nothing, or if the schema
    itself is broken: the tool's owner then checks them)."""
    import jsonschema  # only JSON-schema tools pay for it

    try:
        validator_class = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        errors = sorted(validator_class(schema).iter_errors(arguments), key=lambda e: list(e.path))
    except Exception:  # a broken schema, a $ref that does not resolve, an unknown type
        return ""
    return "; ".join(
        f"{'.'.join(str(p) for p in error.path) or 'arguments'}: {error.message}"
        for error in errors[:5]
    )


def schema_tool(
    name: str,
    description: str,
    parameters: dict[str, Any],
    func: Callable[..., Any],
    *,
    timeout: float | None = None,
    requires_approval: RequiresApproval = False,
) -> Tool:
    """A :class:`Tool` whose parameters are a JSON schema (``func`` is called with the
    validated arguments as keyword arguments)."""
    if not _NAME_PATTERN.match(name):
        raise ValueError(f"tool name {name!r} must match {_NAME_PATTERN.pattern}")
    if not isinstance(parameters, dict):
        raise ValueError(f"tool {name!r}: parameters must be a JSON schema (a dict)")
    if not isinstance(requires_approval, bool) and not callable(requires_approval):
        raise ValueError(f"tool {name!r}: requires_approval must be a bool or a callable")
    return Tool(
        name=name,
        description=description.strip(),
        func=func,
        arguments_model=_SchemaArguments,
        timeout=timeout,
        requires_approval=requires_approval,
        json_schema=copy.deepcopy(parameters),
    )


def _build_tool(
    func: Callable[..., Any],
    name: str | None,
    description: str | None,
    timeout: float | None,
    isolate: Isolation = "thread",
    requires_approval: RequiresApproval = False,
) -> Tool:
    tool_name = name or func.__name__
    if not _NAME_PATTERN.match(tool_name):
        raise ValueError(f"tool name {tool_name!r} must match {_NAME_PATTERN.pattern}")
    if isolate not in ("thread", "process"):
        raise ValueError(f"tool {tool_name!r}: isolate must be 'thread' or 'process'")
    if not isinstance(requires_approval, bool) and not callable(requires_approval):
        raise ValueError(f"tool {tool_name!r}: requires_approval must be a bool or a callable")
    if isolate == "process" and inspect.iscoroutinefunction(func):
        raise ValueError(f"tool {tool_name!r}: isolate='process' is for sync functions")
    doc = docstring_parser.parse(inspect.getdoc(func) or "")
    param_docs = {p.arg_name: (p.description or "").strip() for p in doc.params}
    hints = get_type_hints(func)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name!r}: *args and **kwargs cannot be described")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (
            annotation,
            pydantic.Field(default, description=param_docs.get(param.name) or None),
        )
    model = pydantic.create_model(f"{tool_name}_arguments", __base__=_ArgumentsBase, **fields)
    summary = description or "\n\n".join(
        part for part in (doc.short_description, doc.long_description) if part
    )
    return Tool(
        name=tool_name,
        description=summary.strip(),
        func=func,
        arguments_model=model,
        timeout=timeout,
        isolate=isolate,
        requires_approval=requires_approval,
    )


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    isolate: Isolation = "thread",
    requires_approval: RequiresApproval = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    isolate: Isolation = "thread",
    requires_approval: RequiresApproval = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a plain (sync or async) function into a :class:`Tool`.

    Use bare (``@tool``) or with options (``@tool(timeout=5)``). The schema comes from
    the type hints; the description and per-argument help from the docstring
    (Google, NumPy or reST style).

    Sync tools run on a bounded pool of worker threads; a cancel or a timeout abandons
    a running call (a thread cannot be stopped). A CPU-bound sync tool holds the GIL
    and so stalls everything else in the process (in a Jupyter server: every user).
    ``isolate="process"`` runs it in a pooled worker process instead, which a cancel or
    a timeout kills; its function must be importable (top level of a module), its
    arguments and result picklable.

    ``requires_approval=True`` makes every call wait for a person's decision (approve,
    edit the arguments, or reject with a reason the model reads); a callable of the
    validated arguments decides per call (``lambda args: args["rows"] > 100``).
    """
    if func is not None:
        return _build_tool(func, name, description, timeout, isolate, requires_approval)

    def decorate(f: Callable[..., Any]) -> Tool:
        return _build_tool(f, name, description, timeout, isolate, requires_approval)

    return decorate


def as_tools(items: Iterable[Tool | ToolSource | Callable[..., Any]]) -> dict[str, Tool]:
    """Index tools by name, wrapping plain functions; duplicate names are an error.
    Tool sources (an MCP server) are kept aside: see :func:`tool_sources`."""
    tools: dict[str, Tool] = {}
    for item in items:
        if isinstance(item, ToolSource):
            continue
        built = item if isinstance(item, Tool) else tool(item)
        if built.name in tools:
            raise ValueError(f"two tools are named {built.name!r}")
        tools[built.name] = built
    return tools


def tool_sources(items: Iterable[Tool | ToolSource | Callable[..., Any]]) -> list[ToolSource]:
    """The tool sources among ``items``, in order: their tools are listed per run."""
    return [item for item in items if isinstance(item, ToolSource)]


__all__ = [
    "ApprovalRule",
    "Isolation",
    "RequiresApproval",
    "Tool",
    "ToolArgumentError",
    "ToolSource",
    "abandoned_threads",
    "as_tools",
    "configure_tool_workers",
    "schema_tool",
    "tool",
    "tool_sources",
    "worker_stats",
]
