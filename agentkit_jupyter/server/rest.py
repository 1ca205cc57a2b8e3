"""The REST API under ``agentkit/api/``: agents, tasks, cancel, kernel registration."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pydantic
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

import agentkit_jupyter.protocol as protocol

from ..core import UnknownAgentError
from ..core.control import ControlError
from ..protocol import API_PREFIX, PUBLISH_WS_PREFIX, RETRY_AFTER_HEADER, ErrorCode
from ..tasks import (
    EventNotKeptError,
    Task,
    TaskFinishedError,
    TooManyRunningTasksError,
    UnknownEventError,
    UnknownTaskError,
)
from ..tasks.backend import BackendUnavailableError
from ..tasks.listing import (
    ListFilter,
    is_time,
    journal_for,
    parse_cursor,
    parse_statuses,
    parse_time,
    task_summary,
)
from ..tasks.runs import (
    AlreadyResumedError,
    ForkError,
    ForkNeedsKernelError,
    InvalidForkArgumentsError,
    NotResumableError,
    fork_task,
    resume_task,
)
from .base import (
    BACKEND_DOWN_TEXT,
    INTERNAL_ERROR_TEXT,
    WRONG_KEY_TEXT,
    AgentKitHandlerMixin,
    ApiError,
    parse_nonnegative_int,
    requires,
)

MAX_INPUT_CHARS = 100_000
TASK_ID = r"(?P<task_id>[^/]+)"


class CreateTaskBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", strict=True)

    agent: str = pydantic.Field(min_length=1, max_length=200)
    input: str = pydantic.Field(max_length=MAX_INPUT_CHARS)
    budget: protocol.Budget | None = None


class CreateKernelTaskBody(CreateTaskBody):
    description: str = pydantic.Field(default="", max_length=2000)
    # A fork made in the kernel: its parent (a task of this server), where and how.
    parent_id: str | None = pydantic.Field(default=None, max_length=200)
    forked_at_seq: int | None = pydantic.Field(default=None, ge=0)
    fork_kind: protocol.ForkKind | None = None


def _parse_body(model: type[pydantic.BaseModel], body: bytes | None, shape: str) -> Any:
    try:
        return model.model_validate_json(body or b"")
    except pydantic.ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
        raise ApiError(
            400,
            ErrorCode.INVALID_BODY,
            f"Expected a JSON object {shape}; problem with: " + ", ".join(fields),
        ) from None


class AgentKitAPIHandler(AgentKitHandlerMixin, APIHandler):
    def after_key_authentication(self) -> None:
        if self.api_key_refused:
            raise ApiError(401, ErrorCode.UNAUTHENTICATED, WRONG_KEY_TEXT)
        self.check_origin()  # a key request from a browser page of another origin: 403

    def check_origin(self, origin_to_satisfy_tornado: str = "") -> bool:
        """Jupyter's origin check, answered 403 (Jupyter answers 404) as security.md says."""
        if not super().check_origin(origin_to_satisfy_tornado):
            raise ApiError(
                403,
                ErrorCode.FORBIDDEN,
                "Cross-origin request refused: its Origin is not this server's.",
            )
        return True

    def create_guard(self) -> None:
        """Before creating a task: the user's creation rate, then the running-task cap."""
        wait = self.agentkit.creation_limiter.take(self.limit_owner)
        if wait > 0:
            raise ApiError(
                429,
                ErrorCode.TOO_MANY_CREATIONS,
                "You are creating tasks too fast (max_creations_per_minute); "
                f"retry in {wait:.1f} s.",
                retry_after=max(1, round(wait)),
            )

    def running_cap(self, exc: TooManyRunningTasksError) -> ApiError:
        return ApiError(429, ErrorCode.TOO_MANY_RUNNING_TASKS, str(exc), retry_after=5)

    @contextlib.asynccontextmanager
    async def run_guard(self) -> AsyncIterator[None]:
        """Around a fork or a continuation: the creation guards, and the hub's refusals
        as the API's errors."""
        self.create_guard()
        try:
            yield
        except ForkError as exc:
            raise ApiError(400, ErrorCode.INVALID_FORK, str(exc)) from None
        except InvalidForkArgumentsError as exc:
            raise ApiError(400, ErrorCode.INVALID_ARGUMENTS, str(exc)) from None
        except ForkNeedsKernelError as exc:
            raise ApiError(409, ErrorCode.FORK_NEEDS_KERNEL, str(exc)) from None
        except NotResumableError as exc:
            raise ApiError(409, ErrorCode.NOT_RESUMABLE, str(exc)) from None
        except AlreadyResumedError as exc:
            raise ApiError(409, ErrorCode.ALREADY_RESUMED, str(exc)) from None
        except UnknownAgentError as exc:
            raise ApiError(409, ErrorCode.UNKNOWN_AGENT, exc.message) from None
        except UnknownTaskError:
            raise ApiError(404, ErrorCode.UNKNOWN_TASK, "No task with that id.") from None
        except TooManyRunningTasksError as exc:
            raise self.running_cap(exc) from None

    def created(self, task: Task) -> None:
        self.set_status(201)
        self.set_header("Location", url_path_join(self.base_url, API_PREFIX, "tasks", task.task_id))
        self.finish(self.task_json(task))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, BackendUnavailableError):
            self.set_status(503)
            code, message = ErrorCode.BACKEND_UNAVAILABLE.value, BACKEND_DOWN_TEXT
            self.set_header(RETRY_AFTER_HEADER, "5")
        elif isinstance(exc, ApiError):
            code, message = exc.code.value, exc.message
            if exc.retry_after is not None:
                self.set_header(RETRY_AFTER_HEADER, str(exc.retry_after))
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            code = {403: ErrorCode.FORBIDDEN, 404: ErrorCode.NOT_FOUND}.get(
                status_code, ErrorCode.BAD_REQUEST
            ).value
            # log_message is for the log: it can quote request data (e.g. a token).
            message = f"{self._reason}."
        else:  # never send an internal exception's text
            code, message = ErrorCode.INTERNAL_ERROR.value, INTERNAL_ERROR_TEXT
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"code": code, "message": message}}))

    def find_task(self, task_id: str) -> Task:
        """A task this server holds (a shared backend's only once it was looked up)."""
        try:
            return self.hub.get(task_id)
        except UnknownTaskError:
            raise ApiError(404, ErrorCode.UNKNOWN_TASK, "No task with that id.") from None

    async def task_for(self, task_id: str) -> Task:
        """The task, also one on the shared backend this server has not seen yet."""
        task = await self.lookup_task(task_id)
        if task is None:
            raise ApiError(404, ErrorCode.UNKNOWN_TASK, "No task with that id.")
        return task

    def int_argument(self, name: str, code: ErrorCode) -> int | None:
        raw = self.raw_query_argument(name)
        if raw is None:
            return None
        try:
            return parse_nonnegative_int(raw)
        except ValueError:
            raise ApiError(400, code, f"'{name}' must be an integer >= 0.") from None


