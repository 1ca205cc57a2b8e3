"""What a person can do to a run besides cancel it: decide tool calls, pause, step.

A :class:`RunControl` belongs to one run and lives on the run's event loop. The engine
asks it before every model call and every tool call (:meth:`RunControl.take_pause`)
and for every call that needs approval (:meth:`RunControl.request`). Deciding is
synchronous on that loop and the first decision wins, so two viewers racing on one
call cannot both win, and a call runs only after its decision and at most once.
Waiting costs one future: no thread, no polling.

Calls from another thread (a notebook's main thread while the run is on a background
loop) hop onto the run's loop through :meth:`RunControl.call`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..protocol import (
    ApprovalDecidedData,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequestedData,
    ApprovalScope,
    ApproveMessage,
    ControlMessage,
    ErrorCode,
    PauseData,
    PauseMessage,
    RejectMessage,
    ResumeMessage,
)
from .cancellation import CancellationToken
from .tools import Tool, ToolArgumentError

log = logging.getLogger(__name__)

T = TypeVar("T")

# An agent's policy: ask for every call, for none, or decide from the tool's name and
# its validated arguments. It overrides the tools' own ``requires_approval``.
AgentApprovalRule = Callable[[str, dict[str, Any]], bool]
AgentApproval = Literal["always", "never"] | AgentApprovalRule | None


class ControlError(Exception):
    """A command that cannot be applied; ``code`` is the wire's error code."""

    code = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, call_id: str | None = None) -> None:
        super().__init__(message)
        self.call_id = call_id


class UnknownCallError(ControlError):
    code = ErrorCode.UNKNOWN_CALL


class AlreadyDecidedError(ControlError):
    code = ErrorCode.ALREADY_DECIDED


class InvalidEditError(ControlError):
    code = ErrorCode.INVALID_ARGUMENTS


class NotPausedError(ControlError):
    code = ErrorCode.NOT_PAUSED


class RunEndedError(ControlError):
    code = ErrorCode.TASK_FINISHED


@dataclass(frozen=True, slots=True)
class Decision:
    """The one decision on a tool call."""

    decision: ApprovalDecision
    arguments: Any  # what the call runs with (the edited ones for ``edited``)
    reason: str | None
    by: str | None
    scope: ApprovalScope = ApprovalScope.ONCE

    @property
    def runs(self) -> bool:
        return self.decision in (ApprovalDecision.APPROVED, ApprovalDecision.EDITED)

    def to_data(self, call_id: str) -> ApprovalDecidedData:
        return {
            "call_id": call_id,
            "decision": self.decision.value,
            "arguments": self.arguments,
            "reason": self.reason,
            "by": self.by,
            "scope": self.scope.value,
        }


@dataclass(slots=True)
class PendingCall:
    call_id: str
    tool: Tool
    arguments: dict[str, Any]  # as the model sent them
    future: asyncio.Future[Decision]
    deadline: float | None  # loop time of ``timed_out``
    requested: ApprovalRequestedData


def approval_policy(
    tool: Tool, arguments: dict[str, Any], agent: AgentApproval
) -> ApprovalPolicy | None:
    """Why this call needs a decision (None: it does not). A rule that raises asks a
    person: failing safe is failing towards a human."""
    if agent == "never":
        return None
    if agent == "always":
        return ApprovalPolicy.AGENT
    if agent is not None:
        return ApprovalPolicy.AGENT_RULE if _ask(agent, tool.name, arguments) else None
    rule = tool.requires_approval
    if rule is True:
        return ApprovalPolicy.TOOL
    if rule is False:
        return None
    return ApprovalPolicy.TOOL_RULE if _ask(rule, arguments) else None


def _ask(rule: Callable[..., Any], *args: Any) -> bool:
    try:
        return bool(rule(*args))
    except Exception:
        log.exception("an approval rule failed; asking a person instead")
        return True


