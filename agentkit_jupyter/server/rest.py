"""The REST API under ``agentkit/api/``: agents, tasks, cancel, kernel registration."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from ..core import UnknownAgentError
from ..protocol import API_PREFIX, PUBLISH_WS_PREFIX, ErrorCode
from ..tasks import Task, TaskFinishedError, UnknownTaskError
from .base import INTERNAL_ERROR_TEXT, AgentKitHandlerMixin, ApiError, parse_nonnegative_int

MAX_INPUT_CHARS = 100_000
TASK_ID = r"(?P<task_id>[^/]+)"


class CreateTaskBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", strict=True)

    agent: str = pydantic.Field(min_length=1, max_length=200)
    input: str = pydantic.Field(max_length=MAX_INPUT_CHARS)


class CreateKernelTaskBody(CreateTaskBody):
    description: str = pydantic.Field(default="", max_length=2000)


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
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code.value, exc.message
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
        try:
            return self.hub.get(task_id)
        except UnknownTaskError:
            raise ApiError(404, ErrorCode.UNKNOWN_TASK, "No task with that id.") from None

    def int_argument(self, name: str, code: ErrorCode) -> int | None:
        raw = self.raw_query_argument(name)
        if raw is None:
            return None
        try:
            return parse_nonnegative_int(raw)
        except ValueError:
            raise ApiError(400, code, f"'{name}' must be an integer >= 0.") from None


class AgentsHandler(AgentKitAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish({"agents": [agent.summary() for agent in self.hub.agents]})


class TasksHandler(AgentKitAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish({"tasks": [self.task_json(task) for task in self.hub.all()]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = _parse_body(CreateTaskBody, self.request.body, "{'agent': str, 'input': str}")
        try:
            task = self.hub.create_task(body.agent, body.input)
        except UnknownAgentError as exc:
            raise ApiError(404, ErrorCode.UNKNOWN_AGENT, exc.message) from None
        self.set_status(201)
        self.set_header("Location", url_path_join(self.request.path, task.task_id))
        self.finish(self.task_json(task))


class KernelTasksHandler(AgentKitAPIHandler):
    """``POST kernel-tasks``: a kernel registers a run it will publish itself."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = _parse_body(
            CreateKernelTaskBody,
            self.request.body,
            "{'agent': str, 'input': str, 'description'?: str}",
        )
        task = self.hub.create_external_task(body.agent, body.input, origin="kernel")
        self.set_status(201)
        self.finish(
            {
                **self.task_json(task),
                "publish_url": url_path_join(self.base_url, PUBLISH_WS_PREFIX, task.task_id),
                "publish_token": task.publish_secret,
            }
        )


class TaskHandler(AgentKitAPIHandler):
    @web.authenticated
    @authorized
    async def get(self, task_id: str) -> None:
        """The task's record and its events after ``?after=`` (at most ``?limit=``;
        ``limit=0``: the record only)."""
        task = self.find_task(task_id)
        after = self.int_argument("after", ErrorCode.INVALID_AFTER) or 0
        limit = self.int_argument("limit", ErrorCode.INVALID_LIMIT)
        body = self.task_json(task)
        entries = task.log.read_after(after, limit=1 << 30 if limit is None else limit)
        body["events"] = [json.loads(e.data) for e in entries]
        self.finish(body)

    @web.authenticated
    @authorized
    async def delete(self, task_id: str) -> None:
        self.find_task(task_id)
        self.hub.delete(task_id)
        self.set_status(204)
        self.finish()


class TaskCancelHandler(AgentKitAPIHandler):
    @web.authenticated
    @authorized
    async def post(self, task_id: str) -> None:
        task = self.find_task(task_id)
        try:
            self.hub.cancel(task_id, reason="cancelled through the REST API")
        except TaskFinishedError:
            raise ApiError(
                409, ErrorCode.TASK_FINISHED, f"The task already ended ({task.status.value})."
            ) from None
        self.set_status(202)
        self.finish(self.task_json(task))


_API = "/" + API_PREFIX
default_handlers: list[tuple[str, type[AgentKitAPIHandler]]] = [
    (rf"{_API}agents", AgentsHandler),
    (rf"{_API}tasks", TasksHandler),
    (rf"{_API}tasks/{TASK_ID}", TaskHandler),
    (rf"{_API}tasks/{TASK_ID}/cancel", TaskCancelHandler),
    (rf"{_API}kernel-tasks", KernelTasksHandler),
]