class AgentsHandler(AgentKitAPIHandler):
    @requires("read")
    async def get(self) -> None:
        self.finish(
            {
                "agents": [agent.summary() for agent in self.hub.agents],
                "errors": self.agentkit.agent_errors,
            }
        )


class TasksHandler(AgentKitAPIHandler):
    @requires("read")
    async def get(self) -> None:
        """Summaries of every task (``protocol.TaskList``), or with ``?since=<cursor>``
        only those created or changed since, and the ids deleted since. ``?agent=``,
        ``?status=`` (repeated or comma-separated), ``?since=<ISO 8601 date or time>``
        (created at or after) and ``?limit=N`` (the newest N) filter the list: the
        answer is then the filtered list, ``full: true``, with a cursor as always."""
        query = self.request.query_arguments
        try:
            agents = frozenset(v.decode("utf-8") for v in query.get("agent", []) if v)
            statuses = parse_statuses([v.decode("utf-8") for v in query.get("status", [])])
        except UnicodeDecodeError:
            raise ApiError(400, ErrorCode.BAD_REQUEST, "Query values must be UTF-8.") from None
        except ValueError as exc:
            raise ApiError(400, ErrorCode.BAD_REQUEST, str(exc)) from None
        limit = self.int_argument("limit", ErrorCode.INVALID_LIMIT)
        raw = self.raw_query_argument(protocol.LIST_SINCE_QUERY)
        cursor, created_since = None, None
        try:
            since = None if raw is None else raw.decode("ascii")
            if since is not None and is_time(since):
                created_since = parse_time(since)
            elif since is not None:
                parse_cursor(since)
                cursor = since
        except ValueError:  # UnicodeDecodeError included
            raise ApiError(
                400,
                ErrorCode.INVALID_SINCE,
                "'since' must be a cursor from an earlier answer, or an ISO 8601 date or "
                "date-time (2026-05-01, 2026-05-01T12:30:00Z, 2026-05-01T14:30+02:00).",
            ) from None
        chosen = ListFilter(agents, statuses, created_since, limit)
        summaries = [task_summary(record) for record in await self._records()]
        # Filtered: the whole filtered list (full: true), whatever the cursor.
        body = journal_for(self.hub).answer(summaries, None if chosen.active else cursor)
        if chosen.active:
            body["tasks"] = chosen.apply(body["tasks"])
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(protocol.dumps(body))

    async def _records(self) -> list[dict[str, Any]]:
        """Every task's record: this server's, and with a shared backend its records
        too (tasks created through other servers), this server's copy first."""
        local: dict[str, dict[str, Any] | None] = {
            task.task_id: self.task_json(task) for task in self.hub.all()
        }
        shared = self.agentkit.shared
        if shared is None:
            return [r for r in local.values() if r is not None]
        merged = [
            local.pop(str(r["task_id"]), None) or {**r, "ws_url": self.ws_path(str(r["task_id"]))}
            for r in await shared.records()
        ]
        # Left here: this server's own (not on the backend); a copy of one deleted on
        # the backend since (through another server) is not listed.
        merged += [
            r
            for task_id, r in local.items()
            if r is not None and not shared.on_backend(self.hub.get(task_id))
        ]
        return sorted(merged, key=lambda r: float(r["created_at"]))

    @requires("write")
    async def post(self) -> None:
        body = _parse_body(CreateTaskBody, self.request.body, "{'agent': str, 'input': str}")
        try:
            self.hub.agents.get(body.agent)  # a typo costs none of the creation budget
            self.create_guard()
            budget = body.budget.model_dump() if body.budget is not None else None
            shared = self.agentkit.shared
            if shared is not None:
                task = await shared.create_task(body.agent, body.input, budget=budget)
            else:
                task = self.hub.create_task(body.agent, body.input, budget=budget)
        except UnknownAgentError as exc:
            raise ApiError(404, ErrorCode.UNKNOWN_AGENT, exc.message) from None
        except TooManyRunningTasksError as exc:
            raise self.running_cap(exc) from None
        self.set_status(201)
        self.set_header("Location", url_path_join(self.request.path, task.task_id))
        self.finish(self.task_json(task))


