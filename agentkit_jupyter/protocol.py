"""Wire protocol v1: the whole contract between the layers, in one place.

Statuses, error and close codes, every message the server, the browser, the kernel
and the widget relay exchange, header and environment variable names, URL
prefixes. Every layer takes the contract from here, and
``labextension/src/protocol.generated.ts`` is generated from this module
(``python scripts/generate_protocol_ts.py``; a test checks the committed copy).

Server messages are plain ``TypedDict``s built here and serialised once per event
(the same bytes go to every subscriber); client messages are parsed into pydantic
models, and every way a client message can be wrong maps to one stable error code.

This module imports nothing from the package.
"""

from __future__ import annotations

import json
import math
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import pydantic

PROTOCOL_VERSION = 1


# -- statuses -------------------------------------------------------------------------


class TaskStatus(StrEnum):
    """The lifecycle of a task."""

    QUEUED = "queued"
    RUNNING = "running"
    # A tool call awaits a person's decision (approval_requested without its decision).
    WAITING = "waiting"
    # Paused by a viewer, or after the steps a ``resume`` asked for.
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # It was running when the server stopped; its events up to then are kept.
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED}
)


def is_final(status: str | None) -> bool:
    """Whether ``status`` (a wire string) is one a task ends in."""
    return status in _FINAL_VALUES


_FINAL_VALUES = frozenset(s.value for s in FINAL_STATUSES)


# -- step events ----------------------------------------------------------------------


class EventType(StrEnum):
    """``event_type`` of a step: what the runtime emits (``core.events`` re-exports it)."""

    TOKEN = "token"
    THOUGHT = "thought"
    TOOL_CALL = "tool_call"
    OBSERVATION = "observation"
    FINAL_ANSWER = "final_answer"
    ERROR = "error"
    CANCELLED = "cancelled"
    # Human in the loop: a tool call waits for a decision, and the decision.
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
    # The run stopped before its next model or tool call, and went on again.
    PAUSED = "paused"
    RESUMED = "resumed"
    # Runs as data: what one model call used (tokens in and out) and cost.
    USAGE = "usage"
    # A tool call that is still running: a piece of its output, its progress.
    TOOL_OUTPUT = "tool_output"
    TOOL_PROGRESS = "tool_progress"


TERMINAL_EVENT_TYPES: frozenset[EventType] = frozenset(
    {EventType.FINAL_ANSWER, EventType.ERROR, EventType.CANCELLED}
)


class ApprovalDecision(StrEnum):
    """``decision`` of an ``approval_decided`` step."""

    APPROVED = "approved"
    EDITED = "edited"  # approved with the arguments a person changed
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"  # nobody decided within approval_timeout: it did not run
    CANCELLED = "cancelled"  # the run was cancelled while the call waited


class ApprovalScope(StrEnum):
    """How far an approval reaches: this call, or every later call of the tool."""

    ONCE = "once"
    TASK = "task"


class ApprovalPolicy(StrEnum):
    """``policy`` of an ``approval_requested`` step: why the call needs a decision."""

    TOOL = "tool"  # @tool(requires_approval=True)
    TOOL_RULE = "tool_rule"  # @tool(requires_approval=<callable>) said yes for these arguments
    AGENT = "agent"  # Agent(approval="always")
    AGENT_RULE = "agent_rule"  # Agent(approval=<callable>) said yes
    # The run was interrupted after this call started and before its result: it may
    # have run already, so resuming never runs it again unasked.
    INTERRUPTED = "interrupted"


class ApprovalRequestedData(TypedDict):
    """``data`` of ``approval_requested``. ``schema`` is the tool's JSON schema (the
    views build the edit form from it); ``timeout`` the seconds until ``timed_out``."""

    call_id: str
    tool: str
    arguments: Any
    policy: str
    schema: NotRequired[dict[str, Any]]
    timeout: NotRequired[float | None]


class ApprovalDecidedData(TypedDict):
    """``data`` of ``approval_decided``: the first decision, the one that counts.
    ``arguments`` are the ones the call runs with (edited ones for ``edited``)."""

    call_id: str
    decision: str
    arguments: Any
    reason: str | None
    by: str | None
    scope: NotRequired[str]


class PauseData(TypedDict):
    """``data`` of ``paused`` and ``resumed``; ``steps`` (resumed only) is how many
    model or tool calls run before the next pause (None: no pause planned)."""

    by: str | None
    reason: str | None
    steps: NotRequired[int | None]


