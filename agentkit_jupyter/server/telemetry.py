"""OpenTelemetry back-fill over REST: ``POST tasks/{id}/otel`` (one finished task) and
``POST otel/export`` (many, by ids or the task list's filters), sent to the collector
the server exports to (``tasks/telemetry.py``; live export needs no request)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import agentkit_jupyter.protocol as protocol

from ..protocol import API_PREFIX, OTEL_EXPORT_PATH, OTEL_TASK_PATH, ErrorCode
from ..tasks import Task, UnknownTaskError
from ..tasks.listing import ListFilter, parse_statuses, parse_time
from ..tasks.telemetry import export_task_now
from .base import ApiError, requires
from .rest import TASK_ID, AgentKitAPIHandler, _parse_body

if TYPE_CHECKING:
    from ..tasks.telemetry import OtelExporter

__all__ = ["default_handlers"]

# How long one request waits for the collector to take a task's spans.
EXPORT_WAIT_SECONDS = 10.0

_OFF_TEXT = (
    "This server exports no OpenTelemetry spans: set OTEL_EXPORTER_OTLP_ENDPOINT (or "
    "c.AgentKitExtension.otel_endpoint) and install agentkit-jupyter[otel]."
)


class _OtelHandler(AgentKitAPIHandler):
    def exporter(self) -> OtelExporter:
        exporter: OtelExporter | None = getattr(self.agentkit, "otel_exporter", None)
        if exporter is None:
            raise ApiError(409, ErrorCode.OTEL_OFF, _OFF_TEXT)
        return exporter

    async def export(self, tasks: list[Task], skipped: list[str]) -> None:
        exporter = self.exporter()
        answer: protocol.OtelExportAnswer = {
            "task_ids": [],
            "spans": 0,
            "delivered": True,
            "skipped": skipped,
        }
        for task in tasks:
            outcome = await export_task_now(self.hub, task, exporter, EXPORT_WAIT_SECONDS)
            answer["task_ids"].append(task.task_id)
            answer["spans"] += outcome.spans
            answer["delivered"] = answer["delivered"] and outcome.delivered
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(protocol.dumps(answer))


class TaskOtelHandler(_OtelHandler):
    """``POST tasks/{id}/otel``: the finished task's spans, sent now."""

    @requires("write")
    async def post(self, task_id: str) -> None:
        self.exporter()
        task = self.find_task(task_id)
        if not task.finished:
            raise ApiError(
                409,
                ErrorCode.TASK_NOT_FINISHED,
                "The task is still running; its spans are exported when it ends.",
            )
        await self.export([task], [])


class OtelExportHandler(_OtelHandler):
    """``POST otel/export``: back-fill finished tasks, named or filtered."""

    @requires("write")
    async def post(self) -> None:
        self.exporter()
        body: protocol.OtelExportBody = _parse_body(
            protocol.OtelExportBody,
            self.request.body or b"{}",
            '{"task_ids"?: [id], "agent"?: [name], "status"?: [status], "since"?: ISO 8601, '
            '"limit"?: N}',
        )
        skipped: list[str] = []
        if body.task_ids is not None:
            tasks: list[Task] = []
            for task_id in body.task_ids:
                try:
                    task = self.hub.get(task_id)
                except UnknownTaskError:
                    skipped.append(task_id)
                    continue
                if task.finished:
                    tasks.append(task)
                else:
                    skipped.append(task_id)
        else:
            tasks = self.filtered(body)
        await self.export(tasks, skipped)

    def filtered(self, body: protocol.OtelExportBody) -> list[Task]:
        try:
            statuses = parse_statuses(body.status or [])
            since = parse_time(body.since) if body.since else None
        except ValueError as exc:
            raise ApiError(400, ErrorCode.INVALID_BODY, str(exc)) from None
        finished = [task for task in self.hub.all() if task.finished]
        records: list[dict[str, Any]] = [task.to_dict() for task in finished]
        kept = ListFilter(frozenset(body.agent or ()), statuses, since, body.limit).apply(records)
        ids = {record["task_id"] for record in kept}
        return [task for task in finished if task.task_id in ids]


_API = "/" + API_PREFIX
default_handlers: list[tuple[str, type[AgentKitAPIHandler]]] = [
    (_API + OTEL_TASK_PATH.replace("{task_id}", TASK_ID), TaskOtelHandler),
    (_API + OTEL_EXPORT_PATH, OtelExportHandler),
]