class KernelTasksHandler(AgentKitAPIHandler):
    """``POST kernel-tasks``: a kernel registers a run it will publish itself."""

    @requires("write")
    async def post(self) -> None:
        body = _parse_body(
            CreateKernelTaskBody,
            self.request.body,
            "{'agent': str, 'input': str, 'description'?: str}",
        )
        self.create_guard()
        try:
            task = self.hub.create_external_task(body.agent, body.input, origin="kernel")
        except TooManyRunningTasksError as exc:
            raise self.running_cap(exc) from None
        if body.parent_id is not None:
            task.parent_id = body.parent_id
            task.forked_at_seq = body.forked_at_seq
            task.fork_kind = (body.fork_kind or protocol.ForkKind.FORK).value
            task.save()
        if self.agentkit.shared is not None:
            await self.agentkit.shared.share(task)  # listed and watched on every server
        self.set_status(201)
        self.finish(
            {
                **self.task_json(task),
                "publish_url": url_path_join(self.base_url, PUBLISH_WS_PREFIX, task.task_id),
                "publish_token": task.publish_secret,
            }
        )


class TaskHandler(AgentKitAPIHandler):
    @requires("read")
    async def get(self, task_id: str) -> None:
        """The task's record and one page of its events after ``?after=``: at most
        ``?limit=`` and ``GET_PAGE_MAX_EVENTS`` (``limit=0``: the record only);
        ``next_after`` and ``has_more`` say where the next page starts."""
        task = await self.task_for(task_id)
        after = self.int_argument("after", ErrorCode.INVALID_AFTER) or 0
        limit = self.int_argument("limit", ErrorCode.INVALID_LIMIT)
        cap = protocol.GET_PAGE_MAX_EVENTS
        if limit is not None:
            cap = min(limit, cap)
        # Memory or the history (read on a worker thread): the stored bytes, never
        # parsed and serialised again.
        entries = await task.read_page(after, cap, protocol.GET_PAGE_MAX_BYTES)
        next_after = entries[-1].seq if entries else after
        body = self.task_json(task)
        body["next_after"] = next_after
        body["has_more"] = next_after < task.log.last_seq
        head = protocol.dumps(body).encode("utf-8")
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(
            b"".join((head[:-1], b',"events":[', b",".join(e.data for e in entries), b"]}"))
        )

    @requires("write")
    async def delete(self, task_id: str) -> None:
        await self.task_for(task_id)
        if self.agentkit.shared is not None:
            await self.agentkit.shared.delete(task_id)
        else:
            self.hub.delete(task_id)
        self.set_status(204)
        self.finish()