class UsageData(TypedDict):
    """``data`` of ``usage``, after every model call: that call's tokens (in and out,
    as the endpoint reported them) and cost, and the run's totals so far. ``cost`` is
    in US dollars, None when the model's price is unknown (never a guess)."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    total_prompt_tokens: int
    total_completion_tokens: int
    total_cost: float | None
    duration_ms: float


class ToolOutputData(TypedDict):
    """``data`` of ``tool_output``: the next piece of a running call's output (text to
    append: what it yielded, ``emit()``-ed or printed), before its ``observation``.
    ``cut``: the call streamed more than ``MAX_TOOL_OUTPUT_CHARS``; the rest is not
    streamed (the observation still has what the tool returned)."""

    call_id: str
    name: str
    text: str
    cut: NotRequired[bool]


class ToolProgressData(TypedDict):
    """``data`` of ``tool_progress``: how far a running call is (``progress`` of
    ``total``, None when the total is unknown), as ``progress()`` or an MCP server's
    progress notification said."""

    call_id: str
    name: str
    progress: float
    total: float | None
    message: str | None


# The most text one tool call streams as tool_output (its observation is apart).
MAX_TOOL_OUTPUT_CHARS = 256 * 1024


class BudgetData(TypedDict):
    """A task's budget (``Agent(budget=...)``, the REST ``budget`` field): the run ends
    ``cancelled`` with code ``budget_exceeded`` when it crosses either, even mid-call."""

    max_tokens: NotRequired[int | None]
    max_cost: NotRequired[float | None]


# -- codes ----------------------------------------------------------------------------


class ErrorCode(StrEnum):
    """Codes of ``{"type": "error"}`` messages, of REST errors and of failed results."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    INVALID_UTF8 = "invalid_utf8"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_TASK = "unknown_task"
    UNKNOWN_AGENT = "unknown_agent"
    TASK_FINISHED = "task_finished"
    FORBIDDEN = "forbidden"
    UNAUTHENTICATED = "unauthenticated"
    TOO_MANY_SUBSCRIBERS = "too_many_subscribers"
    # One user's connections to one task reached max_connections_per_user (close 4009).
    TOO_MANY_CONNECTIONS = "too_many_connections"
    # REST 429: max_running_tasks runs are in flight; retry once one has ended.
    TOO_MANY_RUNNING_TASKS = "too_many_running_tasks"
    # REST 429: one user created more than max_creations_per_minute tasks.
    TOO_MANY_CREATIONS = "too_many_creations"
    SUBSCRIBER_TOO_SLOW = "subscriber_too_slow"
    INVALID_AFTER = "invalid_after"
    INVALID_LIMIT = "invalid_limit"
    # REST 400: ``GET tasks?since=`` that is neither a cursor the server gave nor an
    # ISO 8601 date or date-time.
    INVALID_SINCE = "invalid_since"
    EVENTS_TRUNCATED = "events_truncated"
    AFTER_BEYOND_LOG = "after_beyond_log"
    INVALID_BODY = "invalid_body"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    KERNEL_DISCONNECTED = "kernel_disconnected"
    KERNEL_INTERRUPTED = "kernel_interrupted"
    SERVER_RESTARTED = "server_restarted"
    # A stored record or event could not be read back as written (repaired or replaced).
    DAMAGED_RECORD = "damaged_record"
    # REST 404: ``GET tasks/{id}/events/{seq}`` of a seq the task's log does not have.
    UNKNOWN_EVENT = "unknown_event"
    # REST 404: that message was cut (see Truncation) and its whole copy is not kept.
    EVENT_NOT_KEPT = "event_not_kept"
    # The step (an ``error`` event) that ends a restored task whose events from some seq
    # on never reached the history (its write queue was full while the disk refused).
    HISTORY_INCOMPLETE = "history_incomplete"
    # Human in the loop (REST 409 / 404 / 400, or an error frame to the one who sent it).
    ALREADY_DECIDED = "already_decided"
    UNKNOWN_CALL = "unknown_call"
    INVALID_ARGUMENTS = "invalid_arguments"
    NOT_PAUSED = "not_paused"
    # Runs as data. The run crossed its budget (max_tokens / max_cost): the ``code`` of
    # its ``cancelled`` step and of its result.
    BUDGET_EXCEEDED = "budget_exceeded"
    # REST 400: ``at_seq`` is not an event one can fork at, or the edit does not fit it.
    INVALID_FORK = "invalid_fork"
    # REST 409: a task of a kernel agent is forked in the kernel that has its tools
    # (``task.fork()`` there, or the widget's Fork), not by the server.
    FORK_NEEDS_KERNEL = "fork_needs_kernel"
    # REST 409: ``POST tasks/{id}/resume`` on a task that is neither paused nor
    # interrupted, or an interrupted one already resumed (``resumed_by`` names it).
    NOT_RESUMABLE = "not_resumable"
    ALREADY_RESUMED = "already_resumed"
    # REST 400 / 413: ``POST tasks/import`` with a run log that is not one (bad base64,
    # gzip or JSON; messages that are not a finished task's log), or one that inflates
    # beyond RUN_LOG_MAX_INFLATED_BYTES. Nothing of that request is imported.
    INVALID_RUN_LOG = "invalid_run_log"
    RUN_LOG_TOO_LARGE = "run_log_too_large"
    # OpenTelemetry export (docs/telemetry.md). REST 409: the server exports nothing
    # (no endpoint configured, or the [otel] extra is not installed), or the task still
    # runs (it is exported when it ends).
    OTEL_OFF = "otel_off"
    TASK_NOT_FINISHED = "task_not_finished"
    # Tasks on a shared backend (docs/scale-out.md). The result of a task whose worker
    # went away (its lease lapsed; another worker took it over and ended it
    # interrupted); REST 503 when the backend (Redis) cannot be reached.
    WORKER_LOST = "worker_lost"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    INTERNAL_ERROR = "internal_error"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000  # after the final result, or heartbeat timeout
    GOING_AWAY = 1001  # the server is shutting down
    INVALID_DATA = 1007  # a text frame that is not UTF-8
    INTERNAL_ERROR = 1011  # an unexpected server error (after error internal_error)
    UNAUTHENTICATED = 4001  # the seed api_key was missing or wrong
    FORBIDDEN = 4003  # not allowed (e.g. publishing to another kernel's task)
    UNKNOWN_TASK = 4004  # no such task, or it was deleted
    TOO_SLOW = 4008  # fell too far behind; resume with ?after=
    TOO_MANY_SUBSCRIBERS = 4009  # also for max_connections_per_user (too_many_connections)


