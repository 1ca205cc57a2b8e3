"""Runs as data in the hub: fork a task at any step, and go on with an interrupted one.

Both read the task's whole record (memory and history, cut messages whole), plan
with ``core.replay`` what is copied and where the run goes on, and start a new task
whose first events are the copied ones (marked ``copied``): no model call and no
tool call makes them. The new task names its parent (``parent_id``,
``forked_at_seq``, ``fork_kind``); an interrupted task names its continuation
(``resumed_by``), and is resumed once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import agentkit_jupyter.protocol as protocol

from ..core import Agent, StepEvent
from ..core.replay import ForkError, ForkPlan, plan_fork, plan_resume
from ..core.tools import ToolArgumentError
from ..protocol import ForkKind, TaskStatus
from .bounds import truncation_of
from .hub import HISTORY_PAGE_EVENTS, Task, TaskHub

__all__ = [
    "FORK_EDIT_FIELD",
    "InvalidForkArgumentsError",
    "AlreadyResumedError",
    "ForkError",
    "ForkNeedsKernelError",
    "check_fork_arguments",
    "check_forkable",
    "check_resumable",
    "fork_plan",
    "last_step_seq",
    "new_child",
    "NotResumableError",
    "fork_task",
    "read_whole_log",
    "resume_task",
    "step_events",
]


# A fork queued on a shared backend: its edit, in its record (the worker that runs it
# makes the plan again from the parent's log; the wire's record has no such field).
FORK_EDIT_FIELD = "fork_edit"


class ForkNeedsKernelError(RuntimeError):
    """A kernel agent's task: its tools live in that kernel, not on the server."""


class NotResumableError(RuntimeError):
    """Only a paused or an interrupted task can be resumed."""


class AlreadyResumedError(RuntimeError):
    def __init__(self, task_id: str, continuation: str) -> None:
        super().__init__(
            f"Task {task_id} was already resumed: its continuation is task {continuation}."
        )
        self.continuation = continuation


async def read_whole_log(task: Task) -> list[dict[str, Any]]:
    """Every message of the task's log, oldest first, with cut messages whole."""
    messages: list[dict[str, Any]] = []
    after = task.first_seq - 1
    while True:
        entries = await task.read_page(after, HISTORY_PAGE_EVENTS, 8 * 1024 * 1024)
        if not entries:
            return messages
        for entry in entries:
            message = json.loads(entry.data)
            if truncation_of(message) is not None:
                try:
                    message = json.loads(await task.read_event(entry.seq))
                except LookupError:
                    pass  # the whole text is gone: go on with the cut one
            messages.append(message)
        after = entries[-1].seq
        if after >= task.log.last_seq:
            return messages


def step_events(messages: list[dict[str, Any]]) -> list[tuple[int, StepEvent]]:
    """The ``(seq, event)`` of each step message (the result is not a step)."""
    steps: list[tuple[int, StepEvent]] = []
    for message in messages:
        if message.get("type") != "step":
            continue
        try:
            steps.append((int(message["seq"]), StepEvent.from_dict(message["data"])))
        except (KeyError, TypeError, ValueError):
            continue  # an unknown event type (a newer kernel): not part of the run
    return steps


@dataclass(slots=True)
class _Source:
    parent: Task
    agent: Agent
    messages: list[dict[str, Any]]


def check_forkable(parent: Task, action: str) -> None:
    """ForkNeedsKernelError for a kernel's task: its tools live in that kernel."""
    if parent.origin != "server":
        raise ForkNeedsKernelError(
            f"Task {parent.task_id} ran in a kernel, whose tools the server does not have: "
            f"{action} it in that kernel (task.{action}() in Python, or the widget)."
        )


async def _source(hub: TaskHub, task_id: str, action: str) -> _Source:
    parent = hub.get(task_id)
    check_forkable(parent, action)
    agent = hub.agents.get(parent.agent)  # UnknownAgentError: the agent is gone
    return _Source(parent, agent, await read_whole_log(parent))


