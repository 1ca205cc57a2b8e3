"""The notebook side: :class:`TaskWidget`, an anywidget bound to one task, and :func:`run`.

``run("demo", "Compare Paris and Berlin")`` starts a task on the Jupyter server and
displays its widget (``agentkit_jupyter.run``, in :mod:`.handle`, wraps it in the
:class:`~agentkit_jupyter.kernel.handle.TaskHandle` a notebook user holds). The output
carries these renderings of the same task, in every display mode:

- ``application/vnd.agentkit.task+json`` (``{"task_id", "agent"}``): JupyterLab and
  Notebook 7 with the agentkit-jupyter plugin render it (ranked before the widget
  view) with a view attached to the server by task id: live while the kernel is
  busy, and again when the notebook is reopened without a kernel or after a server
  restart. It is left out only where the page's server cannot know the task (an
  explicit ``server=``, a run that no server shares);
- the ipywidgets view (``application/vnd.jupyter.widget-view+json``): the anywidget
  module, for front ends without the plugin (VS Code, Colab). It talks to the
  page's server straight when that server knows the task, else asks the kernel to
  relay the stream over the widget's comm. Like every ipywidget it needs its kernel,
  which is why it is never the only live rendering where the task reference can be;
- ``text/html``: a static copy of the steps for GitHub and nbviewer, updated in
  place (``update_display``) when the task ends, a ``<details>`` per step;
- ``application/vnd.agentkit.run-log+json`` (once the task has ended): the run's
  record and whole log, compressed (``tasks/notebook_runs.py``), which
  ``agentkit_jupyter.load()`` imports into a server's history.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import anywidget
import traitlets

from ..protocol import (
    RECORD_ONLY_LIMIT,
    RUN_LOG_MIMETYPE,
    TASK_MIMETYPE,
    ErrorCode,
    ForkEdit,
    RelayBatch,
    RelayError,
    RelayForked,
    RunLog,
    parse_control_command,
)
from ..tasks.control import TaskControl
from ..tasks.notebook_runs import pack_run_log
from .client import AgentKitAPIError, AgentKitClient, ServerInfo, TaskClient
from .static_html import render_static_html

__all__ = ["TASK_MIMETYPE", "TaskWidget", "render_static_html", "run"]

log = logging.getLogger(__name__)

WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"

# What `display=` may say. Both show the same output; "widget" is an older name that
# used to leave the task reference out (and so broke reopened notebooks).
DisplayKind = Literal["auto", "widget"]
Transport = Literal["auto", "direct", "relay"]

_STATIC_ESM = Path(__file__).parent.parent / "static" / "widget.js"
_MISSING_ESM = """
export default {
  render({ model, el }) {
    el.textContent = "agentkit-jupyter: the widget front end is not built "
      + "(run `jlpm build` in labextension/). Task " + model.get("task_id") + ".";
  }
};
"""
# Messages per relay batch, and the pause between batches (seconds).
RELAY_BATCH = 500
RELAY_PAUSE = 0.03
# A watcher that lost the stream polls REST this often, and gives up after this many
# consecutive failures.
POLL_INTERVAL = 1.0
POLL_FAILURES = 30


# The most messages a widget keeps in the kernel (the server has them all): `steps`,
# `to_dict()`, a relay from an early seq and the static copy fetch what is older.
MAX_KEPT_MESSAGES = 2_000


@dataclass(frozen=True, slots=True)
class _Gap:
    """Relay queue item: messages this widget no longer keeps, to fetch from the server."""

    after: int
    until: int


_subshell_lock = threading.Lock()
_subshell_id: str | None = None


def _widget_subshell() -> str | None:
    """A kernel subshell (ipykernel 7+) for widget messages while a cell blocks; made
    once per kernel. ``None`` outside a kernel, or where subshells do not exist.

    jupyter-ui-poll would process the messages in the blocked cell instead, but its
    hook (``Kernel.do_one_iteration``) is gone from ipykernel 7.
    """
    global _subshell_id
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None) if shell is not None else None
    channel = getattr(kernel, "shell_channel_thread", None)
    if not getattr(kernel, "_supports_kernel_subshells", False) or channel is None:
        return None
    with _subshell_lock:
        if _subshell_id is not None:
            return _subshell_id
        made: dict[str, str] = {}
        ready = threading.Event()

        def create() -> None:  # the manager's own thread: the shell channel's
            try:
                made["id"] = channel.manager._create_subshell()
            finally:
                ready.set()

        try:
            channel.io_loop.add_callback(create)
        except Exception:  # pragma: no cover - another ipykernel layout
            log.debug("no kernel subshell for widget messages", exc_info=True)
            return None
        if ready.wait(5):
            _subshell_id = made.get("id")
        return _subshell_id


@contextlib.contextmanager
def _comms_on_a_subshell(widget: anywidget.AnyWidget) -> Iterator[None]:
    """While the block runs, route the widget's incoming comm messages to a subshell."""
    comm = widget.comm
    subshell = _widget_subshell() if comm is not None else None
    if subshell is None:
        yield
        return
    # ipykernel asks the comm where its messages go (a method; shadowed for the block).
    comm._reply_subshell_for = lambda _data, _default: subshell
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            del comm._reply_subshell_for