class TaskEventHandler(AgentKitAPIHandler):
    """``GET tasks/{id}/events/{seq}``: one message of the task's log, whole (the log,
    the stream and the pages hold a message larger than ``max_event_bytes`` cut; its
    ``truncated`` marker points here)."""

    @requires("read")
    async def get(self, task_id: str, seq: str) -> None:
        task = await self.task_for(task_id)
        unknown = ApiError(404, ErrorCode.UNKNOWN_EVENT, "This task has no event with that seq.")
        try:
            number = parse_nonnegative_int(seq.encode("utf-8", "surrogatepass"))
        except ValueError:
            raise unknown from None
        try:
            data = await task.read_event(number)
        except UnknownEventError:
            raise unknown from None
        except EventNotKeptError as exc:
            raise ApiError(404, ErrorCode.EVENT_NOT_KEPT, str(exc)) from None
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(data)


class TaskCancelHandler(AgentKitAPIHandler):
    @requires("write")
    async def post(self, task_id: str) -> None:
        task = await self.task_for(task_id)
        try:
            self.hub.cancel(task_id, reason="cancelled through the REST API")
        except TaskFinishedError:
            raise ApiError(
                409, ErrorCode.TASK_FINISHED, f"The task already ended ({task.status.value})."
            ) from None
        self.set_status(202)
        self.finish(self.task_json(task))


# What a refused command answers over REST (the socket sends the same code in a frame).
_CONTROL_STATUS = {
    ErrorCode.ALREADY_DECIDED: 409,
    ErrorCode.UNKNOWN_CALL: 404,
    ErrorCode.INVALID_ARGUMENTS: 400,
    ErrorCode.NOT_PAUSED: 409,
    ErrorCode.TASK_FINISHED: 409,
}


class _TaskControlHandler(AgentKitAPIHandler):
    """Human in the loop over REST: the same commands as the task WebSocket's."""

    def body_or_empty(self) -> bytes:
        return self.request.body if self.request.body.strip() else b"{}"

    async def apply(self, task: Task, command: protocol.ControlMessage) -> None:
        try:
            await task.send_command(command, self.actor_name)
        except ControlError as exc:
            raise ApiError(_CONTROL_STATUS.get(exc.code, 400), exc.code, str(exc)) from None
        except TaskFinishedError:
            raise ApiError(
                409, ErrorCode.TASK_FINISHED, f"The task already ended ({task.status.value})."
            ) from None
        answer: protocol.ControlAnswer = {
            "task_id": task.task_id,
            "status": task.status.value,
            "accepted": command.type,
        }
        if isinstance(command, protocol.ApproveMessage | protocol.RejectMessage):
            answer["call_id"] = command.call_id
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(protocol.dumps(answer))


class TaskApprovalHandler(_TaskControlHandler):
    """``POST tasks/{id}/approvals/{call_id}``: approve (maybe edited) or reject."""

    @requires("write")
    async def post(self, task_id: str, call_id: str) -> None:
        task = await self.task_for(task_id)
        body = _parse_body(
            protocol.ApprovalBody,
            self.request.body,
            '{"decision": "approve" | "reject", "arguments"?, "reason"?, "scope"?}',
        )
        await self.apply(task, body.as_message(call_id))


