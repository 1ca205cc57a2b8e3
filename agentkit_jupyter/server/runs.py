"""Runs as data over REST: ``GET agentkit/api/compare?a=<id>&b=<id>``, two runs side by
side (``protocol.Comparison``, built by ``tasks.compare.compare_runs``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import agentkit_jupyter.protocol as protocol

from ..protocol import API_PREFIX, ErrorCode
from ..tasks import Task
from ..tasks.compare import compare_runs
from .base import ApiError, requires
from .rest import AgentKitAPIHandler

__all__ = ["CompareHandler", "default_handlers"]


async def _log_pages(task: Task) -> list[bytes]:
    """The task's whole log as stored (memory or the history, page by page): the
    messages the stream sends, a message larger than ``max_event_bytes`` cut as logged."""
    pages: list[bytes] = []
    after = 0
    while after < task.log.last_seq:
        entries = await task.read_page(
            after, protocol.GET_PAGE_MAX_EVENTS, protocol.GET_PAGE_MAX_BYTES
        )
        if not entries or entries[-1].seq <= after:
            break
        pages.extend(entry.data for entry in entries)
        after = entries[-1].seq
    return pages


def _compared(
    record_a: dict[str, Any], log_a: list[bytes], record_b: dict[str, Any], log_b: list[bytes]
) -> str:
    messages_a = [json.loads(data) for data in log_a]
    messages_b = [json.loads(data) for data in log_b]
    return protocol.dumps(compare_runs(record_a, messages_a, record_b, messages_b))


class CompareHandler(AgentKitAPIHandler):
    """``GET compare?a=<id>&b=<id>``: the two runs aligned step by step, what differs
    highlighted, and the differences in steps, tokens, cost and duration (b minus a)."""

    def task_argument(self, name: str) -> Task:
        raw = self.raw_query_argument(name)
        if raw is None or not raw.strip():
            raise ApiError(
                400, ErrorCode.BAD_REQUEST, "Say which runs to compare: ?a=<task id>&b=<task id>."
            )
        try:
            task_id = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, ErrorCode.BAD_REQUEST, "A task id is UTF-8 text.") from None
        return self.find_task(task_id)

    @requires("read")
    async def get(self) -> None:
        task_a, task_b = self.task_argument("a"), self.task_argument("b")
        record_a, record_b = task_a.to_dict(), task_b.to_dict()
        log_a = await _log_pages(task_a)
        log_b = log_a if task_b is task_a else await _log_pages(task_b)
        # Diffing long texts takes a while: off the event loop.
        body = await asyncio.to_thread(_compared, record_a, log_a, record_b, log_b)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)


_API = "/" + API_PREFIX
default_handlers: list[tuple[str, type[AgentKitAPIHandler]]] = [
    (rf"{_API}compare", CompareHandler),
]