def _esm() -> Path | str:
    return _STATIC_ESM if _STATIC_ESM.exists() else _MISSING_ESM


def _current_cell() -> object:
    """An identifier of the cell now executing (``None`` outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    if shell is None:
        return None
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:  # pragma: no cover - older ipykernel
        parent = None
    msg_id = (parent or {}).get("header", {}).get("msg_id")
    return msg_id or ("execution", shell.execution_count)


class TaskWidget(anywidget.AnyWidget):
    """A live view of one agent task on the Jupyter server.

    ``TaskWidget(task_id)`` attaches to an existing task; :func:`run` starts one.
    ``status`` and ``result`` follow the task (a background thread watches its
    stream); ``steps`` asks the server for the events so far; :meth:`wait` (or
    ``await w.wait_async()``) blocks until the task ends; :meth:`cancel` stops it.
    """

    _esm = _esm()

    task_id = traitlets.Unicode("", help="The task's id on the server.").tag(sync=True)
    agent = traitlets.Unicode("", help="The agent running the task.").tag(sync=True)
    input = traitlets.Unicode("", help="The task's input.").tag(sync=True)
    status = traitlets.Unicode(
        "queued", help="queued, running, succeeded, failed, cancelled or interrupted."
    ).tag(sync=True)
    transport = traitlets.Enum(
        ["auto", "direct", "relay"],
        default_value="auto",
        help="How the view gets the stream: 'direct' from the page's server, 'relay' "
        "through the kernel, 'auto' direct when the page's server knows the task.",
    ).tag(sync=True)

    def __init__(
        self,
        task_id: str,
        *,
        server: ServerInfo | None = None,
        client: TaskClient | None = None,
        transport: Transport = "auto",
        attach_by_id: bool | None = None,
        task: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Attach to task ``task_id``.

        ``server`` (or a ready ``client``) says where the task lives; by default the
        server that started this kernel. ``attach_by_id`` puts the task mimetype in
        displayed outputs (default: when the server was found automatically, i.e. it
        is the page's server). ``task`` is the task record when the caller has it.
        """
        self._client: TaskClient = client if client is not None else AgentKitClient(server)
        # A client made here is closed with the widget (see close()).
        self._owns_client = client is None
        if task is None:
            try:
                task = self._client.get_task(task_id, limit=RECORD_ONLY_LIMIT)
            except AgentKitAPIError as exc:
                self._close_client()
                if exc.code != ErrorCode.UNKNOWN_TASK:
                    raise
                where = getattr(getattr(self._client, "server", None), "url", None)
                raise AgentKitAPIError(
                    exc.status,
                    exc.code,
                    f"No task {task_id!r} on the server"
                    + (f" at {where}" if where else "")
                    + " (a wrong id, a deleted task, or a task of another server).",
                ) from None
            except BaseException:
                self._close_client()
                raise
        self._attach_by_id = (
            (server is None and client is None) if attach_by_id is None else (attach_by_id)
        )
        super().__init__(
            task_id=task_id,
            agent=str(task.get("agent") or ""),
            input=str(task.get("input") or ""),
            status=str(task.get("status") or "queued"),
            transport=transport,
            **kwargs,
        )
        self._task: dict[str, Any] = {
            k: v for k, v in task.items() if k not in ("events", "ws_url")
        }
        self._lock = threading.Lock()
        # Approvals and pause as the stream tells them (status waiting / paused).
        self._steering = TaskControl()
        # The newest MAX_KEPT_MESSAGES messages; older ones are fetched from the server
        # when needed (a relay from an early seq, the static copy).
        self._messages: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT_MESSAGES)
        self._last_seq = 0
        self._result: dict[str, Any] | None = None
        self._future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._handles: list[tuple[Any, DisplayKind]] = []
        # The output's text/plain; the TaskHandle holding this widget describes itself.
        self._describe: Callable[[], str] = self.__repr__
        self._shown_in: object = None
        self._closing = threading.Event()
        self._relay_queue: queue.Queue[list[dict[str, Any]] | _Gap | None] = queue.Queue()
        self._relay_thread: threading.Thread | None = None
        self._relaying = False
        # Forks made from this view (its "Fork from here"), by id; and where a fork's
        # relay goes (the parent's view, which shows it below itself).
        self._forks: dict[str, TaskWidget] = {}
        self._sink: Callable[[Any], None] | None = None
        # The saved run log, packed once per log (by its last seq): shows and updates
        # of a finished run reuse it.
        self._run_log: tuple[int, RunLog] | None = None
        self.on_msg(self._on_custom_msg)
        self._watcher = threading.Thread(
            target=self._watch, name=f"agentkit-watch-{task_id}", daemon=True
        )
        self._watcher.start()

    # -- the Python API ------------------------------------------------------------

    @property
    def client(self) -> TaskClient:
        return self._client

    @property
    def result(self) -> dict[str, Any] | None:
        """The task's result (``status``, ``output``, ``error``...), ``None`` while it runs."""
        if self._result is None:
            task = self._client.get_task(self.task_id, limit=RECORD_ONLY_LIMIT)
            if task.get("result") is not None:
                return dict(task["result"])
        return self._result

    @property
    def done(self) -> bool:
        return self._future.done()

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The step events so far (``event_type``, ``step``, ``data``, ``timestamp``),
        fetched from the server."""
        task = self._client.get_task(self.task_id)
        return [m["data"] for m in task.get("events", []) if m.get("type") == "step"]

    def cancel(self) -> dict[str, Any]:
        """Ask the server to cancel the task; returns the task record. A finished task
        is left as it is."""
        try:
            return self._client.cancel_task(self.task_id)
        except AgentKitAPIError as exc:
            if exc.status != 409:
                raise
            return self._client.get_task(self.task_id, limit=RECORD_ONLY_LIMIT)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task ends; returns its result. Raises ``TimeoutError``.

        In a cell the kernel is busy meanwhile; on ipykernel 7 (kernel subshells) this
        widget's messages are handled on a subshell thread while it blocks, so the
        view's Cancel button and its relay requests work during ``wait()``.
        """
        try:
            with _comms_on_a_subshell(self):
                return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"task {self.task_id} did not finish within {timeout} s") from None

    async def wait_async(self, timeout: float | None = None) -> dict[str, Any]:
        """``await w.wait_async()``: as :meth:`wait`, without blocking the event loop."""
        future = asyncio.wrap_future(self._future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise TimeoutError(f"task {self.task_id} did not finish within {timeout} s") from None

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        return self.wait_async().__await__()

    def to_dict(self) -> dict[str, Any]:
        """The task as plain data: its record, result and step events."""
        task = self._client.get_task(self.task_id)
        events = task.pop("events", [])
        task.pop("ws_url", None)
        task["steps"] = [m["data"] for m in events if m.get("type") == "step"]
        return task

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text (``kwargs`` go to ``json.dumps``)."""
        return json.dumps(self.to_dict(), **kwargs)

    def close(self) -> None:
        # Also called by Widget.__del__ on a widget whose __init__ failed early (an
        # unknown task, no server): nothing of ours to stop then.
        closing: threading.Event | None = getattr(self, "_closing", None)
        if closing is not None:
            closing.set()
            self._relay_queue.put(None)
        self._close_client()
        super().close()

    def _close_client(self) -> None:
        if getattr(self, "_owns_client", False):
            self._owns_client = False
            close = getattr(self._client, "close", None)
            if close is not None:
                close()

    def __repr__(self) -> str:
        return f"TaskWidget(task_id={self.task_id!r}, agent={self.agent!r}, status={self.status!r})"

    # -- display -------------------------------------------------------------------

    def mimebundle(self, display: DisplayKind = "auto") -> dict[str, Any]:
        """The output bundle: the task mimetype that re-attaches by id (when the
        page's server can know the task), the static HTML, and the widget view. The
        same for every ``display`` mode, so that every saved output renders again."""
        with self._lock:
            messages = list(self._messages)
            task = dict(self._task)
        if messages and messages[0]["seq"] > 1:
            # Past the cap: the static copy still shows the whole run.
            try:
                record = self._client.get_task(self.task_id)
                messages = list(record.get("events") or messages)
            except Exception:
                log.debug("task %s: no full log for the static copy", self.task_id)
        run_log = self._saved_run_log(task, messages)
        bundle: dict[str, Any] = {
            "text/plain": self._describe(),
            "text/html": render_static_html(
                task, messages, saved_log_cut=run_log["cut"] if run_log else None
            ),
            WIDGET_VIEW_MIMETYPE: {
                "version_major": 2,
                "version_minor": 1,
                "model_id": self.model_id,
            },
        }
        if self._attach_by_id:
            bundle[TASK_MIMETYPE] = {"task_id": self.task_id, "agent": self.agent}
        if run_log is not None:
            bundle[RUN_LOG_MIMETYPE] = run_log
        return bundle

    def _saved_run_log(self, task: dict[str, Any], messages: list[dict[str, Any]]) -> RunLog | None:
        """The run log the saved output carries: a finished run's whole log only (a
        running one's would import as a run that never ends)."""
        if not messages or messages[0].get("seq") != 1 or messages[-1].get("type") != "result":
            return None
        last = int(messages[-1].get("seq") or 0)
        with self._lock:
            packed = self._run_log
        if packed is not None and packed[0] == last:
            return packed[1]
        try:
            run_log = pack_run_log({**task, "task_id": self.task_id}, messages)
        except Exception:  # the output still renders without it
            log.warning("task %s: its run log could not be packed", self.task_id, exc_info=True)
            return None
        with self._lock:
            self._run_log = (last, run_log)
        return run_log

    # IPython takes a bundle dict here as well as anywidget's (data, metadata) tuple.
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return self.mimebundle()

    def show(self, display: DisplayKind = "auto") -> Any:
        """Display the widget; returns the ``DisplayHandle`` (updated when the task ends)."""
        from IPython.display import display as ipy_display

        handle = ipy_display(  # type: ignore[no-untyped-call]
            self.mimebundle(display), raw=True, display_id=True
        )
        self._shown_in = _current_cell()
        with self._lock:
            self._handles.append((handle, display))
            finished = self._result is not None
        if finished:
            self._update_displays()
        return handle

    def _ipython_display_(self, **kwargs: Any) -> None:
        # `run(...)` already displayed this widget in this cell: its return value at
        # the end of the cell must not show it a second time.
        if self._shown_in is not None and self._shown_in == _current_cell():
            return
        self.show()

    def _update_displays(self) -> None:
        with self._lock:
            handles = list(self._handles)
        for handle, display in handles:
            try:
                handle.update(self.mimebundle(display), raw=True)
            except Exception:  # pragma: no cover - a closed front end
                log.debug("could not update the display of task %s", self.task_id, exc_info=True)

    # -- following the task --------------------------------------------------------

    def _watch(self) -> None:
        """Follow the task's stream (background thread) until its result."""
        try:
            for message in self._client.iter_messages(self.task_id, after=0):
                if self._closing.is_set():
                    return
                self._on_message(message)
                if message.get("type") == "result":
                    return
        except Exception as exc:
            if self._closing.is_set():
                return
            log.warning("task %s: stream lost (%s); polling the server", self.task_id, exc)
            self._relay_error(f"The kernel lost the task's stream: {exc}")
        self._poll()

    def _poll(self) -> None:
        failures = 0
        while not self._closing.is_set() and not self._future.done():
            try:
                with self._lock:
                    after = self._last_seq
                task = self._client.get_task(self.task_id, after=after)
                failures = 0
            except Exception as exc:
                failures += 1
                if failures >= POLL_FAILURES:
                    if not self._future.done():
                        self._future.set_exception(exc)
                    return
                time.sleep(POLL_INTERVAL)
                continue
            for message in task.get("events", []):
                self._on_message(message)
            if task.get("result") is not None and not self._future.done():
                with self._lock:
                    seq = self._last_seq + 1
                self._on_message({"type": "result", "seq": seq, "data": task["result"]})
            time.sleep(POLL_INTERVAL)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "connected":
            status = str(message.get("status") or "")
            if status and self._result is None:
                self.status = status
            return
        if kind not in ("step", "result"):
            return
        with self._lock:
            if self._last_seq and int(message.get("seq", 0)) <= self._last_seq:
                return
            self._messages.append(message)
            self._last_seq = int(message.get("seq", 0))
            if self._relaying:
                self._relay_queue.put([message])
        if kind == "step":
            event = message.get("data") or {}
            if self._steering.observe_wire(event):
                # waiting / paused / running, read off the events as the hub does
                self.status = self._steering.status().value
            elif self.status == "queued":
                self.status = "running"
            return
        result = dict(message.get("data") or {})
        self._finish(result)

    def _finish(self, result: dict[str, Any]) -> None:
        try:
            record = self._client.get_task(self.task_id, limit=RECORD_ONLY_LIMIT)
            record.pop("events", None)
            record.pop("ws_url", None)
        except Exception:
            record = {"finished_at": time.time()}
        with self._lock:
            self._result = result
            self._task.update(record)
            self._task["status"] = result.get("status", "failed")
        self.status = str(result.get("status") or "failed")
        self._update_displays()
        if not self._future.done():
            self._future.set_result(result)

    # -- the relay (front ends that cannot reach the server) -----------------------

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        # A message about a fork shown below this view (``task_id``) goes to the fork;
        # it answers through this view's comm (its ``_sink``).
        target = self._forks.get(str(content.get("task_id") or ""), self)
        if kind == "relay":
            try:
                after = max(0, int(content.get("after") or 0))
            except (TypeError, ValueError):
                after = 0
            target._start_relay(after)
        elif kind == "fork":
            target._fork(content)
        elif kind == "cancel":
            try:
                target.cancel()
            except Exception as exc:
                target._relay_error(f"Cancel failed: {exc}")
        elif kind == "control":
            target._control(content.get("command"))

    def _control(self, raw: Any) -> None:
        """An approve / reject / pause / resume from the view on the relay path: sent
        as the Python API sends it; a refusal goes back to the view with its code."""
        try:
            command = parse_control_command(raw)
        except ValueError:
            self._relay_error("That is not an approve, reject, pause or resume.", "bad_request")
            return
        call_id = getattr(command, "call_id", None)
        try:
            self._client.send_control(self.task_id, command)
        except AgentKitAPIError as exc:
            self._relay_error(exc.message, exc.code, call_id)
        except Exception as exc:
            self._relay_error(f"{command.type} failed: {exc}", "internal_error", call_id)

    def fork_child(self, at_seq: int, edit: ForkEdit | None) -> TaskWidget:
        """A fork of this task at ``at_seq`` (``POST tasks/{id}/fork``: a server agent's
        task; a kernel run's widget forks in the kernel) and its widget. Raises
        ``AgentKitAPIError`` (``invalid_fork``, ``fork_needs_kernel``...)."""
        record = self._client.fork_task(  # type: ignore[attr-defined]
            self.task_id, at_seq, edit.model_dump(exclude_none=True) if edit else None
        )
        return self._sibling(record)

    def continuation(self) -> TaskWidget:
        """The continuation of this interrupted task (``POST tasks/{id}/resume``): a new
        task that goes on from its last completed step, and its widget."""
        record = self._client.resume_task(self.task_id)  # type: ignore[attr-defined]
        return self._sibling(record)

    def _sibling(self, record: dict[str, Any]) -> TaskWidget:
        """A widget of another task of the same server, shown as this one is."""
        return TaskWidget(
            str(record["task_id"]),
            server=getattr(self._client, "server", None),
            task=record,
            transport=cast(Transport, self.transport),
            attach_by_id=self._attach_by_id,
        )

    def _fork(self, raw: dict[str, Any]) -> None:
        """The view's "Fork from here": forked as ``TaskHandle.fork`` does, the fork's id
        sent back (``relay_forked``) for the view to stream below; or the refusal."""
        from ..core.replay import ForkError

        try:
            at_seq = raw.get("at_seq")
            if not isinstance(at_seq, int) or isinstance(at_seq, bool) or at_seq < 0:
                raise ValueError("at_seq must be an integer >= 0")
            edit = ForkEdit.model_validate(raw["edit"]) if raw.get("edit") else None
        except (ValueError, TypeError) as exc:
            self._relay_error(f"That fork is not valid: {exc}", ErrorCode.INVALID_BODY.value)
            return
        try:
            child = self.fork_child(at_seq, edit)
        except ForkError as exc:
            self._relay_error(str(exc), ErrorCode.INVALID_FORK.value)
            return
        except AgentKitAPIError as exc:
            self._relay_error(exc.message, exc.code)
            return
        except Exception as exc:
            log.exception("agentkit: fork of task %s failed", self.task_id)
            self._relay_error(f"The fork failed: {exc}", ErrorCode.INTERNAL_ERROR.value)
            return
        # One registry and one comm for the view and every fork below it (forks of
        # forks too): the fork answers through the view's comm.
        child._forks = self._forks
        child._sink = self._sink or self.send
        child._relaying = True
        self._forks[child.task_id] = child
        forked: RelayForked = {
            "type": "relay_forked",
            "task_id": self.task_id,
            "fork_id": child.task_id,
        }
        self._relaying = True
        (self._sink or self.send)(forked)

    def _start_relay(self, after: int) -> None:
        with self._lock:
            backlog = [m for m in self._messages if m["seq"] > after]
            first_kept = self._messages[0]["seq"] if self._messages else self._last_seq + 1
            if after + 1 < first_kept:
                # Older than what is kept here: the relay fetches it from the server.
                self._relay_queue.put(_Gap(after, first_kept - 1))
            self._relaying = True
            # Queued under the lock: a message the watcher adds meanwhile comes after
            # the backlog, never before it (the view drops what is older than the
            # last seq it has, so that order would leave a gap). Always answer, even
            # with nothing yet: the view learns the task's record.
            self._relay_queue.put(backlog)
            if self._relay_thread is None:
                self._relay_thread = threading.Thread(
                    target=self._relay_loop, name=f"agentkit-relay-{self.task_id}", daemon=True
                )
                self._relay_thread.start()

    def _relay_loop(self) -> None:
        while True:
            item = self._relay_queue.get()
            if item is None:
                return
            if isinstance(item, _Gap):
                self._relay_gap(item)
                continue
            messages = list(item)
            gap: _Gap | None = None
            while len(messages) < RELAY_BATCH:
                try:
                    more = self._relay_queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._send_batch(messages)
                    return
                if isinstance(more, _Gap):
                    gap = more
                    break
                messages.extend(more)
            self._send_batch(messages)  # even an empty one: the view gets the record
            if gap is not None:
                self._relay_gap(gap)
            time.sleep(RELAY_PAUSE)

    def _relay_gap(self, gap: _Gap) -> None:
        """Relay the messages ``gap.after < seq <= gap.until`` from the server."""
        after = gap.after
        while after < gap.until and not self._closing.is_set():
            try:
                record = self._client.get_task(
                    self.task_id, after=after, limit=min(RELAY_BATCH, gap.until - after)
                )
            except Exception as exc:
                self._relay_error(f"The kernel could not fetch the task's earlier steps: {exc}")
                return
            messages = [m for m in record.get("events") or [] if m.get("seq", 0) <= gap.until]
            if not messages:
                return
            self._send_batch(messages)
            after = messages[-1]["seq"]
            time.sleep(RELAY_PAUSE)

    def _send_batch(self, messages: list[dict[str, Any]]) -> None:
        if self._closing.is_set() or self.comm is None:
            return
        with self._lock:
            task = dict(self._task)
        for start in range(0, max(len(messages), 1), RELAY_BATCH):
            batch: RelayBatch = {
                "type": "relay_batch",
                "task_id": self.task_id,
                "task": task,
                "messages": messages[start : start + RELAY_BATCH],
            }
            (self._sink or self.send)(batch)

    def _relay_error(self, text: str, code: str | None = None, call_id: str | None = None) -> None:
        if self._relaying and self.comm is not None and not self._closing.is_set():
            error: RelayError = {"type": "relay_error", "task_id": self.task_id, "error": text}
            if code is not None:
                error["code"] = code
            if call_id is not None:
                error["call_id"] = call_id
            (self._sink or self.send)(error)


def run(
    agent: str,
    input: str,
    *,
    server: ServerInfo | None = None,
    display: DisplayKind | bool | None = "auto",
    transport: Transport = "auto",
) -> TaskWidget:
    """Start ``agent`` on ``input`` on the Jupyter server and display its live view.

    ``server`` defaults to the server that started this kernel. ``display=False``
    displays nothing; ``True``, ``"auto"`` and ``"widget"`` show the same output (see
    :meth:`TaskWidget.mimebundle`). ``transport`` forces how the anywidget view gets the
    stream (``"relay"``: through the kernel). Returns the :class:`TaskWidget` itself;
    ``agentkit_jupyter.run`` is the notebook API and returns a ``TaskHandle``.
    """
    client = AgentKitClient(server)
    try:
        task = client.create_task(agent, input)
    except BaseException:
        client.close()
        raise
    widget = TaskWidget(
        task["task_id"],
        client=client,
        transport=transport,
        attach_by_id=server is None,
        task={"agent": agent, "input": input, **task},
    )
    widget._owns_client = True  # made here for this widget: closed with it
    if display:
        widget.show("auto" if display is True else display)
    return widget
