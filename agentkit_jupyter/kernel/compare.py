"""``compare(a, b)``: two runs side by side in a notebook, what differs highlighted.

``a`` and ``b`` are ``TaskHandle``s (what ``run()`` and ``Agent.run()`` return), task
widgets, or task ids of the server. Their records and whole logs are fetched (a
handle's own way: the server, or the run in this kernel that the server does not
see), compared by ``tasks.compare.compare_runs``, and shown by a
:class:`CompareWidget`: the anywidget module of the task view (``kind = "compare"``),
the comparison as ``COMPARE_MIMETYPE`` JSON (JupyterLab's renderer needs no kernel),
and a static HTML copy for GitHub and nbviewer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..protocol import COMPARE_MIMETYPE, RECORD_ONLY_LIMIT, Comparison, dumps
from ..tasks.compare import compare_runs
from .client import AgentKitClient, ServerInfo
from .static_compare import render_compare_html
from .widget import WIDGET_VIEW_MIMETYPE, TaskWidget, _esm

if TYPE_CHECKING:
    from .handle import TaskHandle

__all__ = ["COMPARE_MIMETYPE", "CompareWidget", "compare"]


class CompareWidget(anywidget.AnyWidget):
    """Two runs compared (``protocol.Comparison``), for a notebook.

    ``comparison`` is the whole comparison as plain data: ``a`` and ``b`` (each run's
    agent, status, input, output, steps, tokens, cost, duration), ``rows`` (the aligned
    steps, each ``same`` or with its ``diffs``) and ``deltas`` (b minus a).
    """

    _esm = _esm()

    kind = traitlets.Unicode("compare", help="What the view shows: two runs compared.").tag(
        sync=True
    )
    comparison = traitlets.Dict(help="The protocol.Comparison of the two runs.").tag(sync=True)

    def __init__(self, comparison: Comparison | dict[str, Any], **kwargs: Any) -> None:
        # Strict JSON, valid text: what the comm, the notebook file and the views take.
        super().__init__(comparison=json.loads(dumps(comparison)), **kwargs)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.comparison.get("rows") or [])

    @property
    def differences(self) -> list[dict[str, Any]]:
        """The rows that differ."""
        return [row for row in self.rows if not row.get("same")]

    @property
    def deltas(self) -> dict[str, float | None]:
        """b minus a: ``steps``, ``tokens_in``, ``tokens_out``, ``cost``, ``duration_s``
        (None where either run's figure is unknown)."""
        return dict(self.comparison.get("deltas") or {})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.comparison)

    def mimebundle(self) -> dict[str, Any]:
        """The output: the widget view, the comparison's mimetype (JupyterLab renders it
        without a kernel), and the static HTML copy."""
        return {
            "text/plain": repr(self),
            "text/html": render_compare_html(self.comparison),
            COMPARE_MIMETYPE: self.comparison,
            WIDGET_VIEW_MIMETYPE: {
                "version_major": 2,
                "version_minor": 1,
                "model_id": self.model_id,
            },
        }

    # IPython takes a bundle dict here as well as anywidget's (data, metadata) tuple.
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return self.mimebundle()

    def __repr__(self) -> str:
        a, b = self.comparison.get("a") or {}, self.comparison.get("b") or {}
        return (
            f"CompareWidget(a={a.get('task_id')!r}, b={b.get('task_id')!r}, "
            f"rows={len(self.rows)}, differ={len(self.differences)})"
        )


def _fetched(
    run: TaskHandle | TaskWidget | str, server: ServerInfo | None, client: AgentKitClient | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's record and whole log."""
    from .forking import all_messages

    if isinstance(run, str):
        own = client is None
        active = client if client is not None else AgentKitClient(server)
        try:
            task = active.get_task(run)  # every page of the log
        finally:
            if own:
                active.close()
        messages = list(task.pop("events", None) or [])
        return task, messages
    widget = run if isinstance(run, TaskWidget) else getattr(run, "widget", None)
    if not isinstance(widget, TaskWidget):
        raise TypeError(
            "compare() takes runs (what run() or Agent.run() returned) or task ids, "
            f"not {type(run).__name__}."
        )
    record = dict(widget.client.get_task(widget.task_id, limit=RECORD_ONLY_LIMIT))
    return record, all_messages(widget)


def compare(
    a: TaskHandle | TaskWidget | str,
    b: TaskHandle | TaskWidget | str,
    *,
    server: ServerInfo | None = None,
    client: AgentKitClient | None = None,
) -> CompareWidget:
    """Compare two runs: a :class:`CompareWidget` with both side by side, their steps
    aligned (by step, and within a step by tool and order) and what differs highlighted,
    and ``deltas`` (b minus a) of steps, tokens, cost and duration.

    ``a`` and ``b`` are ``TaskHandle``s or task ids; ids are fetched from ``server``
    (or with ``client``), by default the server that started this kernel. A run still
    going is compared as far as it got.
    """
    record_a, messages_a = _fetched(a, server, client)
    record_b, messages_b = _fetched(b, server, client)
    for record in (record_a, record_b):
        record.pop("events", None)
        record.pop("ws_url", None)
    return CompareWidget(compare_runs(record_a, messages_a, record_b, messages_b))