def fork_plan(
    agent: Agent,
    parent_input: str,
    messages: list[dict[str, Any]],
    at_seq: int,
    edit: protocol.ForkEdit | None,
) -> ForkPlan:
    """What a fork at ``at_seq`` copies and how it goes on (ForkError,
    InvalidForkArgumentsError): the same plan wherever it is made, so a worker that
    runs a fork queued by a server makes the plan the server checked."""
    events = step_events(messages)
    if edit is not None and edit.arguments is not None:
        check_fork_arguments(agent, events, at_seq, edit.arguments)
    return plan_fork(
        parent_input,
        events,
        at_seq,
        observation=edit.observation if edit else None,
        arguments=edit.arguments if edit else None,
        new_input=edit.input if edit else None,
        follow_up=edit.follow_up if edit else None,
    )


def last_step_seq(messages: list[dict[str, Any]]) -> int:
    """Where a continuation goes on from: the last step's seq (0 for none)."""
    steps = step_events(messages)
    return steps[-1][0] if steps else 0


def check_fork_arguments(
    agent: Agent, events: list[tuple[int, StepEvent]], at_seq: int, arguments: dict[str, Any]
) -> None:
    event = dict(events).get(at_seq)
    name = str(event.data.get("name")) if event is not None else ""
    tool = next((t for t in agent.tool_list if t.name == name), None)
    if tool is None:
        return  # the engine says unknown_tool, as it would have
    try:
        tool.validate_arguments(json.dumps(arguments))
    except ToolArgumentError as exc:
        raise InvalidForkArgumentsError(f"Invalid arguments for {name}: {exc}") from exc


class InvalidForkArgumentsError(ValueError):
    """The edited arguments do not fit the tool's schema (``invalid_arguments``)."""


async def fork_task(
    hub: TaskHub, task_id: str, at_seq: int, edit: protocol.ForkEdit | None = None
) -> Task:
    """A new task: ``task_id``'s events up to ``at_seq`` copied, the edit applied,
    then live. A running task forks at a step it has completed (the log has it).
    ForkError (``invalid_fork``), ForkNeedsKernelError, UnknownTaskError,
    UnknownAgentError, InvalidForkArgumentsError."""
    source = await _source(hub, task_id, "fork")
    plan = fork_plan(source.agent, source.parent.input, source.messages, at_seq, edit)
    return _start(hub, source, plan, at_seq, ForkKind.FORK)


def check_resumable(task: Task) -> None:
    """NotResumableError unless the task is interrupted; AlreadyResumedError if it has
    its continuation already."""
    if task.status is not TaskStatus.INTERRUPTED:
        raise NotResumableError(
            f"Task {task.task_id} is {task.status.value}: only a paused or an interrupted "
            "task can be resumed."
        )
    if task.resumed_by is not None:
        raise AlreadyResumedError(task.task_id, task.resumed_by)


async def resume_task(hub: TaskHub, task_id: str) -> Task:
    """The continuation of an interrupted task: its events copied, then on from its
    last completed step. A call that had started and has no result is asked again
    (policy ``interrupted``), never re-run unasked."""
    task = hub.get(task_id)
    check_resumable(task)
    source = await _source(hub, task_id, "resume")
    if task.resumed_by is not None:  # resumed while its log was read
        raise AlreadyResumedError(task_id, task.resumed_by)
    plan = plan_resume(task.input, step_events(source.messages))
    child = _start(hub, source, plan, last_step_seq(source.messages), ForkKind.RESUME)
    task.resumed_by = child.task_id
    task.save()
    return child


def new_child(hub: TaskHub, parent: Task, user_input: str, at_seq: int, kind: ForkKind) -> Task:
    """A fork's or a continuation's task: the parent's agent and budget, its lineage."""
    child = hub.new_task(parent.agent, user_input)
    child.parent_id = parent.task_id
    child.forked_at_seq = at_seq
    child.fork_kind = kind.value
    child.budget = parent.budget
    return child


def _start(hub: TaskHub, source: _Source, plan: ForkPlan, at_seq: int, kind: ForkKind) -> Task:
    parent, agent = source.parent, source.agent
    child = new_child(hub, parent, plan.user_input, at_seq, kind)
    by_seq = {int(m["seq"]): m for m in source.messages if m.get("type") == "step"}
    for seq in plan.copied:
        child.copy_in(by_seq[seq])
    child.save()
    snapshot = plan.snapshot
    budget = child.budget
    child.start(
        lambda token: agent.stream(
            plan.user_input,
            token,
            control=child.control.run,
            budget=budget,
            snapshot=snapshot,
        )
    )
    return child
