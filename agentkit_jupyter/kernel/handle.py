"""What a notebook user holds: :class:`TaskHandle`, returned by :func:`run` and ``Agent.run()``.

``task = agentkit_jupyter.run("demo", "What is 17 * 23?")`` starts a run and shows its
live view. ``task`` is small on purpose: Tab completion offers what a user needs
(``status``, ``result``, ``steps``, ``wait``, ``cancel``, ``to_json``...), not the
seventy names of an ipywidgets ``DOMWidget``. The view is ``task.widget`` (a
:class:`~agentkit_jupyter.kernel.widget.TaskWidget`); the handle displays it through its
rich repr, so the output (live view, static copy, task reference) is the widget's own,
and it hands any other attribute to the widget (and, for a run in this kernel, to its
:class:`~agentkit_jupyter.kernel.local_run.LocalRun`), so code written when ``run()``
returned the widget keeps working.

Requests that steer a run go through :attr:`TaskHandle._client`, the client the widget
reads the task from: the server's REST API, or the run itself for a run only this
kernel sees (both are a :class:`~agentkit_jupyter.kernel.client.TaskClient`).
:meth:`TaskHandle.cancel` is one; methods such as approvals, pause and resume belong
next to it and send through the same client (``_client.send_control``).

Mistakes are said in one short error whose IPython traceback shows the user's own
lines only, none of the package's (``_render_traceback_``): an unknown agent
(:class:`AgentNotFound`), an empty input (:class:`EmptyInput`, a ``ValueError``), a
``wait(timeout)`` that ran out (:class:`TaskStillRunning`: the run goes on).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from types import TracebackType
from typing import Any, SupportsIndex, overload

from ..protocol import RECORD_ONLY_LIMIT, ErrorCode
from .client import AgentKitAPIError, ServerInfo, ServerNotFoundError, TaskClient
from .forking import Forking
from .steering import Steering
from .telemetry import Telemetry
from .widget import DisplayKind, TaskWidget, Transport
from .widget import run as start_widget

__all__ = [
    "AgentNotFound",
    "CancelOutcome",
    "EmptyInput",
    "InputNotText",
    "TaskHandle",
    "TaskStillRunning",
    "run",
]

_PACKAGE = str(Path(__file__).resolve().parent.parent)


def user_traceback(error: BaseException) -> list[str]:
    """IPython's traceback of ``error`` without the frames of this package: the
    user's cell and their own functions, then the message."""
    kept = []
    tb = error.__traceback__
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
            kept.append(tb)
        tb = tb.tb_next
    short: TracebackType | None = None
    for entry in reversed(kept):
        short = TracebackType(short, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython calls this, so it is there
        get_ipython = None
    shell = get_ipython() if get_ipython is not None else None
    if shell is None:
        import traceback

        return traceback.format_exception(type(error), error, short)
    return list(shell.InteractiveTB.structured_traceback(type(error), error, short))


class _UserMistake(Exception):
    """An error the user can fix from what it says: IPython shows it without the
    package's frames (it asks an exception for ``_render_traceback_``)."""

    def _render_traceback_(self) -> list[str]:
        return user_traceback(self)


class AgentNotFound(_UserMistake, AgentKitAPIError, LookupError):
    """:func:`run` named an agent the server does not host; the message lists those it has."""

    def __str__(self) -> str:
        return self.message


class EmptyInput(_UserMistake, ValueError):
    """The input was empty (or only spaces): there is nothing to ask the agent."""


class InputNotText(_UserMistake, TypeError):
    """The input was not a ``str``."""


class TaskStillRunning(_UserMistake, TimeoutError):
    """``wait(timeout)`` ran out of time. Nothing was stopped: the run goes on."""

    def __init__(self, task_id: str, agent: str, timeout: float | None) -> None:
        self.task_id = task_id
        waited = f" after {timeout:g} s" if timeout is not None else ""
        super().__init__(
            f"Task {task_id} ({agent}) is still running{waited}; it goes on in the "
            "background. Call .wait() again to wait for its result, or .cancel() to stop it."
        )


class CancelOutcome(str):
    """What :meth:`TaskHandle.cancel` did, as a short text: ``"cancel requested"`` (the
    run stops in a moment; ``wait()`` gives its result) or ``"already succeeded"`` (or
    ``failed``, ``cancelled``, ``interrupted``: the run had ended and is left as it was).

    ``record`` is the task's record at that moment. ``outcome["status"]`` (any string
    key) reads the record too: ``cancel()`` used to return the record itself.
    """

    record: dict[str, Any]

    def __new__(cls, text: str, record: dict[str, Any]) -> CancelOutcome:
        outcome = super().__new__(cls, text)
        outcome.record = record
        return outcome

    @property
    def requested(self) -> bool:
        """Whether a cancel was sent (``False``: the run had already ended)."""
        return not self.startswith("already ")

    @overload
    def __getitem__(self, key: SupportsIndex | slice) -> str: ...

    @overload
    def __getitem__(self, key: str) -> Any: ...

    def __getitem__(self, key: SupportsIndex | slice | str) -> Any:
        if isinstance(key, str):
            return self.record[key]
        return str.__getitem__(self, key)


def check_input(user_input: object) -> str:
    """``user_input`` if it is a question an agent can work on; else
    :class:`InputNotText` or :class:`EmptyInput` (raised before anything is sent)."""
    if not isinstance(user_input, str):
        raise InputNotText(
            f"The input must be text (a str), not {type(user_input).__name__}: "
            "ask the agent something, e.g. run('demo', 'What is 17 * 23?')."
        )
    if not user_input.strip():
        raise EmptyInput(
            "The input is empty: ask the agent something, e.g. run('demo', 'What is 17 * 23?')."
        )
    return user_input


class TaskHandle(Steering, Forking, Telemetry):
    """One agent run, as a notebook user holds it.

    - ``status`` (queued, running, succeeded, failed, cancelled, interrupted), ``done``,
      ``result`` (``None`` while it runs), ``steps`` (every event so far, plain dicts);
    - ``wait(timeout=None)`` (or ``await task``) for the result; ``cancel()``;
    - ``to_dict()`` / ``to_json()``: the run as plain data;
    - ``show()`` displays the live view again; ``widget`` is the view itself;
    - ``task_id``, ``agent``, ``input``; ``shared`` and ``not_shared_reason`` say
      whether others (the side panel, other notebooks) see the run;
    - human in the loop: ``pending_approvals``, ``approve(call_id, arguments=...,
      scope=...)``, ``reject(call_id, reason)``, ``pause()``, ``resume(steps=None)``,
      ``wait_for_approval()``, ``wait_until(status)`` (see ``steering``);
    - runs as data: ``fork(at_step, observation=... | arguments=... | input=...)``,
      ``resume()`` of an interrupted task (its continuation), ``messages()``,
      ``to_dataframe()`` (see ``forking``);
    - ``export_otel(endpoint=None)``: the finished run's OpenTelemetry spans (see
      ``telemetry``).

    At the end of a cell, a handle shows its live view (unless ``run()`` already showed
    it in that cell).
    """

    __slots__ = ("_widget",)
    _widget: TaskWidget

    def __init__(self, widget: TaskWidget) -> None:
        object.__setattr__(self, "_widget", widget)
        # The output's text/plain (consoles) describes the handle, not the widget.
        widget._describe = self.__repr__

    # -- what the run is -------------------------------------------------------------

    @property
    def widget(self) -> TaskWidget:
        """The live view (an anywidget), e.g. to put in an ipywidgets layout."""
        return self._widget

    @property
    def task_id(self) -> str:
        return str(self._widget.task_id)

    @property
    def agent(self) -> str:
        return str(self._widget.agent)

    @property
    def input(self) -> str:
        return str(self._widget.input)

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed, cancelled or interrupted."""
        return str(self._widget.status)

    @property
    def done(self) -> bool:
        """Whether the run has ended (its result is in)."""
        return self._widget.done

    @property
    def result(self) -> dict[str, Any] | None:
        """The run's result (``status``, ``output``, ``error``, ``total_steps``,
        ``total_tokens``...); ``None`` while it runs."""
        return self._widget.result

    @property
    def steps(self) -> list[dict[str, Any]]:
        """Every step event so far (``event_type``, ``step``, ``data``, ``timestamp``)."""
        return self._widget.steps

    @property
    def shared(self) -> bool:
        """Whether the server's hub has the run, so that the side panel, other notebooks
        and a reopened notebook see it. A server agent's run always is."""
        return bool(getattr(self._widget, "shared", True))

    @property
    def not_shared_reason(self) -> str | None:
        """Why the run stays in this process (``None`` when it is shared)."""
        reason = getattr(self._widget, "not_shared_reason", None)
        return str(reason) if reason is not None else None

    # -- waiting and steering --------------------------------------------------------

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run ends and return its result.

        With ``timeout`` (seconds) and the run still going, raises
        :class:`TaskStillRunning`: nothing is stopped, call ``wait()`` again later.
        Cancel from the view still works meanwhile.
        """
        try:
            return self._widget.wait(timeout)
        except TimeoutError:
            raise TaskStillRunning(self.task_id, self.agent, timeout) from None

    async def wait_async(self, timeout: float | None = None) -> dict[str, Any]:
        """``await task.wait_async()``: :meth:`wait` without blocking the event loop."""
        try:
            return await self._widget.wait_async(timeout)
        except TimeoutError:
            raise TaskStillRunning(self.task_id, self.agent, timeout) from None

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        return self.wait_async().__await__()

    @property
    def _client(self) -> TaskClient:
        """Where requests that steer the run go (the widget's own client): REST on the
        server, or the run in this process when no server sees it."""
        return self._widget.client

    def _ended(self) -> CancelOutcome:
        """The outcome for a run that has already ended: ``"already <status>"``."""
        record = self._client.get_task(self.task_id, limit=RECORD_ONLY_LIMIT)
        record.pop("events", None)
        status = str(record.get("status") or self.status)
        return CancelOutcome(f"already {status}", record)

    def cancel(self) -> CancelOutcome:
        """Stop the run: the model call or tool call in flight is interrupted.

        Returns what happened, in words: ``"cancel requested"`` (``wait()`` then gives
        the cancelled result), or ``"already succeeded"`` (``failed``, ...) for a run
        that had ended, which is left as it was.
        """
        if self._widget.done:
            return self._ended()
        try:
            record = self._client.cancel_task(self.task_id)
        except AgentKitAPIError as exc:
            if exc.status != 409:  # 409: it ended meanwhile
                raise
            return self._ended()
        record.pop("events", None)
        return CancelOutcome("cancel requested", record)

    # -- as data -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The run as plain data: its record, result and every step event."""
        return self._widget.to_dict()

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text (``kwargs`` go to ``json.dumps``)."""
        return self._widget.to_json(**kwargs)

    # -- display -----------------------------------------------------------------------

    def show(self, display: DisplayKind = "auto") -> None:
        """Show the live view (again) in this cell's output."""
        self._widget.show(display)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return self._widget.mimebundle()

    def _ipython_display_(self, **kwargs: Any) -> None:
        self._widget._ipython_display_()

    def __repr__(self) -> str:
        where = ""
        if hasattr(self._widget, "local_run"):  # a run in this process
            where = ", shared" if self.shared else f", local only: {self.not_shared_reason}"
        return (
            f"TaskHandle(task_id={self.task_id!r}, agent={self.agent!r}, "
            f"status={self.status!r}{where})"
        )

    # -- Tab completion and older code -------------------------------------------------

    def __dir__(self) -> list[str]:
        # The public API of this class (and of a subclass): what `task.<Tab>` offers.
        names = {
            name
            for cls in type(self).__mro__
            if cls is not object
            for name in vars(cls)
            if not name.startswith("_")
        }
        return sorted(names)

    def __getattr__(self, name: str) -> Any:
        # Only for names the handle lacks: the widget's (model_id, transport, mimebundle,
        # close...) and a kernel run's (messages(), abort()...), as when run() returned
        # the widget. Not listed by __dir__.
        if name.startswith("__") or name == "_widget":
            raise AttributeError(name)
        widget = self._widget
        for target in (widget, getattr(widget, "local_run", None)):
            if target is not None:
                try:
                    return getattr(target, name)
                except AttributeError:
                    continue
        raise AttributeError(f"'TaskHandle' object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # The handle's own names (its properties refuse); anything else is the widget's.
        if hasattr(type(self), name):
            object.__setattr__(self, name, value)
        else:
            setattr(self._widget, name, value)

    def __delattr__(self, name: str) -> None:
        if hasattr(type(self), name):
            object.__delattr__(self, name)
        else:
            delattr(self._widget, name)


def run(
    agent: str,
    input: str,
    *,
    server: ServerInfo | None = None,
    display: DisplayKind | bool | None = "auto",
    transport: Transport = "auto",
) -> TaskHandle:
    """Start server agent ``agent`` on ``input`` and show its live view; returns the
    :class:`TaskHandle`.

    ``display`` says what the cell shows: ``True`` or ``"auto"`` (the default) the live
    view, which a reopened notebook shows again from the server's history (after a
    restart too, no kernel needed), with a static copy for GitHub and nbviewer;
    ``False`` nothing (``task`` at the end of a cell, or ``task.show()``, shows it
    later). ``"widget"`` is an older name for ``"auto"``.

    ``server`` defaults to the Jupyter server that started this kernel. ``transport``
    forces how the ipywidgets view gets the steps (``"relay"``: through the kernel),
    where that view is the one shown (VS Code, Colab).

    An agent the server does not host raises :class:`AgentNotFound`, an empty input
    :class:`EmptyInput` (a ``ValueError``), both before a task is created.
    """
    check_input(input)
    try:
        widget = start_widget(agent, input, server=server, display=False, transport=transport)
    except AgentKitAPIError as exc:
        if exc.code == ErrorCode.UNKNOWN_AGENT:
            raise AgentNotFound(exc.status, exc.code, exc.message) from None
        raise AgentKitAPIError(exc.status, exc.code, exc.message) from None
    except ServerNotFoundError as exc:
        raise ServerNotFoundError(str(exc)) from None
    handle = TaskHandle(widget)
    if display:
        handle.show("auto" if display is True else display)
    return handle
