"""Resolve the agents a server hosts from import strings and entry points."""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from ..core import Agent, AgentPool

ENTRY_POINT_GROUP = "agentkit_jupyter.agents"


class AgentLoadError(ValueError):
    pass


def import_object(spec: str) -> Any:
    """``package.module:attribute`` (or ``package.module.attribute``) to the object."""
    if "." not in spec and ":" not in spec:
        raise AgentLoadError(f"{spec!r} is not an import string like 'package.module:agent'")
    try:
        return pkgutil.resolve_name(spec)
    except (ImportError, AttributeError, ValueError) as exc:
        raise AgentLoadError(f"cannot import {spec!r}: {exc}") from exc


def agents_from(obj: Any, origin: str) -> list[Agent]:
    """An Agent, an AgentPool, an iterable of agents, or a callable returning one of those."""
    if isinstance(obj, Agent):
        return [obj]
    if isinstance(obj, AgentPool):
        return obj.list()
    if callable(obj):
        return agents_from(obj(), origin)
    if isinstance(obj, Iterable) and not isinstance(obj, str | bytes):
        found: list[Agent] = []
        for item in obj:
            found.extend(agents_from(item, origin))
        return found
    raise AgentLoadError(f"{origin} gave {type(obj).__name__}, not an Agent or AgentPool")


def entry_point_sources() -> list[tuple[str, Callable[[], Any]]]:
    """``(where, load)`` for each advertised entry point; ``load()`` may raise anything
    (the caller skips that one agent source, and says so)."""
    return [
        (f"entry point {point.name!r} ({point.value})", point.load)
        for point in entry_points(group=ENTRY_POINT_GROUP)
    ]