# -- names: paths, headers, environment, mimetypes -------------------------------------

# Paths below the server's base_url.
API_PREFIX = "agentkit/api/"
TASK_WS_PREFIX = "agentkit/ws/tasks/"
PUBLISH_WS_PREFIX = "agentkit/ws/publish/"

# The secret a kernel presents on its publish WebSocket (it got it from POST kernel-tasks).
PUBLISH_TOKEN_HEADER = "X-AgentKit-Publish-Token"
# Where a client may present the seed api_key: this header, ``Authorization: ApiKey <key>``,
# or (old clients) the query parameter.
API_KEY_HEADER = "X-AgentKit-Api-Key"
API_KEY_AUTH_SCHEME = "ApiKey"
API_KEY_QUERY = "api_key"
# What an AgentKitExtension.api_keys key may do: "read" lists and watches tasks;
# "write" also creates, cancels and deletes them.
API_KEY_SCOPES = ("read", "write")
# The user name a request authenticated by the key named N has.
API_KEY_USER_PREFIX = "apikey:"
# A REST 429 answer carries this header: seconds after which a retry may succeed.
RETRY_AFTER_HEADER = "Retry-After"

# What a kernel started by the server reads to find it.
ENV_SERVER_URL = "AGENTKIT_SERVER_URL"
ENV_SERVER_TOKEN = "AGENTKIT_SERVER_TOKEN"
# The seed api_key, when not configured otherwise.
ENV_API_KEY = "AGENTKIT_API_KEY"

# The output mimetype a notebook carries to re-attach a task view by id.
TASK_MIMETYPE = "application/vnd.agentkit.task+json"

# ``GET tasks/{id}?limit=0``: the task's record without any of its events.
RECORD_ONLY_LIMIT = 0
# One ``GET tasks/{id}`` answers at most this many events, and about this many bytes of
# them (at least one event); ``has_more`` says whether to ask again after ``next_after``.
GET_PAGE_MAX_EVENTS = 1000
GET_PAGE_MAX_BYTES = 4 * 1024 * 1024

# One message of a task's log (a step or the result) takes at most this many bytes of
# UTF-8 JSON, by default (``HubLimits.max_event_bytes``, the ``max_event_bytes`` traitlet).
# A larger one is logged, streamed and paged with its longest texts cut to fit, and a
# TRUNCATED_KEY marker (``Truncation``) beside them; the whole message is kept (the task
# history, or memory within a budget) and served by ``GET`` EVENT_PATH.
MAX_EVENT_BYTES = 256 * 1024
# The marker's key: in a step's event data (beside ``output``, say), or in the result.
TRUNCATED_KEY = "truncated"
# Below API_PREFIX: one message of a task's log, whole (``{seq}``: its ``seq``).
EVENT_PATH = "tasks/{task_id}/events/{seq}"


def event_href(task_id: str, seq: int) -> str:
    """Where the whole message ``seq`` of a task is: a path below the server's base_url."""
    return API_PREFIX + EVENT_PATH.format(task_id=task_id, seq=seq)


# -- server -> client: the task WebSocket ------------------------------------------------


class StepEventData(TypedDict):
    """``StepEvent.to_dict()`` of the runtime. ``copied``: a fork's event copied from
    its parent's record (no model or tool call made it); the live part follows."""

    event_type: str
    step: int
    data: dict[str, Any]
    timestamp: float
    copied: NotRequired[bool]


class StepMessage(TypedDict):
    type: Literal["step"]
    seq: int
    task_id: str
    data: StepEventData


class ResultData(TypedDict):
    status: str
    task_id: str
    output: NotRequired[str | None]
    total_steps: NotRequired[int | None]
    total_tokens: NotRequired[int | None]
    error: NotRequired[dict[str, Any] | None]
    reason: NotRequired[str | None]
    # ``interrupted`` while calls waited for a decision: their approval_requested data.
    pending_approvals: NotRequired[list[dict[str, Any]]]
    # ``cancelled`` by the budget: ``budget_exceeded`` (the reason is then the same).
    code: NotRequired[str]
    # Tokens in and out over the whole run (also the partial usage of a cut run), and
    # its cost in US dollars (None: a model whose price is unknown).
    usage: NotRequired[dict[str, int]]
    cost: NotRequired[float | None]


class ResultMessage(TypedDict):
    type: Literal["result"]
    seq: int
    task_id: str
    data: ResultData


class ConnectedMessage(TypedDict):
    type: Literal["connected"]
    task_id: str
    agent: str
    status: str
    last_seq: int
    after: int
    protocol: int
    # Whether this viewer may send cancel / approve / reject / pause / resume (the views
    # show those buttons only then).
    can_write: NotRequired[bool]


