"""Agents defined in a notebook, run in the kernel with the user's own tools.

``Agent("analyst", gateway, tools=[...]).run("question")`` starts the ReAct loop on
a background thread of the kernel (the cell returns at once, other cells keep
running), shows the same live view as a server-side task and returns the same
:class:`~agentkit_jupyter.kernel.handle.TaskHandle`. When the kernel was started by
a Jupyter server with the extension, the run is registered in the server's hub, so
every viewer sees it and a Cancel from any of them reaches the kernel; otherwise it
runs here alone and ``not_shared_reason`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from ..core import agent as core_agent
from ..protocol import ForkEdit, ForkKind
from .client import AgentKitClient, ServerInfo, TaskClient
from .forking import plan_local_fork
from .handle import TaskHandle, check_input
from .local_run import Lineage, LocalRun, LocalRunClient
from .widget import DisplayKind, TaskWidget, Transport

__all__ = ["Agent", "KernelTaskWidget", "in_kernel"]


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (where a widget can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class KernelTaskWidget(TaskWidget):
    """A :class:`TaskWidget` of a run in this process.

    ``local_run`` is the run itself; ``shared`` and ``not_shared_reason`` say whether
    other viewers see it. Interrupting the kernel during :meth:`wait` stops the run
    and fails it (``kernel_interrupted``), so no viewer is left watching a run that
    nobody waits for.
    """

    def __init__(self, local_run: LocalRun, *, transport: Transport = "auto", **kwargs: Any):
        self.local_run = local_run
        client: TaskClient
        if local_run.shared and local_run.server is not None:
            client = AgentKitClient(local_run.server)
        else:
            # No server knows this run: the kernel feeds the view, and no output may
            # carry the task mimetype (nothing could attach to it by id).
            client = LocalRunClient(local_run)
            transport = "relay"
            kwargs["attach_by_id"] = False
        super().__init__(
            local_run.task_id,
            client=client,
            transport=transport,
            task=local_run.task.to_dict(),
            **kwargs,
        )

    @property
    def shared(self) -> bool:
        return self.local_run.shared

    @property
    def not_shared_reason(self) -> str | None:
        return self.local_run.not_shared_reason

    def fork_child(self, at_seq: int, edit: ForkEdit | None) -> KernelTaskWidget:
        """A fork of this run, made in this kernel (its tools are here) and shared as
        this run is."""
        local = self.local_run
        messages, plan = plan_local_fork(self, local.agent, local.input, at_seq, edit)
        lineage = Lineage.of(self.task_id, at_seq, messages, plan, ForkKind.FORK.value)
        run = LocalRun(
            local.agent, plan.user_input, server=local.server, share=local.shared, lineage=lineage
        )
        return KernelTaskWidget(
            run, transport=cast(Transport, self.transport), attach_by_id=self._attach_by_id
        )

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            return super().wait(timeout)
        except KeyboardInterrupt:
            self.local_run.abort("The kernel was interrupted during the run.")
            raise

    def __repr__(self) -> str:
        where = "shared" if self.shared else f"local only: {self.not_shared_reason}"
        return f"{super().__repr__()[:-1]}, {where})"


@dataclass
class Agent(core_agent.Agent):
    """An agent you can run from a notebook or a script: :meth:`run` shows its live view.

    Same fields as the server's agents (name, gateway, tools, ...), so the same object
    can also be served by the extension.
    """

    def start(
        self, user_input: str, *, server: ServerInfo | None = None, share: bool = True
    ) -> TaskHandle:
        """Start a run in this process and return its handle, showing nothing (as
        ``run(..., display=False)``; ``task.show()`` shows it later)."""
        return self.run(user_input, server=server, share=share, display=False)

    def run(
        self,
        user_input: str,
        *,
        server: ServerInfo | None = None,
        share: bool = True,
        display: DisplayKind | bool | None = None,
        transport: Transport = "auto",
    ) -> TaskHandle:
        """Run the agent on ``user_input`` in this process; returns its
        :class:`~agentkit_jupyter.kernel.handle.TaskHandle`.

        ``server`` is where to share the run (default: the server that started this
        kernel); ``share=False`` keeps it private. The live view is shown when this
        runs in a kernel (``display=None``, the default; ``True``, ``"auto"`` and
        ``"widget"`` say the same), ``False`` shows nothing. ``task.wait()``,
        ``await task``, ``task.cancel()`` and ``task.steps`` work alike in a cell, an
        ``async`` cell and a script. An empty input is refused
        (:class:`~agentkit_jupyter.kernel.handle.EmptyInput`) before anything starts.
        """
        check_input(user_input)
        local = LocalRun(self, user_input, server=server, share=share)
        widget = KernelTaskWidget(local, transport=transport, attach_by_id=server is None)
        handle = TaskHandle(widget)
        if display is None:
            display = "auto" if in_kernel() else False
        if display:
            handle.show("auto" if display is True else display)
        return handle