class TaskPauseHandler(_TaskControlHandler):
    """``POST tasks/{id}/pause``: pause before the next model or tool call."""

    @requires("write")
    async def post(self, task_id: str) -> None:
        task = await self.task_for(task_id)
        body = _parse_body(protocol.PauseBody, self.body_or_empty(), '{"reason"?: "..."}')
        await self.apply(task, protocol.PauseMessage(type="pause", reason=body.reason))


class TaskResumeHandler(_TaskControlHandler):
    """``POST tasks/{id}/resume``: a paused task goes on (or runs ``steps`` more calls
    and pauses again): 200. An interrupted one gets its continuation, a new task that
    goes on from its last completed step: 201 with that task's record."""

    @requires("write")
    async def post(self, task_id: str) -> None:
        task = await self.task_for(task_id)
        body = _parse_body(protocol.ResumeBody, self.body_or_empty(), '{"steps"?: N}')
        if task.status is not protocol.TaskStatus.INTERRUPTED:
            if task.finished:
                raise ApiError(
                    409,
                    ErrorCode.NOT_RESUMABLE,
                    f"The task is {task.status.value}: only a paused or an interrupted task "
                    "can be resumed (fork it to go on from one of its steps).",
                )
            await self.apply(task, protocol.ResumeMessage(type="resume", steps=body.steps))
            return
        shared = self.agentkit.shared
        async with self.run_guard():
            if shared is not None:
                child = await shared.resume(task.task_id)
            else:
                child = await resume_task(self.hub, task.task_id)
        self.created(child)


class TaskForkHandler(AgentKitAPIHandler):
    """``POST tasks/{id}/fork``: a new task with the events up to ``at_seq`` copied
    (no model or tool call), the edit applied, then live: 201 with its record."""

    @requires("write")
    async def post(self, task_id: str) -> None:
        await self.task_for(task_id)
        body = _parse_body(
            protocol.ForkBody,
            self.request.body,
            '{"at_seq": N, "edit"?: {"observation": str} | {"arguments": {...}} | {"input": str}}',
        )
        shared = self.agentkit.shared
        async with self.run_guard():
            if shared is not None:
                child = await shared.fork(task_id, body.at_seq, body.edit)
            else:
                child = await fork_task(self.hub, task_id, body.at_seq, body.edit)
        self.created(child)


class StatusHandler(AgentKitAPIHandler):
    """``GET status``: whether the task history takes writes, and what memory holds
    (``protocol.StatusResponse``)."""

    @requires("read")
    async def get(self) -> None:
        hub = self.hub
        tasks = hub.all()
        body: protocol.StatusResponse = {
            "protocol": protocol.PROTOCOL_VERSION,
            "history": hub.history_status(),  # type: ignore[typeddict-item]
            "tasks": {
                "total": len(tasks),
                "running": sum(1 for task in tasks if not task.finished),
                "logs_in_memory": hub.logs_in_memory(),
            },
        }
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(protocol.dumps(body))


_API = "/" + API_PREFIX
default_handlers: list[tuple[str, type[AgentKitAPIHandler]]] = [
    (rf"{_API}agents", AgentsHandler),
    (rf"{_API}tasks", TasksHandler),
    (rf"{_API}tasks/{TASK_ID}", TaskHandler),
    (rf"{_API}tasks/{TASK_ID}/events/(?P<seq>[^/]+)", TaskEventHandler),
    (rf"{_API}tasks/{TASK_ID}/cancel", TaskCancelHandler),
    (rf"{_API}tasks/{TASK_ID}/approvals/(?P<call_id>[^/]+)", TaskApprovalHandler),
    (rf"{_API}tasks/{TASK_ID}/pause", TaskPauseHandler),
    (rf"{_API}tasks/{TASK_ID}/resume", TaskResumeHandler),
    (rf"{_API}tasks/{TASK_ID}/fork", TaskForkHandler),
    (rf"{_API}kernel-tasks", KernelTasksHandler),
    (rf"{_API}status", StatusHandler),
]