class ErrorData(TypedDict):
    code: str
    message: str
    last_seq: NotRequired[int]
    first_seq: NotRequired[int]
    # The tool call a refused approve/reject was about.
    call_id: NotRequired[str]


class ErrorMessage(TypedDict):
    type: Literal["error"]
    data: ErrorData


class PongMessage(TypedDict):
    type: Literal["pong"]


class TruncatedText(TypedDict):
    """One text a shortened message holds only the start of."""

    # The whole text's length, in characters (code points).
    chars: int
    # How many of them (from the start) this copy holds.
    shown: int


class Truncation(TypedDict):
    """The TRUNCATED_KEY marker of a message cut to fit ``max_event_bytes``."""

    # The texts that were cut, by their path in the event data (or the result): keys
    # joined by ".", list items by index ("output", "arguments.code", "rows.3").
    fields: dict[str, TruncatedText]
    # The whole message's size, in bytes of UTF-8 JSON.
    bytes: int
    # GET it (below the server's base_url, with the usual auth) for the whole message.
    href: str


ServerMessage = StepMessage | ResultMessage | ConnectedMessage | ErrorMessage | PongMessage
SERVER_MESSAGE_TYPES = ("connected", "step", "result", "error", "pong")


def step_message(task_id: str, seq: int, event: StepEventData) -> StepMessage:
    return {"type": "step", "seq": seq, "task_id": task_id, "data": event}


def result_message(task_id: str, seq: int, result: ResultData) -> ResultMessage:
    return {"type": "result", "seq": seq, "task_id": task_id, "data": result}


def connected_message(
    task_id: str, agent: str, status: str, last_seq: int, after: int, can_write: bool = True
) -> ConnectedMessage:
    return {
        "can_write": can_write,
        "type": "connected",
        "task_id": task_id,
        "agent": agent,
        "status": status,
        "last_seq": last_seq,
        "after": after,
        "protocol": PROTOCOL_VERSION,
    }


def error_message(code: ErrorCode, message: str, **extra: int | str) -> ErrorMessage:
    data: dict[str, Any] = {"code": code.value, "message": message, **extra}
    return {"type": "error", "data": data}  # type: ignore[typeddict-item]


# -- client -> server: the task WebSocket ------------------------------------------------


class _ClientMessage(pydantic.BaseModel):
    # Seed clients may send extra fields; they are ignored, not an error.
    model_config = pydantic.ConfigDict(extra="ignore", strict=True)


class PingMessage(_ClientMessage):
    type: Literal["ping"]


class CancelMessage(_ClientMessage):
    type: Literal["cancel"]
    reason: str | None = pydantic.Field(default=None, max_length=500)


# A call id is the model's (OpenAI: "call_..."); bounded so a frame cannot carry a novel.
_CALL_ID = pydantic.Field(min_length=1, max_length=200)
REASON_MAX_CHARS = 2000
# The most model or tool calls one ``resume`` may ask for before the next pause.
RESUME_MAX_STEPS = 1000


class ApproveMessage(_ClientMessage):
    """Approve a pending tool call; ``arguments`` present means edited (validated
    against the tool's schema first); ``scope: "task"`` also approves every later
    call of the same tool in this task."""

    type: Literal["approve"]
    call_id: str = _CALL_ID
    arguments: dict[str, Any] | None = None
    scope: Literal["once", "task"] = "once"


class RejectMessage(_ClientMessage):
    """Reject a pending tool call; the model reads the reason as the call's result."""

    type: Literal["reject"]
    call_id: str = _CALL_ID
    reason: str | None = pydantic.Field(default=None, max_length=REASON_MAX_CHARS)


class PauseMessage(_ClientMessage):
    """Pause before the next model or tool call (a call in flight finishes)."""

    type: Literal["pause"]
    reason: str | None = pydantic.Field(default=None, max_length=REASON_MAX_CHARS)


class ResumeMessage(_ClientMessage):
    """Go on; with ``steps``, run that many more model or tool calls, then pause."""

    type: Literal["resume"]
    steps: int | None = pydantic.Field(default=None, ge=1, le=RESUME_MAX_STEPS)


# What a viewer may do to a run besides cancel it (the hub applies them, or forwards
# them to the kernel that runs it).
ControlMessage = ApproveMessage | RejectMessage | PauseMessage | ResumeMessage
AnyClientMessage = PingMessage | CancelMessage | ControlMessage
ClientMessage = Annotated[AnyClientMessage, pydantic.Field(discriminator="type")]
_client_adapter: pydantic.TypeAdapter[AnyClientMessage] = pydantic.TypeAdapter(ClientMessage)
CLIENT_MESSAGE_TYPES = ("ping", "cancel", "approve", "reject", "pause", "resume")
CONTROL_MESSAGE_TYPES = ("approve", "reject", "pause", "resume")


