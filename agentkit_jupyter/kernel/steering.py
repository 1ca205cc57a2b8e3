"""Human in the loop from Python: what a task handle adds to steer a run.

:class:`Steering` is a mixin of :class:`~agentkit_jupyter.kernel.handle.TaskHandle`.
Every command goes through the handle's client: the server's REST API (which decides
who was first and forwards to a kernel's run), or the run itself when no server sees
it, so a notebook cell, a button in any view and a program are one and the same.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from ..protocol import (
    RECORD_ONLY_LIMIT,
    ApproveMessage,
    ControlMessage,
    PauseMessage,
    RejectMessage,
    ResumeMessage,
    is_final,
)

if TYPE_CHECKING:
    from .client import TaskClient

# How often the waits below look at the task's record.
POLL_SECONDS = 0.05
# The longest a wait gives the stream to bring ``task.status`` up to the record.
CATCH_UP_SECONDS = 5.0


class ApprovalNotRequested(TimeoutError):
    """No call waited for a decision within the timeout (or the run ended)."""


class Steering:
    """approve / reject / pause / resume and the waits that go with them."""

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def task_id(self) -> str: ...

        @property
        def status(self) -> str: ...

        @property
        def _client(self) -> TaskClient: ...

    def _record(self) -> dict[str, Any]:
        record = self._client.get_task(self.task_id, limit=RECORD_ONLY_LIMIT)
        record.pop("events", None)
        return record

    def _send(self, command: ControlMessage) -> dict[str, Any]:
        return self._client.send_control(self.task_id, command)

    @property
    def pending_approvals(self) -> list[dict[str, Any]]:
        """The calls that wait for a decision: ``call_id``, ``tool``, ``arguments``,
        ``policy``, ``schema`` (the tool's JSON schema), ``timeout``."""
        return list(self._record().get("pending_approvals") or [])

    def approve(
        self,
        call_id: str,
        arguments: dict[str, Any] | None = None,
        scope: Literal["once", "task"] = "once",
    ) -> dict[str, Any]:
        """Let the call run; with ``arguments``, with those instead (checked against the
        tool's schema first); ``scope="task"`` also approves every later call of the
        same tool in this run."""
        return self._send(
            ApproveMessage(type="approve", call_id=call_id, arguments=arguments, scope=scope)
        )

    def reject(self, call_id: str, reason: str | None = None) -> dict[str, Any]:
        """Do not run the call; the model reads ``reason`` as its result."""
        return self._send(RejectMessage(type="reject", call_id=call_id, reason=reason))

    def pause(self, reason: str | None = None) -> dict[str, Any]:
        """Pause before the next model call or tool call (one in flight finishes)."""
        return self._send(PauseMessage(type="pause", reason=reason))

    def resume(self, steps: int | None = None) -> Any:
        """Go on; with ``steps``, run that many more model or tool calls, then pause.
        An interrupted task (the server stopped while it ran, waited or was paused)
        goes on in its continuation, a new task: its handle is returned."""
        if self.status == "interrupted" and hasattr(self, "continue_interrupted"):
            return self.continue_interrupted()
        return self._send(ResumeMessage(type="resume", steps=steps))

    def wait_for_approval(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until a call waits for a decision and return it (the first, if several);
        :class:`ApprovalNotRequested` if none does within ``timeout`` or the run ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self._record()
            pending = record.get("pending_approvals") or []
            if pending:
                self._catch_up(str(record.get("status")), deadline)
                return dict(pending[0])
            if is_final(record.get("status")):
                raise ApprovalNotRequested(
                    f"The run ended ({record.get('status')}) with no call waiting."
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise ApprovalNotRequested(f"No call waited for a decision in {timeout:g} s.")
            time.sleep(POLL_SECONDS)

    def _catch_up(self, status: str, deadline: float | None) -> None:
        """Let the view's copy (``self.status``, from the stream) reach what the record
        said, so that ``task.status`` agrees right after a wait returns."""
        limit = time.monotonic() + CATCH_UP_SECONDS
        if deadline is not None:
            limit = min(limit, max(deadline, time.monotonic() + POLL_SECONDS))
        while self.status != status and time.monotonic() < limit:
            time.sleep(POLL_SECONDS / 5)

    def wait_until(self, status: str, timeout: float | None = None) -> str:
        """Block until the task's status is ``status`` (e.g. ``"paused"``, ``"waiting"``);
        ``TimeoutError`` if it is not within ``timeout``, or the run ended otherwise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = str(self._record().get("status"))
            if now == status:
                self._catch_up(now, deadline)
                return now
            if is_final(now):
                raise TimeoutError(f"The run ended ({now}) before it was {status}.")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"The run was still {now}, not {status}, after {timeout:g} s.")
            time.sleep(POLL_SECONDS)
