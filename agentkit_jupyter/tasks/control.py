"""The hub's side of human in the loop for one task: what waits, who decided, paused.

The state is read off the task's own events (``approval_requested``,
``approval_decided``, ``paused``, ``resumed``), so it is the same for a run on the
server and for one a kernel publishes. Commands are checked here first (unknown call,
already decided, edited arguments against the tool's schema), then applied to the
run's :class:`~agentkit_jupyter.core.control.RunControl` on this loop, or forwarded to
the kernel that runs it. The first decision on a call claims it at once, so a second
one is refused (``already_decided``) even before the run's event arrives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import jsonschema

from ..core import StepEvent
from ..core.control import (
    AlreadyDecidedError,
    InvalidEditError,
    NotPausedError,
    RunControl,
    UnknownCallError,
)
from ..protocol import (
    ApproveMessage,
    ControlMessage,
    EventType,
    PauseMessage,
    PublishControlMessage,
    RejectMessage,
    ResumeMessage,
    TaskStatus,
    publish_control_message,
)

CONTROL_EVENT_TYPES = frozenset(
    {
        EventType.APPROVAL_REQUESTED,
        EventType.APPROVAL_DECIDED,
        EventType.PAUSED,
        EventType.RESUMED,
    }
)

_CONTROL_EVENT_VALUES = frozenset(t.value for t in CONTROL_EVENT_TYPES)

# Commands kept for a kernel's reconnecting publisher (it skips ids it has applied).
FORWARDED_KEPT = 256

Forwarder = Callable[[PublishControlMessage], None]


class TaskControl:
    """Human-in-the-loop state and commands of one task (see the module's docstring)."""

    def __init__(self) -> None:
        # The run's control when it runs on this loop (the hub hands it to the source).
        self.run = RunControl()
        # Set for a task a kernel publishes: commands go to it instead of ``run``.
        self.external = False
        self.pending: dict[str, dict[str, Any]] = {}
        # call id -> its decision, or "claimed" until the run's event says which.
        self.decided: dict[str, str] = {}
        self.paused = False
        self._pause_asked = False
        self._forwarded: deque[PublishControlMessage] = deque(maxlen=FORWARDED_KEPT)
        self._next_id = 1
        self._forwarders: list[Forwarder] = []

    # -- read off the events ------------------------------------------------------------

    def observe(self, event: StepEvent) -> bool:
        """Note a control event; True if the task's status may have changed."""
        data = event.data
        kind = event.event_type
        if kind is EventType.APPROVAL_REQUESTED:
            call_id = str(data.get("call_id"))
            if call_id not in self.decided:
                self.pending[call_id] = dict(data)
        elif kind is EventType.APPROVAL_DECIDED:
            call_id = str(data.get("call_id"))
            self.pending.pop(call_id, None)
            self.decided[call_id] = str(data.get("decision"))
        elif kind is EventType.PAUSED:
            self.paused, self._pause_asked = True, False
        elif kind is EventType.RESUMED:
            self.paused = False
        else:
            return False
        return True

    def observe_wire(self, event: Any) -> bool:
        """:meth:`observe` of a step's ``data`` as it is on the wire (a view's copy of
        the task: the kernel's widget)."""
        kind = event.get("event_type") if isinstance(event, dict) else None
        if kind not in _CONTROL_EVENT_VALUES:
            return False
        data = event.get("data")
        return self.observe(StepEvent(EventType(kind), 0, data if isinstance(data, dict) else {}))

    def status(self) -> TaskStatus:
        """The status of a live task: waiting (for a decision nobody made yet) beats
        paused beats running."""
        if self.pending_list():
            return TaskStatus.WAITING
        if self.paused:
            return TaskStatus.PAUSED
        return TaskStatus.RUNNING

    def pending_list(self) -> list[dict[str, Any]]:
        """The calls that wait for a decision (a claimed one no longer does)."""
        return [p for call_id, p in self.pending.items() if call_id not in self.decided]

    # -- commands -----------------------------------------------------------------------

    def apply(self, command: ControlMessage, by: str | None) -> None:
        """Check and apply (or forward) one command; a ``ControlError`` says why not."""
        self.check(command, relayed=self.external)
        if not self.external:
            self.run.apply(command, by)
        else:
            self._forward(publish_control_message(command, by))
        self.note_sent(command)

    def check(self, command: ControlMessage, relayed: bool = True) -> None:
        """What this task's state refuses of ``command`` (a ``ControlError``), before it
        goes to a run elsewhere (``relayed``: the run's own checks are not here)."""
        if isinstance(command, ApproveMessage | RejectMessage):
            self._check_call(command)
        elif isinstance(command, ResumeMessage) and relayed:
            if not (self.paused or self._pause_asked) and command.steps is None:
                raise NotPausedError("The run is not paused.")

    def note_sent(self, command: ControlMessage) -> None:
        """``command`` was accepted: a decided call is claimed (a second decision is
        refused at once), a pause is asked."""
        if isinstance(command, ApproveMessage | RejectMessage):
            self.decided.setdefault(command.call_id, "claimed")
        elif isinstance(command, PauseMessage):
            self._pause_asked = not self.paused
        elif isinstance(command, ResumeMessage):
            self._pause_asked = False

    def _check_call(self, command: ApproveMessage | RejectMessage) -> None:
        call_id = command.call_id
        earlier = self.decided.get(call_id)
        if earlier is not None:
            said = "" if earlier == "claimed" else f": {earlier}"
            raise AlreadyDecidedError(f"Call {call_id!r} was already decided{said}.", call_id)
        requested = self.pending.get(call_id)
        if requested is None:
            raise UnknownCallError(f"No tool call {call_id!r} waits for a decision.", call_id)
        if isinstance(command, ApproveMessage) and command.arguments is not None:
            schema = requested.get("schema")
            if isinstance(schema, dict):
                problems = _schema_problems(command.arguments, schema)
                if problems:
                    tool = requested.get("tool")
                    raise InvalidEditError(f"Invalid arguments for {tool}: {problems}", call_id)

    # -- a kernel's publisher -----------------------------------------------------------

    def attach_forwarder(self, forward: Forwarder) -> Callable[[], None]:
        """The kernel's publisher (re)connected: it gets what was forwarded so far (it
        skips the ids it applied before), then every new command."""
        self._forwarders.append(forward)
        for message in list(self._forwarded):
            forward(message)

        def detach() -> None:
            if forward in self._forwarders:
                self._forwarders.remove(forward)

        return detach

    def _forward(self, message: PublishControlMessage) -> None:
        message["id"] = self._next_id
        self._next_id += 1
        self._forwarded.append(message)
        for forward in list(self._forwarders):
            forward(message)


def _schema_problems(arguments: dict[str, Any], schema: dict[str, Any]) -> str:
    """What is wrong with ``arguments`` for the tool's JSON schema ("" if nothing)."""
    try:
        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    except jsonschema.SchemaError:
        return ""  # the run checks them itself before the call
    return "; ".join(
        f"{'.'.join(str(p) for p in error.path) or 'arguments'}: {error.message}"
        for error in errors[:5]
    )