class ClientMessageError(ValueError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_client_message(raw: str | bytes, max_size: int) -> AnyClientMessage:
    """Parse one client frame, or raise :class:`ClientMessageError` with a stable code."""
    if isinstance(raw, bytes):
        raise ClientMessageError(
            ErrorCode.BINARY_NOT_SUPPORTED, "Binary frames are not supported; send JSON text."
        )
    if len(raw.encode("utf-8", "surrogatepass")) > max_size:
        raise ClientMessageError(
            ErrorCode.MESSAGE_TOO_LARGE, f"Messages are limited to {max_size} bytes."
        )
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ClientMessageError(ErrorCode.INVALID_JSON, "The message is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ClientMessageError(ErrorCode.NOT_AN_OBJECT, "The message must be a JSON object.")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise ClientMessageError(ErrorCode.MISSING_TYPE, "The message needs a string field 'type'.")
    if kind not in CLIENT_MESSAGE_TYPES:
        known = ", ".join(CLIENT_MESSAGE_TYPES)
        raise ClientMessageError(
            ErrorCode.UNKNOWN_TYPE, f"Unknown message type; expected one of: {known}."
        )
    try:
        return _client_adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        fields = ", ".join(sorted({".".join(map(str, e["loc"][1:])) for e in exc.errors()}))
        raise ClientMessageError(
            ErrorCode.INVALID_MESSAGE, f"Invalid field(s) in {kind!r} message: {fields}."
        ) from None


# -- the publish WebSocket (a kernel publishing its own run) -------------------------------


class PublishEventMessage(TypedDict):
    """Kernel -> server: one step event of the kernel's run, with its ``seq`` in the
    kernel's log (the server's copy has the same ``seq``s: one already held is a
    duplicate from before a reconnect and is skipped)."""

    type: Literal["event"]
    event: StepEventData
    seq: NotRequired[int]


class PublishResumeMessage(TypedDict):
    """Server -> kernel, first on every publish connection: the last ``seq`` the server
    holds; the publisher sends its events after it (a reconnecting publisher resumes)."""

    type: Literal["resume"]
    last_seq: int


class PublishCancelMessage(TypedDict):
    """Server -> kernel: a viewer cancelled the run."""

    type: Literal["cancel"]
    reason: str | None


class PublishControlMessage(TypedDict):
    """Server -> kernel: a viewer's decision, pause or resume (``command`` is the
    viewer's ``approve`` / ``reject`` / ``pause`` / ``resume`` message as parsed), and
    who sent it. Resent on a reconnect until the kernel's log shows its effect."""

    type: Literal["control"]
    command: dict[str, Any]
    by: str | None
    # Numbered per task: a reconnecting kernel gets them again and skips those it applied.
    id: NotRequired[int]


def publish_control_message(command: ControlMessage, by: str | None) -> PublishControlMessage:
    return {"type": "control", "command": command.model_dump(), "by": by}


def parse_control_command(raw: Any) -> ControlMessage:
    """A forwarded ``command`` (or a relay's) back into its message; ValueError if it is
    not one."""
    if not isinstance(raw, dict) or raw.get("type") not in CONTROL_MESSAGE_TYPES:
        raise ValueError("not a control command")
    try:
        parsed = _client_adapter.validate_python(raw)
    except pydantic.ValidationError as exc:
        raise ValueError(str(exc)) from None
    assert not isinstance(parsed, PingMessage | CancelMessage)
    return parsed


def publish_event_message(event: StepEventData, seq: int | None = None) -> PublishEventMessage:
    message: PublishEventMessage = {"type": "event", "event": event}
    if seq is not None:
        message["seq"] = seq
    return message


def publish_resume_message(last_seq: int) -> PublishResumeMessage:
    return {"type": "resume", "last_seq": last_seq}


def publish_cancel_message(reason: str | None) -> PublishCancelMessage:
    return {"type": "cancel", "reason": reason}


# -- the widget relay (the kernel streams to a view that cannot reach the server) ----------


class RelayRequest(TypedDict):
    """View -> kernel: send the task's messages after ``after``, then the live ones."""

    type: Literal["relay"]
    after: int
    # Another task than the widget's: a fork made from this widget (see RelayForked).
    task_id: NotRequired[str]


class RelayCancel(TypedDict):
    """View -> kernel: cancel the task (the Cancel button, on the relay path)."""

    type: Literal["cancel"]


class RelayControl(TypedDict):
    """View -> kernel: approve, reject, pause or resume (buttons, on the relay path);
    ``command`` is the task WebSocket's message of that type."""

    type: Literal["control"]
    command: dict[str, Any]


class RelayFork(TypedDict):
    """View -> kernel: fork the task at ``at_seq`` (the step's "Fork from here"), with
    ``edit`` as ``ForkEdit``; the kernel answers ``relay_forked`` or ``relay_error``."""

    type: Literal["fork"]
    at_seq: int
    edit: NotRequired[dict[str, Any] | None]


class RelayForked(TypedDict):
    """Kernel -> view: the fork exists; the view streams ``fork_id`` below the parent
    (a ``relay`` request with that ``task_id`` on the relay path)."""

    type: Literal["relay_forked"]
    task_id: str
    fork_id: str


class RelayBatch(TypedDict):
    """Kernel -> view: the task's record and a batch of its log messages."""

    type: Literal["relay_batch"]
    task_id: str
    task: dict[str, Any]
    messages: list[dict[str, Any]]


class RelayError(TypedDict):
    """Kernel -> view: the kernel lost the stream, or a cancel or a control command
    failed (``code`` and, for approve / reject, ``call_id`` say which)."""

    type: Literal["relay_error"]
    task_id: str
    error: str
    code: NotRequired[str]
    call_id: NotRequired[str]


# -- REST: human in the loop ---------------------------------------------------------------


class ApprovalBody(pydantic.BaseModel):
    """``POST tasks/{id}/approvals/{call_id}``."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    decision: Literal["approve", "reject"]
    arguments: dict[str, Any] | None = None
    reason: str | None = pydantic.Field(default=None, max_length=REASON_MAX_CHARS)
    scope: Literal["once", "task"] = "once"

    def as_message(self, call_id: str) -> ApproveMessage | RejectMessage:
        if self.decision == "approve":
            return ApproveMessage(
                type="approve", call_id=call_id, arguments=self.arguments, scope=self.scope
            )
        return RejectMessage(type="reject", call_id=call_id, reason=self.reason)


class PauseBody(pydantic.BaseModel):
    """``POST tasks/{id}/pause`` (an empty body is fine)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    reason: str | None = pydantic.Field(default=None, max_length=REASON_MAX_CHARS)


class ResumeBody(pydantic.BaseModel):
    """``POST tasks/{id}/resume`` (an empty body is fine)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    steps: int | None = pydantic.Field(default=None, ge=1, le=RESUME_MAX_STEPS)


class ForkEdit(pydantic.BaseModel):
    """The one thing a fork changes at its fork point: the ``observation`` of the tool
    call at ``at_seq``, the ``arguments`` of the tool call at ``at_seq`` (it runs again
    with them), the user ``input`` (a fork at the start, ``at_seq`` 0), or a
    ``follow_up`` question after the answer (``at_seq`` the ``final_answer``'s: the
    conversation goes on, answer included, in the new task)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    observation: str | None = pydantic.Field(default=None, max_length=1_000_000)
    arguments: dict[str, Any] | None = None
    input: str | None = pydantic.Field(default=None, max_length=1_000_000)
    follow_up: str | None = pydantic.Field(default=None, min_length=1, max_length=100_000)

    @pydantic.model_validator(mode="after")
    def _one_thing(self) -> ForkEdit:
        given = [n for n in FORK_EDITS if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "an edit changes exactly one of observation, arguments, input, follow_up"
            )
        return self


FORK_EDITS = ("observation", "arguments", "input", "follow_up")


class ForkBody(pydantic.BaseModel):
    """``POST tasks/{id}/fork``: a new task that copies the parent's events up to
    ``at_seq`` (no model or tool call) and goes on live from there."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    at_seq: int = pydantic.Field(ge=0)
    edit: ForkEdit | None = None


class Budget(pydantic.BaseModel):
    """The ``budget`` field of ``POST tasks`` (see ``BudgetData``)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    max_tokens: int | None = pydantic.Field(default=None, ge=1)
    max_cost: float | None = pydantic.Field(default=None, gt=0, allow_inf_nan=False)


class ForkKind(StrEnum):
    """``fork_kind`` of a task with a ``parent_id``: forked by a person, or the
    continuation of an interrupted task (``POST tasks/{id}/resume``)."""

    FORK = "fork"
    RESUME = "resume"


class ControlAnswer(TypedDict):
    """What the human-in-the-loop routes answer (200): the task's status after the
    command was accepted; the step that records it follows on the stream."""

    task_id: str
    status: str
    accepted: str  # the command's type: approve, reject, pause, resume
    call_id: NotRequired[str]


# -- REST: a page of a task's log, and the server's status ----------------------------------


class TaskPage(TypedDict):
    """What ``GET tasks/{id}`` adds to the task's record: one page of its log."""

    # The step and result messages with ``seq > after``, as the task WebSocket sends them.
    events: list[dict[str, Any]]
    # Ask for the next page with ``?after=`` this: the last event's ``seq`` (or ``after``).
    next_after: int
    # Whether there are events after ``next_after``.
    has_more: bool


class HistoryState(StrEnum):
    """Whether the task history (the SQLite file) takes writes."""

    OK = "ok"
    # Writes fail (disk full, read-only file): they are kept and retried; the stream goes on.
    FAILING = "failing"
    # No history this session (db_path '' or the file could not be opened).
    OFF = "off"


class HistoryError(TypedDict):
    # The last error, as SQLite gave it.
    message: str
    # When the failures began (epoch seconds).
    since: float
    # Failed attempts so far.
    failures: int


class HistoryStatus(TypedDict):
    state: HistoryState
    path: str | None
    # The write failure in progress, None when writes succeed.
    error: HistoryError | None
    # Events and records not yet on disk.
    pending: int
    # Their size (about: the bytes of their texts), and the most that may wait: beyond
    # it a task's later events are not queued (its history on disk stops there, said
    # in ``incomplete_tasks`` and in the task's ``history_incomplete_from``).
    pending_bytes: int
    max_pending_bytes: int
    # Events not queued this session because the queue was full (memory still has them).
    dropped_events: int
    # Tasks whose history on disk stops before their last event (see above).
    incomplete_tasks: list[str]
    # Said at start-up, e.g. a history file other users may read.
    warnings: list[str]
    # Tasks with a record or event that could not be read back as written.
    damaged_tasks: list[str]
    # Stored records that could not be read at all (logged, left in the file).
    skipped_records: int


class TaskCounts(TypedDict):
    total: int
    running: int
    # Tasks whose log is held in memory (running ones and a small cache).
    logs_in_memory: int


class StatusResponse(TypedDict):
    """``GET agentkit/api/status``."""

    protocol: int
    history: HistoryStatus
    tasks: TaskCounts


# -- REST: the task list (summaries, incremental) -------------------------------------------

# ``GET tasks`` lists summaries: a text field longer than this many characters (the input,
# the result's output, its error message or cancel reason) is cut to it, and the task's
# ``truncated`` is true; ``GET tasks/{id}?limit=0`` has the whole record.
LIST_TEXT_MAX_CHARS = 500
# ``GET tasks?since=<cursor>``: only what changed since the answer that gave the cursor;
# ``since=<ISO 8601 date or date-time>`` (it has a '-', a cursor never does): the tasks
# created at or after it (a filter, like ``agent``, ``status`` and ``limit``).
LIST_SINCE_QUERY = "since"
# How many deletions the server remembers for ``since``; an older cursor gets a full list.
LIST_DELETIONS_KEPT = 10_000


class TaskSummary(TypedDict):
    """One task of ``GET tasks``: the record with its long texts cut."""

    task_id: str
    agent: str
    status: str
    origin: str
    # The input, cut to LIST_TEXT_MAX_CHARS; ``input_chars`` is its whole length.
    input: str
    input_chars: int
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    # The result (None while it runs) without its long texts: ``output``, ``error.message``
    # and ``reason`` are cut to LIST_TEXT_MAX_CHARS; ``output_chars`` is the output's length.
    result: dict[str, Any] | None
    output_chars: int
    # Whether any text of this summary was cut.
    truncated: bool
    last_seq: int
    first_seq: int
    damaged: str | None
    # The first seq missing from the task history on disk (its queue was full while
    # the disk refused writes): events from it on are in memory only. None: whole.
    history_incomplete_from: int | None
    subscribers: int
    # ``call_id`` and ``tool`` of each call waiting for a decision (status ``waiting``).
    pending_approvals: list[dict[str, Any]]
    ws_url: str
    # Runs as data: the task it was forked from (or continues), the parent's seq it was
    # forked at, how (``ForkKind``), and the continuation of an interrupted task.
    parent_id: str | None
    forked_at_seq: int | None
    fork_kind: str | None
    resumed_by: str | None
    # Tokens in and out so far, the cost in US dollars (None: unknown price), the budget.
    tokens_in: int
    tokens_out: int
    cost: float | None
    budget: BudgetData | None
    # Where an imported task comes from (``agentkit_jupyter.load()``); None: it ran here.
    imported_from: ImportedFrom | None


class TaskList(TypedDict):
    """``GET tasks`` (all tasks) and ``GET tasks?since=<cursor>`` (what changed)."""

    # Oldest first: every task (``full``), or those created or changed since the cursor.
    tasks: list[TaskSummary]
    # Ids of tasks deleted since the cursor (always empty when ``full``).
    deleted: list[str]
    # Pass it as ``?since=`` next time.
    cursor: str
    # True: ``tasks`` is the whole list (no cursor, or one from before a restart or older
    # than the deletions the server remembers); replace what you hold.
    full: bool


# -- runs as data: two runs compared --------------------------------------------------------


class DiffSegment(TypedDict):
    """A piece of a text compared: in both (``equal``), only in run a (``delete``) or
    only in run b (``insert``). Side a shows equal + delete, side b equal + insert."""

    op: Literal["equal", "delete", "insert"]
    text: str


class CompareCell(TypedDict):
    """One run's side of a row. ``kind``: ``thought``, ``tool`` (a call and its
    observation), ``answer`` (the final answer) or ``end`` (an error or a cancel)."""

    kind: str
    seq: int
    text: NotRequired[str]
    tool: NotRequired[str]
    arguments: NotRequired[Any]
    observation: NotRequired[str]
    is_error: NotRequired[bool]
    copied: NotRequired[bool]


class CompareRow(TypedDict):
    """A step of both runs, aligned by step and tool; ``a`` or ``b`` is None where one
    run has nothing there. ``diffs`` by field (``text``, ``arguments``, ``observation``)
    for the fields that differ."""

    step: int
    key: str
    a: CompareCell | None
    b: CompareCell | None
    same: bool
    diffs: dict[str, list[DiffSegment]]


class CompareSide(TypedDict):
    task_id: str
    agent: str
    status: str
    input: str
    output: str | None
    steps: int
    tokens_in: int
    tokens_out: int
    cost: float | None
    duration_s: float | None
    parent_id: str | None


class Comparison(TypedDict):
    """``GET agentkit/api/compare?a=<id>&b=<id>`` and ``compare(a, b)``'s widget.
    ``deltas`` are b minus a (None where either side is unknown)."""

    a: CompareSide
    b: CompareSide
    rows: list[CompareRow]
    deltas: dict[str, float | None]


COMPARE_MIMETYPE = "application/vnd.agentkit.compare+json"


# -- runs inside the notebook file: the saved run log, and importing it ----------------------

# The output mimetype that carries a finished run's record and whole event log in the
# notebook (beside the static HTML and TASK_MIMETYPE), as a ``RunLog``; no front end
# renders it: ``agentkit_jupyter.load()`` reads it back into a server's history.
RUN_LOG_MIMETYPE = "application/vnd.agentkit.run-log+json"
RUN_LOG_VERSION = 1
# ``RunLog.log``: the log's messages as JSON text, one per line (UTF-8), gzip-compressed
# (mtime 0, so the same run saves the same bytes), then base64.
RUN_LOG_ENCODING = "gzip+base64"
# The most characters ``RunLog.log`` takes. A longer log keeps its first events, its
# last step and the result (``RunLogCut``), and the static HTML says so.
RUN_LOG_MAX_CHARS = 2 * 1024 * 1024
# What one run's log may inflate to when it is imported (a small bomb is refused).
RUN_LOG_MAX_INFLATED_BYTES = 256 * 1024 * 1024
# The task record fields a run log keeps: what an import needs, nothing of the server's.
RUN_LOG_RECORD_FIELDS = (
    "task_id",
    "agent",
    "input",
    "status",
    "origin",
    "created_at",
    "started_at",
    "finished_at",
    "result",
    "parent_id",
    "forked_at_seq",
    "fork_kind",
    "resumed_by",
    "tokens_in",
    "tokens_out",
    "cost",
    "budget",
)
# Below API_PREFIX: ``POST`` an ``ImportBody``, answered 201 ``ImportAnswer``.
IMPORT_PATH = "tasks/import"
# The record field of an imported task (``ImportedFrom``).
IMPORTED_FROM_KEY = "imported_from"


class RunLogCut(TypedDict):
    """A log that did not fit RUN_LOG_MAX_CHARS: ``kept`` of its ``events`` messages, the
    first ones and (``tail``) its last step and the result, each with its own ``seq``."""

    events: int
    kept: int
    tail: int


class RunLog(TypedDict):
    """The RUN_LOG_MIMETYPE payload: a finished run, as a notebook carries it."""

    version: int
    encoding: str
    # RUN_LOG_RECORD_FIELDS of the task's record.
    task: dict[str, Any]
    # How many messages ``log`` holds, and its characters before base64 (uncompressed).
    messages: int
    bytes: int
    log: str
    cut: RunLogCut | None


class ImportedFrom(TypedDict):
    """``imported_from`` of a task imported from a notebook."""

    # Its id where it ran (the new task has it too when it was free).
    task_id: str
    # The notebook it was read from, as ``load()`` named it (a file name, no folder).
    source: str | None
    imported_at: float
    # The notebook held a cut log (``RunLogCut``): these are not all of the run's events.
    cut: bool


class ImportBody(pydantic.BaseModel):
    """``POST tasks/import``: runs read from a notebook (each a ``RunLog``), all imported
    or none (the first bad one is the error)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    runs: list[dict[str, Any]] = pydantic.Field(min_length=1, max_length=1000)
    source: str | None = pydantic.Field(default=None, max_length=1000)


class ImportAnswer(TypedDict):
    """What ``POST tasks/import`` answers (201): each run's id in the notebook -> its id
    here (the same when it was free), and the imported tasks' records."""

    ids: dict[str, str]
    tasks: list[dict[str, Any]]


# -- serialisation: strict JSON, valid text ----------------------------------------------

# Built once: json.dumps() with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def dumps(message: Any) -> str:
    """Compact JSON text of a message: strict JSON and valid Unicode, whatever it holds.

    The one rule for everything sent or stored: a non-finite number (``NaN``,
    ``Infinity``, which browsers refuse to parse) becomes the string ``"NaN"``,
    ``"Infinity"`` or ``"-Infinity"``; a lone UTF-16 surrogate (a broken filename,
    half an emoji) becomes U+FFFD.
    """
    try:
        text = _ENCODER.encode(message)
    except ValueError:  # an out-of-range float (nothing else raises it here)
        text = _ENCODER.encode(strict_json(message))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = valid_text(text)
    return text


def valid_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (a split pair is rejoined)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def strict_json(value: Any) -> Any:
    """``value`` with non-finite floats as strings, so it serialises as strict JSON."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


PONG = dumps(PongMessage(type="pong"))


# -- OpenTelemetry export (docs/telemetry.md) -----------------------------------------------

# The standard variables that turn OTLP export on (the SDK reads them, and the headers).
ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
ENV_OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
# The GenAI conventions' opt-in: prompts, answers, tool arguments and results in spans.
ENV_OTEL_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# Below API_PREFIX: export one finished task's spans now (a back-fill), and many.
OTEL_TASK_PATH = "tasks/{task_id}/otel"
OTEL_EXPORT_PATH = "otel/export"


class OtelExportBody(pydantic.BaseModel):
    """``POST otel/export``: back-fill finished tasks, the ones named (``task_ids``) or
    those the filters keep (as ``GET tasks``' filters: agents, statuses, created at or
    after ``since`` (ISO 8601), the newest ``limit``)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    task_ids: list[str] | None = pydantic.Field(default=None, max_length=10_000)
    agent: list[str] | None = None
    status: list[str] | None = None
    since: str | None = pydantic.Field(default=None, max_length=100)
    limit: int | None = pydantic.Field(default=None, ge=0, le=100_000)


class OtelExportAnswer(TypedDict):
    """What ``POST tasks/{id}/otel`` and ``POST otel/export`` answer (200)."""

    # The tasks exported, and their spans in all.
    task_ids: list[str]
    spans: int
    # Whether the collector took every batch within the wait (false: see the server log).
    delivered: bool
    # Named tasks left out: unknown, or still running.
    skipped: list[str]