class RunControl:
    """Decisions, pause and steps of one run (see the module's docstring)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._pending: dict[str, PendingCall] = {}
        self._decided: dict[str, Decision] = {}
        # Tools approved with scope "task": later calls go ahead, by whoever approved.
        self._approved_tools: dict[str, Decision] = {}
        self._pause_requested: PauseData | None = None
        self._paused: PauseData | None = None
        self._resumed: asyncio.Future[PauseData] | None = None
        # Model or tool calls still allowed before the next pause (None: no limit).
        self._budget: int | None = None
        self._budget_by: str | None = None
        self._budget_steps = 0
        self._ended = False

    # -- where it lives -----------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The run starts on ``loop``: every change happens there."""
        self._loop = loop
        self._thread = threading.get_ident()

    def call(self, func: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """``func(*args)`` on the run's loop, from any thread; its exception is raised
        here."""
        loop = self._loop
        if loop is None or self._thread == threading.get_ident() or loop.is_closed():
            return func(*args)
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(func(*args))
            except BaseException as exc:  # handed to the caller's thread
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout)

    # -- what viewers send --------------------------------------------------------------

    def apply(self, command: ControlMessage, by: str | None) -> None:
        """Apply a viewer's ``approve`` / ``reject`` / ``pause`` / ``resume``."""
        if isinstance(command, ApproveMessage):
            self.approve(command.call_id, command.arguments, command.scope, by)
        elif isinstance(command, RejectMessage):
            self.reject(command.call_id, command.reason, by)
        elif isinstance(command, PauseMessage):
            self.pause(by, command.reason)
        elif isinstance(command, ResumeMessage):
            self.resume(by, command.steps)

    def approve(
        self,
        call_id: str,
        arguments: dict[str, Any] | None = None,
        scope: str = "once",
        by: str | None = None,
    ) -> Decision:
        pending = self._waiting_call(call_id)
        decision = ApprovalDecision.APPROVED
        runs_with: Any = pending.arguments
        if arguments is not None:
            try:
                pending.tool.validate_arguments(arguments)
            except ToolArgumentError as exc:
                # The call stays pending: the editor fixes the edit and tries again.
                raise InvalidEditError(
                    f"Invalid arguments for {pending.tool.name}: {exc}", call_id
                ) from None
            if arguments != pending.arguments:
                decision, runs_with = ApprovalDecision.EDITED, arguments
        task_scope = ApprovalScope(scope)
        settled = Decision(decision, runs_with, None, by, task_scope)
        if task_scope is ApprovalScope.TASK:
            self._approved_tools[pending.tool.name] = settled
        self._settle(pending, settled)
        return settled

    def reject(self, call_id: str, reason: str | None = None, by: str | None = None) -> Decision:
        pending = self._waiting_call(call_id)
        settled = Decision(ApprovalDecision.REJECTED, pending.arguments, reason, by)
        self._settle(pending, settled)
        return settled

    def pause(self, by: str | None = None, reason: str | None = None) -> None:
        """Pause before the next model or tool call; a no-op when already paused."""
        self._check_running()
        if self._paused is None:
            self._pause_requested = {"by": by, "reason": reason}

    def resume(self, by: str | None = None, steps: int | None = None) -> None:
        """Go on (``steps``: that many more model or tool calls, then pause again)."""
        self._check_running()
        if self._paused is None and self._pause_requested is None and steps is None:
            if self._budget is None:
                raise NotPausedError("The run is not paused.")
        self._pause_requested = None
        self._budget, self._budget_by, self._budget_steps = steps, by, steps or 0
        if self._paused is not None:
            self._paused = None
            if self._resumed is not None and not self._resumed.done():
                self._resumed.set_result({"by": by, "reason": None, "steps": steps})

    # -- what the engine asks -----------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused is not None

    @property
    def pending_approvals(self) -> list[ApprovalRequestedData]:
        return [p.requested for p in self._pending.values()]

    def approved_for_task(self, tool_name: str) -> Decision | None:
        return self._approved_tools.get(tool_name)

    def auto_approve(self, call_id: str, arguments: dict[str, Any], earlier: Decision) -> Decision:
        """A call of a tool approved for the whole task: approved by the same person."""
        settled = Decision(
            ApprovalDecision.APPROVED,
            arguments,
            "approved for this task",
            earlier.by,
            ApprovalScope.TASK,
        )
        self._decided[call_id] = settled
        return settled

    def request(
        self,
        call_id: str,
        tool: Tool,
        arguments: dict[str, Any],
        requested: ApprovalRequestedData,
        timeout: float | None,
    ) -> PendingCall:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self.bind(loop)
        if call_id in self._pending or call_id in self._decided:
            raise AlreadyDecidedError(f"Call {call_id!r} was already asked about.", call_id)
        deadline = None if timeout is None else loop.time() + timeout
        pending = PendingCall(call_id, tool, arguments, loop.create_future(), deadline, requested)
        self._pending[call_id] = pending
        return pending

    def expire(self, call_id: str, timeout: float | None) -> Decision:
        pending = self._pending[call_id]
        reason = f"Nobody approved it within {timeout:g} s." if timeout else None
        settled = Decision(ApprovalDecision.TIMED_OUT, pending.arguments, reason, None)
        self._settle(pending, settled)
        return settled

    def cancel_pending(self, reason: str | None) -> list[tuple[str, Decision]]:
        """The run was cancelled: every pending call is decided ``cancelled``."""
        cancelled = []
        for pending in list(self._pending.values()):
            settled = Decision(ApprovalDecision.CANCELLED, pending.arguments, reason, None)
            self._settle(pending, settled)
            cancelled.append((pending.call_id, settled))
        return cancelled

    def wants_pause(self) -> bool:
        return self._pause_requested is not None or self._budget == 0

    def take_pause(self) -> PauseData | None:
        """At a step boundary: the pause to take now, or None (and one step is counted)."""
        if self._pause_requested is not None:
            self._paused, self._pause_requested = self._pause_requested, None
        elif self._budget == 0:
            steps = self._budget_steps
            self._paused = {
                "by": self._budget_by,
                "reason": f"ran the {steps} step{'s' if steps != 1 else ''} asked for",
            }
            self._budget = None
        else:
            if self._budget is not None:
                self._budget -= 1
            return None
        # Made now, not when the engine starts waiting: a resume may come in between.
        self._resumed = asyncio.get_running_loop().create_future()
        return self._paused

    async def wait_resumed(self, token: CancellationToken) -> PauseData | None:
        """Wait for ``resume`` after :meth:`take_pause`; None if the run is cancelled
        first."""
        resumed = self._resumed
        assert resumed is not None
        stop = asyncio.ensure_future(token.wait())
        try:
            either: set[asyncio.Future[Any]] = {resumed, stop}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if resumed.done():
            return resumed.result()
        return None

    def end(self) -> None:
        """The run is over: later commands get ``task_finished``."""
        self._ended = True

    # -- internals ----------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._ended:
            raise RunEndedError("The run has ended.")

    def _waiting_call(self, call_id: str) -> PendingCall:
        pending = self._pending.get(call_id)
        if pending is not None:
            return pending
        earlier = self._decided.get(call_id)
        if earlier is not None:
            raise AlreadyDecidedError(
                f"Call {call_id!r} was already decided: {earlier.decision.value}"
                + (f" by {earlier.by}." if earlier.by else "."),
                call_id,
            )
        self._check_running()
        raise UnknownCallError(f"No tool call {call_id!r} waits for a decision.", call_id)

    def _settle(self, pending: PendingCall, decision: Decision) -> None:
        del self._pending[pending.call_id]
        self._decided[pending.call_id] = decision
        if not pending.future.done():
            pending.future.set_result(decision)
