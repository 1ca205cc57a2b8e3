"""Runs as data from Python: fork a task at a step, the continuation of an interrupted
task, the run as a DataFrame and its whole log.

A server agent's task is forked by the server (``POST tasks/{id}/fork``); a task of an
agent of this kernel is forked here, since its tools live here: the same plan
(``core.replay.plan_fork``), its copied steps published to the server like any run's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from ..core.replay import ForkPlan
from ..protocol import ForkEdit, TaskStatus
from ..tasks.runs import fork_plan

if TYPE_CHECKING:
    from .widget import TaskWidget

# The most messages one page of GET tasks/{id} is asked for.
_PAGE = 1000


def all_messages(widget: TaskWidget) -> list[dict[str, Any]]:
    """Every message of the task's log, oldest first (steps, then the result)."""
    local = getattr(widget, "local_run", None)
    if local is not None and local.task.log.first_seq == 1:
        return list(local.messages())
    messages: list[dict[str, Any]] = []
    after = 0
    while True:
        page = widget.client.get_task(widget.task_id, after=after, limit=_PAGE)
        events = list(page.get("events") or [])
        messages.extend(events)
        if not page.get("has_more") or not events:
            return messages
        after = int(events[-1]["seq"])


def fork_point(
    messages: list[dict[str, Any]],
    at_step: int | None,
    at_seq: int | None,
    call_id: str | None,
    edit: ForkEdit | None,
) -> int:
    """The seq a fork of ``at_step`` (or ``at_seq``) means: the observation or the
    tool call of that step for an edit of one (``call_id`` says which when the step
    made several), 0 for a new input, else the step's last event."""
    if edit is not None and edit.input is not None:
        return 0
    if edit is not None and edit.follow_up is not None:
        answers = [
            m
            for m in messages
            if m.get("type") == "step" and m["data"].get("event_type") == "final_answer"
        ]
        if not answers:
            raise ValueError("The run has no answer yet to follow up on.")
        return int(answers[-1]["seq"])
    if at_seq is not None:
        return at_seq
    if at_step is None:
        raise ValueError("Say where to fork: at_step=N (or at_seq=N).")
    steps = [
        m
        for m in messages
        if m.get("type") == "step"
        and m["data"].get("step") == at_step
        and m["data"].get("event_type") not in ("token", "usage")
    ]
    if not steps:
        raise ValueError(f"The task has no step {at_step}.")
    kind = None
    if edit is not None:
        kind = "observation" if edit.observation is not None else "tool_call"
    if kind is None:
        return int(steps[-1]["seq"])
    found = [m for m in steps if m["data"]["event_type"] == kind]
    if call_id is not None:
        found = [m for m in found if m["data"]["data"].get("call_id") == call_id]
    if not found:
        what = "an observation" if kind == "observation" else "a tool call"
        raise ValueError(f"Step {at_step} has no {what}" + (f" {call_id!r}." if call_id else "."))
    if len(found) > 1:
        ids = ", ".join(str(m["data"]["data"].get("call_id")) for m in found)
        raise ValueError(f"Step {at_step} made several calls ({ids}): say which with call_id=.")
    return int(found[0]["seq"])


def plan_local_fork(
    widget: TaskWidget, agent: Any, user_input: str, at_seq: int, edit: ForkEdit | None
) -> tuple[list[dict[str, Any]], ForkPlan]:
    """The messages and the plan of a fork made in this kernel (the REST route's
    checks: edited arguments against the tool's schema)."""
    messages = all_messages(widget)
    return messages, fork_plan(agent, user_input, messages, at_seq, edit)


class Forking:
    """``fork``, the continuation of an interrupted run, ``messages`` and
    ``to_dataframe`` of :class:`~agentkit_jupyter.kernel.handle.TaskHandle`."""

    if TYPE_CHECKING:

        @property
        def widget(self) -> TaskWidget: ...

        @property
        def status(self) -> str: ...

        def show(self) -> None: ...

    def messages(self) -> list[dict[str, Any]]:
        """The task's whole log as wire messages (``RecordedGateway.from_task`` reads it)."""
        return all_messages(self.widget)

    def fork(
        self,
        at_step: int | None = None,
        *,
        observation: str | None = None,
        arguments: dict[str, Any] | None = None,
        input: str | None = None,
        call_id: str | None = None,
        at_seq: int | None = None,
        display: bool = True,
    ) -> Self:
        """A new run that copies this one up to step ``at_step`` (no model or tool call
        for that part) and goes on live, with at most one change: the ``observation``
        of that step's tool call, its ``arguments`` (the call runs again with them), or
        a new ``input`` (a fork at the start). Without a change it goes on after the
        step; at the final step, that step is asked again. ``call_id`` picks the call
        of a step that made several; ``at_seq`` forks at an exact event instead.

        Returns the fork's handle (its live view shown when ``display``); its record
        has ``parent_id`` and ``forked_at_seq``.
        """

        edit = None
        if observation is not None or arguments is not None or input is not None:
            edit = ForkEdit(observation=observation, arguments=arguments, input=input)
        seq = fork_point(self.messages(), at_step, at_seq, call_id, edit)
        handle = type(self)(self.widget.fork_child(seq, edit))  # type: ignore[call-arg]
        if display:
            handle.show()
        return handle

    def follow_up(self, question: str, *, display: bool = True) -> Self:
        """Ask a follow-up question: a new task that continues this finished run's
        conversation (its steps and answer copied, no model or tool call for them)
        with ``question``, linked to this one (``parent_id``). Returns its handle."""
        edit = ForkEdit(follow_up=question)
        seq = fork_point(self.messages(), None, None, None, edit)
        handle = type(self)(self.widget.fork_child(seq, edit))  # type: ignore[call-arg]
        if display:
            handle.show()
        return handle

    def continue_interrupted(self, display: bool = True) -> Self:
        """The continuation of an interrupted server task (``POST tasks/{id}/resume``):
        a new task that goes on from its last completed step; a call that had started
        is asked again (policy ``interrupted``), never re-run unasked."""
        child = self.widget.continuation()
        handle = type(self)(child)  # type: ignore[call-arg]
        if display:
            handle.show()
        return handle

    @property
    def interrupted(self) -> bool:
        return self.status == TaskStatus.INTERRUPTED.value

    def to_dataframe(self) -> Any:
        """One row a step event: seq, step, event_type, tool, arguments, text or
        output, is_error, duration_ms, tokens, cost, copied, timestamp (needs pandas)."""
        from .history import steps_frame

        return steps_frame(self.messages())
