"""Agents (a model, a prompt and tools) and the pool that names them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .cancellation import CancellationToken
from .control import AgentApproval, RunControl
from .costs import Budget, PriceTable
from .engine import DEFAULT_MAX_STEPS, ReActEngine
from .events import StepEvent
from .llm import LLMGateway
from .replay import RunSnapshot
from .tools import Tool, ToolSource, as_tools, tool_sources


class UnknownAgentError(KeyError):
    """No agent of that name; never silently replaced by another agent."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(name)
        self.name = name
        self.message = f"Unknown agent {name!r}. Available agents: {names}."

    def __str__(self) -> str:
        return self.message


@dataclass
class Agent:
    """A named agent: which model to ask, how to prompt it, and what tools it may use."""

    name: str
    gateway: LLMGateway
    # Tools, plain functions, and tool sources (``core.mcp.MCPServer``): a source's tools
    # are listed at the start of each run.
    tools: list[Tool | ToolSource | Callable[..., Any]] = field(default_factory=list)
    description: str = ""
    model: str = "scripted"
    system_prompt: str | None = None
    max_steps: int = DEFAULT_MAX_STEPS
    llm_idle_timeout: float | None = 120.0
    # Which tool calls wait for a person: "always", "never", or a callable of the tool's
    # name and arguments; None leaves it to each tool's ``requires_approval``.
    approval: AgentApproval = None
    # Seconds a call waits for a decision before it is ``timed_out`` (None: no limit).
    approval_timeout: float | None = None
    # The most a run may use: ``Budget(max_tokens=..., max_cost=...)`` or that as a dict.
    budget: Budget | dict[str, Any] | None = None
    # Model name -> {"input_per_mtok", "output_per_mtok"} in US dollars: wins over the
    # price library (``genai-prices``) for this agent's cost figures.
    prices: PriceTable | None = None

    def __post_init__(self) -> None:
        self._tools = as_tools(self.tools)  # validates names once, at definition
        self._sources = tool_sources(self.tools)  # MCP servers: their tools come per run
        self.budget = Budget.parse(self.budget)
        if not (self.approval in (None, "always", "never") or callable(self.approval)):
            raise ValueError("approval must be 'always', 'never', a callable or None")

    @property
    def tool_list(self) -> list[Tool]:
        """The agent's own tools (not those of its tool sources, known only in a run)."""
        return list(self._tools.values())

    @property
    def tool_sources(self) -> list[ToolSource]:
        """The MCP servers (tool sources) whose tools each run lists."""
        return list(self._sources)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "model": self.model,
            # A tool source is one entry ("files (MCP)"): its tools are listed per run.
            "tools": [t.summary() for t in self.tool_list] + [s.summary() for s in self._sources],
        }

    def stream(
        self,
        user_input: str,
        cancellation_token: CancellationToken | None = None,
        control: RunControl | None = None,
        *,
        budget: Budget | dict[str, Any] | None = None,
        snapshot: RunSnapshot | None = None,
    ) -> AsyncIterator[StepEvent]:
        """Run the agent on one user input, yielding its events; ``control`` takes a
        person's decisions, pause and resume. ``budget`` (this run's, else the
        agent's) bounds what it uses; ``snapshot`` goes on from recorded events (a
        fork or a resume, see ``replay``)."""
        engine = ReActEngine(
            self.gateway, max_steps=self.max_steps, llm_idle_timeout=self.llm_idle_timeout
        )
        return engine.execute_stream(
            messages=[{"role": "user", "content": user_input}],
            tools=[*self.tool_list, *self._sources],
            model=self.model,
            agent_name=self.name,
            system_prompt=self.system_prompt,
            cancellation_token=cancellation_token,
            control=control,
            approval=self.approval,
            approval_timeout=self.approval_timeout,
            budget=Budget.parse(budget) or self.budget_limits,
            prices=self.prices,
            snapshot=snapshot,
        )

    @property
    def budget_limits(self) -> Budget | None:
        return self.budget if isinstance(self.budget, Budget) else Budget.parse(self.budget)


class AgentPool:
    """Agents by name."""

    def __init__(self, agents: Iterable[Agent] = ()) -> None:
        self._agents: dict[str, Agent] = {}
        for agent in agents:
            self.register(agent)

    def register(self, agent: Agent, *, replace: bool = False) -> None:
        if agent.name in self._agents and not replace:
            raise ValueError(f"an agent named {agent.name!r} is already registered")
        self._agents[agent.name] = agent

    def get(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError:
            raise UnknownAgentError(name, self._agents) from None

    def list(self) -> list[Agent]:
        return list(self._agents.values())

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def __iter__(self) -> Iterator[Agent]:
        return iter(self._agents.values())

    def __len__(self) -> int:
        return len(self._agents)
