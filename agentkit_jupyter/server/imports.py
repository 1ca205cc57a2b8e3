"""Runs read from a notebook into the history: ``POST agentkit/api/tasks/import``.

The body is ``protocol.ImportBody``: the notebook's run logs (``protocol.RunLog``, as
``agentkit_jupyter.load()`` found them in the outputs). Every log is checked before
any is imported, so a bad one costs nothing but its clear error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import agentkit_jupyter.protocol as protocol

from ..protocol import API_PREFIX, ErrorCode
from ..tasks.notebook_runs import (
    ImportedRun,
    RunLogError,
    RunLogTooLargeError,
    import_runs,
    unpack_run_log,
)
from .base import ApiError, requires
from .rest import AgentKitAPIHandler, _parse_body

__all__ = ["ImportHandler", "default_handlers"]


def _unpacked(runs: list[dict[str, Any]]) -> list[ImportedRun]:
    found: list[ImportedRun] = []
    for index, payload in enumerate(runs):
        try:
            found.append(unpack_run_log(payload))
        except RunLogTooLargeError as exc:
            raise ApiError(413, ErrorCode.RUN_LOG_TOO_LARGE, f"Run {index + 1}: {exc}.") from None
        except RunLogError as exc:
            raise ApiError(
                400, ErrorCode.INVALID_RUN_LOG, f"Run {index + 1} is not a run log: {exc}."
            ) from None
    return found


class ImportHandler(AgentKitAPIHandler):
    """``POST tasks/import``: each run a finished task here (same id when free), marked
    ``imported_from``; 201 ``protocol.ImportAnswer``."""

    @requires("write")
    async def post(self) -> None:
        body = _parse_body(
            protocol.ImportBody, self.request.body, "{'runs': [run log, ...], 'source'?: str}"
        )
        self.create_guard()  # one request, however many runs: the user's creation rate
        # Inflating and parsing a large log takes a while: off the event loop.
        runs = await asyncio.to_thread(_unpacked, body.runs)
        source = body.source.replace("\\", "/").rsplit("/", 1)[-1] if body.source else None
        shared = self.agentkit.shared
        if shared is not None:
            tasks = await shared.import_runs(runs, source)
        else:
            tasks = import_runs(self.hub, runs, source)
        ids = {str(run.record["task_id"]): t.task_id for run, t in zip(runs, tasks, strict=True)}
        answer: protocol.ImportAnswer = {
            "ids": ids,
            "tasks": [self.task_json(task) for task in tasks],
        }
        self.set_status(201)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(protocol.dumps(answer))


_API = "/" + API_PREFIX
# Before rest's ``tasks/{task_id}``, which would take "import" for an id.
default_handlers: list[tuple[str, type[AgentKitAPIHandler]]] = [
    (rf"{_API}{protocol.IMPORT_PATH}", ImportHandler),
]
