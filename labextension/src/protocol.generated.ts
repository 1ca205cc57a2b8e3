// Generated from agentkit_jupyter/protocol.py by scripts/generate_protocol_ts.py; do not edit.
// Regenerate with `python scripts/generate_protocol_ts.py` after changing protocol.py.

/** The version of the wire protocol (`connected` messages carry it). */
export const PROTOCOL_VERSION = 1;

// -- TaskStatus ---------------------------------------------------------------

/** The lifecycle of a task. */
export const TaskStatus = {
  QUEUED: 'queued',
  RUNNING: 'running',
  /** A tool call awaits a person's decision (approval_requested without its decision). */
  WAITING: 'waiting',
  /** Paused by a viewer, or after the steps a `resume` asked for. */
  PAUSED: 'paused',
  SUCCEEDED: 'succeeded',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  /** It was running when the server stopped; its events up to then are kept. */
  INTERRUPTED: 'interrupted'
} as const;
export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus];

/** Every status, in lifecycle order. */
export const TASK_STATUSES = [
  'queued',
  'running',
  'waiting',
  'paused',
  'succeeded',
  'failed',
  'cancelled',
  'interrupted'
] as const;

/** The statuses a task ends in (it never changes again). */
export const FINAL_STATUSES = ['succeeded', 'failed', 'cancelled', 'interrupted'] as const;
export type FinalStatus = (typeof FINAL_STATUSES)[number];

// -- EventType ----------------------------------------------------------------

/** `event_type` of a step: what the runtime emits (`core.events` re-exports it). */
export const EventType = {
  TOKEN: 'token',
  THOUGHT: 'thought',
  TOOL_CALL: 'tool_call',
  OBSERVATION: 'observation',
  FINAL_ANSWER: 'final_answer',
  ERROR: 'error',
  CANCELLED: 'cancelled',
  /** Human in the loop: a tool call waits for a decision, and the decision. */
  APPROVAL_REQUESTED: 'approval_requested',
  APPROVAL_DECIDED: 'approval_decided',
  /** The run stopped before its next model or tool call, and went on again. */
  PAUSED: 'paused',
  RESUMED: 'resumed',
  /** Runs as data: what one model call used (tokens in and out) and cost. */
  USAGE: 'usage',
  /** A tool call that is still running: a piece of its output, its progress. */
  TOOL_OUTPUT: 'tool_output',
  TOOL_PROGRESS: 'tool_progress'
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

// -- ApprovalDecision ---------------------------------------------------------

/** `decision` of an `approval_decided` step. */
export const ApprovalDecision = {
  APPROVED: 'approved',
  /** approved with the arguments a person changed */
  EDITED: 'edited',
  REJECTED: 'rejected',
  /** nobody decided within approval_timeout: it did not run */
  TIMED_OUT: 'timed_out',
  /** the run was cancelled while the call waited */
  CANCELLED: 'cancelled'
} as const;
export type ApprovalDecision = (typeof ApprovalDecision)[keyof typeof ApprovalDecision];

// -- ApprovalScope ------------------------------------------------------------

/** How far an approval reaches: this call, or every later call of the tool. */
export const ApprovalScope = {
  ONCE: 'once',
  TASK: 'task'
} as const;
export type ApprovalScope = (typeof ApprovalScope)[keyof typeof ApprovalScope];

// -- ApprovalPolicy -----------------------------------------------------------

/** `policy` of an `approval_requested` step: why the call needs a decision. */
export const ApprovalPolicy = {
  /** @tool(requires_approval=True) */
  TOOL: 'tool',
  /** @tool(requires_approval=<callable>) said yes for these arguments */
  TOOL_RULE: 'tool_rule',
  /** Agent(approval="always") */
  AGENT: 'agent',
  /** Agent(approval=<callable>) said yes */
  AGENT_RULE: 'agent_rule',
  /**
   * The run was interrupted after this call started and before its result: it may have run already,
   * so resuming never runs it again unasked.
   */
  INTERRUPTED: 'interrupted'
} as const;
export type ApprovalPolicy = (typeof ApprovalPolicy)[keyof typeof ApprovalPolicy];

// -- ErrorCode ----------------------------------------------------------------

/** Codes of `{"type": "error"}` messages, of REST errors and of failed results. */
export const ErrorCode = {
  INVALID_JSON: 'invalid_json',
  NOT_AN_OBJECT: 'not_an_object',
  MISSING_TYPE: 'missing_type',
  UNKNOWN_TYPE: 'unknown_type',
  INVALID_MESSAGE: 'invalid_message',
  MESSAGE_TOO_LARGE: 'message_too_large',
  BINARY_NOT_SUPPORTED: 'binary_not_supported',
  INVALID_UTF8: 'invalid_utf8',
  RATE_LIMITED: 'rate_limited',
  UNKNOWN_TASK: 'unknown_task',
  UNKNOWN_AGENT: 'unknown_agent',
  TASK_FINISHED: 'task_finished',
  FORBIDDEN: 'forbidden',
  UNAUTHENTICATED: 'unauthenticated',
  TOO_MANY_SUBSCRIBERS: 'too_many_subscribers',
  /** One user's connections to one task reached max_connections_per_user (close 4009). */
  TOO_MANY_CONNECTIONS: 'too_many_connections',
  /** REST 429: max_running_tasks runs are in flight; retry once one has ended. */
  TOO_MANY_RUNNING_TASKS: 'too_many_running_tasks',
  /** REST 429: one user created more than max_creations_per_minute tasks. */
  TOO_MANY_CREATIONS: 'too_many_creations',
  SUBSCRIBER_TOO_SLOW: 'subscriber_too_slow',
  INVALID_AFTER: 'invalid_after',
  INVALID_LIMIT: 'invalid_limit',
  /**
   * REST 400: `GET tasks?since=` that is neither a cursor the server gave nor an ISO 8601 date or
   * date-time.
   */
  INVALID_SINCE: 'invalid_since',
  EVENTS_TRUNCATED: 'events_truncated',
  AFTER_BEYOND_LOG: 'after_beyond_log',
  INVALID_BODY: 'invalid_body',
  BAD_REQUEST: 'bad_request',
  NOT_FOUND: 'not_found',
  SERVER_SHUTTING_DOWN: 'server_shutting_down',
  KERNEL_DISCONNECTED: 'kernel_disconnected',
  KERNEL_INTERRUPTED: 'kernel_interrupted',
  SERVER_RESTARTED: 'server_restarted',
  /** A stored record or event could not be read back as written (repaired or replaced). */
  DAMAGED_RECORD: 'damaged_record',
  /** REST 404: `GET tasks/{id}/events/{seq}` of a seq the task's log does not have. */
  UNKNOWN_EVENT: 'unknown_event',
  /** REST 404: that message was cut (see Truncation) and its whole copy is not kept. */
  EVENT_NOT_KEPT: 'event_not_kept',
  /**
   * The step (an `error` event) that ends a restored task whose events from some seq on never
   * reached the history (its write queue was full while the disk refused).
   */
  HISTORY_INCOMPLETE: 'history_incomplete',
  /** Human in the loop (REST 409 / 404 / 400, or an error frame to the one who sent it). */
  ALREADY_DECIDED: 'already_decided',
  UNKNOWN_CALL: 'unknown_call',
  INVALID_ARGUMENTS: 'invalid_arguments',
  NOT_PAUSED: 'not_paused',
  /**
   * Runs as data. The run crossed its budget (max_tokens / max_cost): the `code` of its `cancelled`
   * step and of its result.
   */
  BUDGET_EXCEEDED: 'budget_exceeded',
  /** REST 400: `at_seq` is not an event one can fork at, or the edit does not fit it. */
  INVALID_FORK: 'invalid_fork',
  /**
   * REST 409: a task of a kernel agent is forked in the kernel that has its tools (`task.fork()`
   * there, or the widget's Fork), not by the server.
   */
  FORK_NEEDS_KERNEL: 'fork_needs_kernel',
  /**
   * REST 409: `POST tasks/{id}/resume` on a task that is neither paused nor interrupted, or an
   * interrupted one already resumed (`resumed_by` names it).
   */
  NOT_RESUMABLE: 'not_resumable',
  ALREADY_RESUMED: 'already_resumed',
  /**
   * REST 400 / 413: `POST tasks/import` with a run log that is not one (bad base64, gzip or JSON;
   * messages that are not a finished task's log), or one that inflates beyond
   * RUN_LOG_MAX_INFLATED_BYTES. Nothing of that request is imported.
   */
  INVALID_RUN_LOG: 'invalid_run_log',
  RUN_LOG_TOO_LARGE: 'run_log_too_large',
  /**
   * OpenTelemetry export (docs/telemetry.md). REST 409: the server exports nothing (no endpoint
   * configured, or the [otel] extra is not installed), or the task still runs (it is exported when
   * it ends).
   */
  OTEL_OFF: 'otel_off',
  TASK_NOT_FINISHED: 'task_not_finished',
  /**
   * Tasks on a shared backend (docs/scale-out.md). The result of a task whose worker went away (its
   * lease lapsed; another worker took it over and ended it interrupted); REST 503 when the backend
   * (Redis) cannot be reached.
   */
  WORKER_LOST: 'worker_lost',
  BACKEND_UNAVAILABLE: 'backend_unavailable',
  INTERNAL_ERROR: 'internal_error'
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

// -- CloseCode ----------------------------------------------------------------

/** WebSocket close codes the server uses. */
export const CloseCode = {
  /** after the final result, or heartbeat timeout */
  NORMAL: 1000,
  /** the server is shutting down */
  GOING_AWAY: 1001,
  /** a text frame that is not UTF-8 */
  INVALID_DATA: 1007,
  /** an unexpected server error (after error internal_error) */
  INTERNAL_ERROR: 1011,
  /** the seed api_key was missing or wrong */
  UNAUTHENTICATED: 4001,
  /** not allowed (e.g. publishing to another kernel's task) */
  FORBIDDEN: 4003,
  /** no such task, or it was deleted */
  UNKNOWN_TASK: 4004,
  /** fell too far behind; resume with ?after= */
  TOO_SLOW: 4008,
  /** also for max_connections_per_user (too_many_connections) */
  TOO_MANY_SUBSCRIBERS: 4009
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

// -- ForkKind -----------------------------------------------------------------

/**
 * `fork_kind` of a task with a `parent_id`: forked by a person, or the continuation of an
 * interrupted task (`POST tasks/{id}/resume`).
 */
export const ForkKind = {
  FORK: 'fork',
  RESUME: 'resume'
} as const;
export type ForkKind = (typeof ForkKind)[keyof typeof ForkKind];

// -- HistoryState -------------------------------------------------------------

/** Whether the task history (the SQLite file) takes writes. */
export const HistoryState = {
  OK: 'ok',
  /** Writes fail (disk full, read-only file): they are kept and retried; the stream goes on. */
  FAILING: 'failing',
  /** No history this session (db_path '' or the file could not be opened). */
  OFF: 'off'
} as const;
export type HistoryState = (typeof HistoryState)[keyof typeof HistoryState];

// -- names: paths, headers, environment, mimetypes, message types -------------

export const TERMINAL_EVENT_TYPES = ['final_answer', 'error', 'cancelled'] as const;

/** The most text one tool call streams as tool_output (its observation is apart). */
export const MAX_TOOL_OUTPUT_CHARS = 262144;

/** Paths below the server's base_url. */
export const API_PREFIX = 'agentkit/api/';
export const TASK_WS_PREFIX = 'agentkit/ws/tasks/';
export const PUBLISH_WS_PREFIX = 'agentkit/ws/publish/';

/** The secret a kernel presents on its publish WebSocket (it got it from POST kernel-tasks). */
export const PUBLISH_TOKEN_HEADER = 'X-AgentKit-Publish-Token';

/**
 * Where a client may present the seed api_key: this header, `Authorization: ApiKey <key>`, or (old
 * clients) the query parameter.
 */
export const API_KEY_HEADER = 'X-AgentKit-Api-Key';
export const API_KEY_AUTH_SCHEME = 'ApiKey';
export const API_KEY_QUERY = 'api_key';

/**
 * What an AgentKitExtension.api_keys key may do: "read" lists and watches tasks; "write" also
 * creates, cancels and deletes them.
 */
export const API_KEY_SCOPES = ['read', 'write'] as const;

/** The user name a request authenticated by the key named N has. */
export const API_KEY_USER_PREFIX = 'apikey:';

/** A REST 429 answer carries this header: seconds after which a retry may succeed. */
export const RETRY_AFTER_HEADER = 'Retry-After';

/** What a kernel started by the server reads to find it. */
export const ENV_SERVER_URL = 'AGENTKIT_SERVER_URL';
export const ENV_SERVER_TOKEN = 'AGENTKIT_SERVER_TOKEN';

/** The seed api_key, when not configured otherwise. */
export const ENV_API_KEY = 'AGENTKIT_API_KEY';

/** The output mimetype a notebook carries to re-attach a task view by id. */
export const TASK_MIMETYPE = 'application/vnd.agentkit.task+json';

/** `GET tasks/{id}?limit=0`: the task's record without any of its events. */
export const RECORD_ONLY_LIMIT = 0;

/**
 * One `GET tasks/{id}` answers at most this many events, and about this many bytes of them (at
 * least one event); `has_more` says whether to ask again after `next_after`.
 */
export const GET_PAGE_MAX_EVENTS = 1000;
export const GET_PAGE_MAX_BYTES = 4194304;

/**
 * One message of a task's log (a step or the result) takes at most this many bytes of UTF-8 JSON,
 * by default (`HubLimits.max_event_bytes`, the `max_event_bytes` traitlet). A larger one is logged,
 * streamed and paged with its longest texts cut to fit, and a TRUNCATED_KEY marker (`Truncation`)
 * beside them; the whole message is kept (the task history, or memory within a budget) and served
 * by `GET` EVENT_PATH.
 */
export const MAX_EVENT_BYTES = 262144;

/** The marker's key: in a step's event data (beside `output`, say), or in the result. */
export const TRUNCATED_KEY = 'truncated';

/** Below API_PREFIX: one message of a task's log, whole (`{seq}`: its `seq`). */
export const EVENT_PATH = 'tasks/{task_id}/events/{seq}';

export const SERVER_MESSAGE_TYPES = ['connected', 'step', 'result', 'error', 'pong'] as const;
export type ServerMessageType = (typeof SERVER_MESSAGE_TYPES)[number];

export const REASON_MAX_CHARS = 2000;

/** The most model or tool calls one `resume` may ask for before the next pause. */
export const RESUME_MAX_STEPS = 1000;

export const CLIENT_MESSAGE_TYPES = [
  'ping',
  'cancel',
  'approve',
  'reject',
  'pause',
  'resume'
] as const;
export type ClientMessageType = (typeof CLIENT_MESSAGE_TYPES)[number];
export const CONTROL_MESSAGE_TYPES = ['approve', 'reject', 'pause', 'resume'] as const;
export type ControlMessageType = (typeof CONTROL_MESSAGE_TYPES)[number];

export const FORK_EDITS = ['observation', 'arguments', 'input', 'follow_up'] as const;

/**
 * `GET tasks` lists summaries: a text field longer than this many characters (the input, the
 * result's output, its error message or cancel reason) is cut to it, and the task's `truncated` is
 * true; `GET tasks/{id}?limit=0` has the whole record.
 */
export const LIST_TEXT_MAX_CHARS = 500;

/**
 * `GET tasks?since=<cursor>`: only what changed since the answer that gave the cursor; `since=<ISO
 * 8601 date or date-time>` (it has a '-', a cursor never does): the tasks created at or after it (a
 * filter, like `agent`, `status` and `limit`).
 */
export const LIST_SINCE_QUERY = 'since';

/** How many deletions the server remembers for `since`; an older cursor gets a full list. */
export const LIST_DELETIONS_KEPT = 10000;

export const COMPARE_MIMETYPE = 'application/vnd.agentkit.compare+json';

/**
 * The output mimetype that carries a finished run's record and whole event log in the notebook
 * (beside the static HTML and TASK_MIMETYPE), as a `RunLog`; no front end renders it:
 * `agentkit_jupyter.load()` reads it back into a server's history.
 */
export const RUN_LOG_MIMETYPE = 'application/vnd.agentkit.run-log+json';
export const RUN_LOG_VERSION = 1;

/**
 * `RunLog.log`: the log's messages as JSON text, one per line (UTF-8), gzip-compressed (mtime 0, so
 * the same run saves the same bytes), then base64.
 */
export const RUN_LOG_ENCODING = 'gzip+base64';

/**
 * The most characters `RunLog.log` takes. A longer log keeps its first events, its last step and
 * the result (`RunLogCut`), and the static HTML says so.
 */
export const RUN_LOG_MAX_CHARS = 2097152;

/** What one run's log may inflate to when it is imported (a small bomb is refused). */
export const RUN_LOG_MAX_INFLATED_BYTES = 268435456;

/** The task record fields a run log keeps: what an import needs, nothing of the server's. */
export const RUN_LOG_RECORD_FIELDS = [
  'task_id',
  'agent',
  'input',
  'status',
  'origin',
  'created_at',
  'started_at',
  'finished_at',
  'result',
  'parent_id',
  'forked_at_seq',
  'fork_kind',
  'resumed_by',
  'tokens_in',
  'tokens_out',
  'cost',
  'budget'
] as const;

/** Below API_PREFIX: `POST` an `ImportBody`, answered 201 `ImportAnswer`. */
export const IMPORT_PATH = 'tasks/import';

/** The record field of an imported task (`ImportedFrom`). */
export const IMPORTED_FROM_KEY = 'imported_from';

/** The standard variables that turn OTLP export on (the SDK reads them, and the headers). */
export const ENV_OTLP_ENDPOINT = 'OTEL_EXPORTER_OTLP_ENDPOINT';
export const ENV_OTLP_TRACES_ENDPOINT = 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT';
export const ENV_OTLP_HEADERS = 'OTEL_EXPORTER_OTLP_HEADERS';
export const ENV_OTLP_TRACES_HEADERS = 'OTEL_EXPORTER_OTLP_TRACES_HEADERS';

/** The GenAI conventions' opt-in: prompts, answers, tool arguments and results in spans. */
export const ENV_OTEL_CAPTURE_CONTENT = 'OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT';

/** Below API_PREFIX: export one finished task's spans now (a back-fill), and many. */
export const OTEL_TASK_PATH = 'tasks/{task_id}/otel';
export const OTEL_EXPORT_PATH = 'otel/export';

// -- messages -----------------------------------------------------------------

/**
 * `data` of `approval_requested`. `schema` is the tool's JSON schema (the views build the edit form
 * from it); `timeout` the seconds until `timed_out`.
 */
export interface IApprovalRequestedData {
  call_id: string;
  tool: string;
  arguments: unknown;
  policy: string;
  schema?: { [key: string]: unknown };
  timeout?: number | null;
}

/**
 * `data` of `approval_decided`: the first decision, the one that counts. `arguments` are the ones
 * the call runs with (edited ones for `edited`).
 */
export interface IApprovalDecidedData {
  call_id: string;
  decision: string;
  arguments: unknown;
  reason: string | null;
  by: string | null;
  scope?: string;
}

/**
 * `data` of `paused` and `resumed`; `steps` (resumed only) is how many model or tool calls run
 * before the next pause (None: no pause planned).
 */
export interface IPauseData {
  by: string | null;
  reason: string | null;
  steps?: number | null;
}

/**
 * `data` of `usage`, after every model call: that call's tokens (in and out, as the endpoint
 * reported them) and cost, and the run's totals so far. `cost` is in US dollars, None when the
 * model's price is unknown (never a guess).
 */
export interface IUsageData {
  model: string;
  prompt_tokens: number;
  completion_tokens: number;
  cost: number | null;
  total_prompt_tokens: number;
  total_completion_tokens: number;
  total_cost: number | null;
  duration_ms: number;
}

/**
 * `data` of `tool_output`: the next piece of a running call's output (text to append: what it
 * yielded, `emit()`-ed or printed), before its `observation`. `cut`: the call streamed more than
 * `MAX_TOOL_OUTPUT_CHARS`; the rest is not streamed (the observation still has what the tool
 * returned).
 */
export interface IToolOutputData {
  call_id: string;
  name: string;
  text: string;
  cut?: boolean;
}

/**
 * `data` of `tool_progress`: how far a running call is (`progress` of `total`, None when the total
 * is unknown), as `progress()` or an MCP server's progress notification said.
 */
export interface IToolProgressData {
  call_id: string;
  name: string;
  progress: number;
  total: number | null;
  message: string | null;
}

/**
 * A task's budget (`Agent(budget=...)`, the REST `budget` field): the run ends `cancelled` with
 * code `budget_exceeded` when it crosses either, even mid-call.
 */
export interface IBudgetData {
  max_tokens?: number | null;
  max_cost?: number | null;
}

/**
 * `StepEvent.to_dict()` of the runtime. `copied`: a fork's event copied from its parent's record
 * (no model or tool call made it); the live part follows.
 */
export interface IStepEventData {
  event_type: string;
  step: number;
  data: { [key: string]: unknown };
  timestamp: number;
  copied?: boolean;
}

export interface IStepMessage {
  type: 'step';
  seq: number;
  task_id: string;
  data: IStepEventData;
}

export interface IResultData {
  status: string;
  task_id: string;
  output?: string | null;
  total_steps?: number | null;
  total_tokens?: number | null;
  error?: { [key: string]: unknown } | null;
  reason?: string | null;
  /** `interrupted` while calls waited for a decision: their approval_requested data. */
  pending_approvals?: { [key: string]: unknown }[];
  /** `cancelled` by the budget: `budget_exceeded` (the reason is then the same). */
  code?: string;
  /**
   * Tokens in and out over the whole run (also the partial usage of a cut run), and its cost in US
   * dollars (None: a model whose price is unknown).
   */
  usage?: { [key: string]: number };
  cost?: number | null;
}

export interface IResultMessage {
  type: 'result';
  seq: number;
  task_id: string;
  data: IResultData;
}

export interface IConnectedMessage {
  type: 'connected';
  task_id: string;
  agent: string;
  status: string;
  last_seq: number;
  after: number;
  protocol: number;
  /**
   * Whether this viewer may send cancel / approve / reject / pause / resume (the views show those
   * buttons only then).
   */
  can_write?: boolean;
}

export interface IErrorData {
  code: string;
  message: string;
  last_seq?: number;
  first_seq?: number;
  /** The tool call a refused approve/reject was about. */
  call_id?: string;
}

export interface IErrorMessage {
  type: 'error';
  data: IErrorData;
}

export interface IPongMessage {
  type: 'pong';
}

/** One text a shortened message holds only the start of. */
export interface ITruncatedText {
  /** The whole text's length, in characters (code points). */
  chars: number;
  /** How many of them (from the start) this copy holds. */
  shown: number;
}

/** The TRUNCATED_KEY marker of a message cut to fit `max_event_bytes`. */
export interface ITruncation {
  /**
   * The texts that were cut, by their path in the event data (or the result): keys joined by ".",
   * list items by index ("output", "arguments.code", "rows.3").
   */
  fields: { [key: string]: ITruncatedText };
  /** The whole message's size, in bytes of UTF-8 JSON. */
  bytes: number;
  /** GET it (below the server's base_url, with the usual auth) for the whole message. */
  href: string;
}

export interface IPingMessage {
  type: 'ping';
}

export interface ICancelMessage {
  type: 'cancel';
  reason?: string | null;
}

/**
 * Approve a pending tool call; `arguments` present means edited (validated against the tool's
 * schema first); `scope: "task"` also approves every later call of the same tool in this task.
 */
export interface IApproveMessage {
  type: 'approve';
  call_id: string;
  arguments?: { [key: string]: unknown } | null;
  scope?: 'once' | 'task';
}

/** Reject a pending tool call; the model reads the reason as the call's result. */
export interface IRejectMessage {
  type: 'reject';
  call_id: string;
  reason?: string | null;
}

/** Pause before the next model or tool call (a call in flight finishes). */
export interface IPauseMessage {
  type: 'pause';
  reason?: string | null;
}

/** Go on; with `steps`, run that many more model or tool calls, then pause. */
export interface IResumeMessage {
  type: 'resume';
  steps?: number | null;
}

/**
 * Kernel -> server: one step event of the kernel's run, with its `seq` in the kernel's log (the
 * server's copy has the same `seq`s: one already held is a duplicate from before a reconnect and is
 * skipped).
 */
export interface IPublishEventMessage {
  type: 'event';
  event: IStepEventData;
  seq?: number;
}

/**
 * Server -> kernel, first on every publish connection: the last `seq` the server holds; the
 * publisher sends its events after it (a reconnecting publisher resumes).
 */
export interface IPublishResumeMessage {
  type: 'resume';
  last_seq: number;
}

/** Server -> kernel: a viewer cancelled the run. */
export interface IPublishCancelMessage {
  type: 'cancel';
  reason: string | null;
}

/**
 * Server -> kernel: a viewer's decision, pause or resume (`command` is the viewer's `approve` /
 * `reject` / `pause` / `resume` message as parsed), and who sent it. Resent on a reconnect until
 * the kernel's log shows its effect.
 */
export interface IPublishControlMessage {
  type: 'control';
  command: { [key: string]: unknown };
  by: string | null;
  /** Numbered per task: a reconnecting kernel gets them again and skips those it applied. */
  id?: number;
}

/** View -> kernel: send the task's messages after `after`, then the live ones. */
export interface IRelayRequest {
  type: 'relay';
  after: number;
  /** Another task than the widget's: a fork made from this widget (see RelayForked). */
  task_id?: string;
}

/** View -> kernel: cancel the task (the Cancel button, on the relay path). */
export interface IRelayCancel {
  type: 'cancel';
}

/**
 * View -> kernel: approve, reject, pause or resume (buttons, on the relay path); `command` is the
 * task WebSocket's message of that type.
 */
export interface IRelayControl {
  type: 'control';
  command: { [key: string]: unknown };
}

/**
 * View -> kernel: fork the task at `at_seq` (the step's "Fork from here"), with `edit` as
 * `ForkEdit`; the kernel answers `relay_forked` or `relay_error`.
 */
export interface IRelayFork {
  type: 'fork';
  at_seq: number;
  edit?: { [key: string]: unknown } | null;
}

/**
 * Kernel -> view: the fork exists; the view streams `fork_id` below the parent (a `relay` request
 * with that `task_id` on the relay path).
 */
export interface IRelayForked {
  type: 'relay_forked';
  task_id: string;
  fork_id: string;
}

/** Kernel -> view: the task's record and a batch of its log messages. */
export interface IRelayBatch {
  type: 'relay_batch';
  task_id: string;
  task: { [key: string]: unknown };
  messages: { [key: string]: unknown }[];
}

/**
 * Kernel -> view: the kernel lost the stream, or a cancel or a control command failed (`code` and,
 * for approve / reject, `call_id` say which).
 */
export interface IRelayError {
  type: 'relay_error';
  task_id: string;
  error: string;
  code?: string;
  call_id?: string;
}

/** `POST tasks/{id}/approvals/{call_id}`. */
export interface IApprovalBody {
  decision: 'approve' | 'reject';
  arguments?: { [key: string]: unknown } | null;
  reason?: string | null;
  scope?: 'once' | 'task';
}

/** `POST tasks/{id}/pause` (an empty body is fine). */
export interface IPauseBody {
  reason?: string | null;
}

/** `POST tasks/{id}/resume` (an empty body is fine). */
export interface IResumeBody {
  steps?: number | null;
}

/**
 * The one thing a fork changes at its fork point: the `observation` of the tool call at `at_seq`,
 * the `arguments` of the tool call at `at_seq` (it runs again with them), the user `input` (a fork
 * at the start, `at_seq` 0), or a `follow_up` question after the answer (`at_seq` the
 * `final_answer`'s: the conversation goes on, answer included, in the new task).
 */
export interface IForkEdit {
  observation?: string | null;
  arguments?: { [key: string]: unknown } | null;
  input?: string | null;
  follow_up?: string | null;
}

/**
 * `POST tasks/{id}/fork`: a new task that copies the parent's events up to `at_seq` (no model or
 * tool call) and goes on live from there.
 */
export interface IForkBody {
  at_seq: number;
  edit?: IForkEdit | null;
}

/** The `budget` field of `POST tasks` (see `BudgetData`). */
export interface IBudget {
  max_tokens?: number | null;
  max_cost?: number | null;
}

/**
 * What the human-in-the-loop routes answer (200): the task's status after the command was accepted;
 * the step that records it follows on the stream.
 */
export interface IControlAnswer {
  task_id: string;
  status: string;
  /** the command's type: approve, reject, pause, resume */
  accepted: string;
  call_id?: string;
}

/** What `GET tasks/{id}` adds to the task's record: one page of its log. */
export interface ITaskPage {
  /** The step and result messages with `seq > after`, as the task WebSocket sends them. */
  events: { [key: string]: unknown }[];
  /** Ask for the next page with `?after=` this: the last event's `seq` (or `after`). */
  next_after: number;
  /** Whether there are events after `next_after`. */
  has_more: boolean;
}

export interface IHistoryError {
  /** The last error, as SQLite gave it. */
  message: string;
  /** When the failures began (epoch seconds). */
  since: number;
  /** Failed attempts so far. */
  failures: number;
}

export interface IHistoryStatus {
  state: HistoryState;
  path: string | null;
  /** The write failure in progress, None when writes succeed. */
  error: IHistoryError | null;
  /** Events and records not yet on disk. */
  pending: number;
  /**
   * Their size (about: the bytes of their texts), and the most that may wait: beyond it a task's
   * later events are not queued (its history on disk stops there, said in `incomplete_tasks` and in
   * the task's `history_incomplete_from`).
   */
  pending_bytes: number;
  max_pending_bytes: number;
  /** Events not queued this session because the queue was full (memory still has them). */
  dropped_events: number;
  /** Tasks whose history on disk stops before their last event (see above). */
  incomplete_tasks: string[];
  /** Said at start-up, e.g. a history file other users may read. */
  warnings: string[];
  /** Tasks with a record or event that could not be read back as written. */
  damaged_tasks: string[];
  /** Stored records that could not be read at all (logged, left in the file). */
  skipped_records: number;
}

export interface ITaskCounts {
  total: number;
  running: number;
  /** Tasks whose log is held in memory (running ones and a small cache). */
  logs_in_memory: number;
}

/** `GET agentkit/api/status`. */
export interface IStatusResponse {
  protocol: number;
  history: IHistoryStatus;
  tasks: ITaskCounts;
}

/** One task of `GET tasks`: the record with its long texts cut. */
export interface ITaskSummary {
  task_id: string;
  agent: string;
  status: string;
  origin: string;
  /** The input, cut to LIST_TEXT_MAX_CHARS; `input_chars` is its whole length. */
  input: string;
  input_chars: number;
  created_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  /**
   * The result (None while it runs) without its long texts: `output`, `error.message` and `reason`
   * are cut to LIST_TEXT_MAX_CHARS; `output_chars` is the output's length.
   */
  result: { [key: string]: unknown } | null;
  output_chars: number;
  /** Whether any text of this summary was cut. */
  truncated: boolean;
  last_seq: number;
  first_seq: number;
  damaged: string | null;
  /**
   * The first seq missing from the task history on disk (its queue was full while the disk refused
   * writes): events from it on are in memory only. None: whole.
   */
  history_incomplete_from: number | null;
  subscribers: number;
  /** `call_id` and `tool` of each call waiting for a decision (status `waiting`). */
  pending_approvals: { [key: string]: unknown }[];
  ws_url: string;
  /**
   * Runs as data: the task it was forked from (or continues), the parent's seq it was forked at,
   * how (`ForkKind`), and the continuation of an interrupted task.
   */
  parent_id: string | null;
  forked_at_seq: number | null;
  fork_kind: string | null;
  resumed_by: string | null;
  /** Tokens in and out so far, the cost in US dollars (None: unknown price), the budget. */
  tokens_in: number;
  tokens_out: number;
  cost: number | null;
  budget: IBudgetData | null;
  /** Where an imported task comes from (`agentkit_jupyter.load()`); None: it ran here. */
  imported_from: IImportedFrom | null;
}

/** `GET tasks` (all tasks) and `GET tasks?since=<cursor>` (what changed). */
export interface ITaskList {
  /** Oldest first: every task (`full`), or those created or changed since the cursor. */
  tasks: ITaskSummary[];
  /** Ids of tasks deleted since the cursor (always empty when `full`). */
  deleted: string[];
  /** Pass it as `?since=` next time. */
  cursor: string;
  /**
   * True: `tasks` is the whole list (no cursor, or one from before a restart or older than the
   * deletions the server remembers); replace what you hold.
   */
  full: boolean;
}

/**
 * A piece of a text compared: in both (`equal`), only in run a (`delete`) or only in run b
 * (`insert`). Side a shows equal + delete, side b equal + insert.
 */
export interface IDiffSegment {
  op: 'equal' | 'delete' | 'insert';
  text: string;
}

/**
 * One run's side of a row. `kind`: `thought`, `tool` (a call and its observation), `answer` (the
 * final answer) or `end` (an error or a cancel).
 */
export interface ICompareCell {
  kind: string;
  seq: number;
  text?: string;
  tool?: string;
  arguments?: unknown;
  observation?: string;
  is_error?: boolean;
  copied?: boolean;
}

/**
 * A step of both runs, aligned by step and tool; `a` or `b` is None where one run has nothing
 * there. `diffs` by field (`text`, `arguments`, `observation`) for the fields that differ.
 */
export interface ICompareRow {
  step: number;
  key: string;
  a: ICompareCell | null;
  b: ICompareCell | null;
  same: boolean;
  diffs: { [key: string]: IDiffSegment[] };
}

export interface ICompareSide {
  task_id: string;
  agent: string;
  status: string;
  input: string;
  output: string | null;
  steps: number;
  tokens_in: number;
  tokens_out: number;
  cost: number | null;
  duration_s: number | null;
  parent_id: string | null;
}

/**
 * `GET agentkit/api/compare?a=<id>&b=<id>` and `compare(a, b)`'s widget. `deltas` are b minus a
 * (None where either side is unknown).
 */
export interface IComparison {
  a: ICompareSide;
  b: ICompareSide;
  rows: ICompareRow[];
  deltas: { [key: string]: number | null };
}

/**
 * A log that did not fit RUN_LOG_MAX_CHARS: `kept` of its `events` messages, the first ones and
 * (`tail`) its last step and the result, each with its own `seq`.
 */
export interface IRunLogCut {
  events: number;
  kept: number;
  tail: number;
}

/** The RUN_LOG_MIMETYPE payload: a finished run, as a notebook carries it. */
export interface IRunLog {
  version: number;
  encoding: string;
  /** RUN_LOG_RECORD_FIELDS of the task's record. */
  task: { [key: string]: unknown };
  /** How many messages `log` holds, and its characters before base64 (uncompressed). */
  messages: number;
  bytes: number;
  log: string;
  cut: IRunLogCut | null;
}

/** `imported_from` of a task imported from a notebook. */
export interface IImportedFrom {
  /** Its id where it ran (the new task has it too when it was free). */
  task_id: string;
  /** The notebook it was read from, as `load()` named it (a file name, no folder). */
  source: string | null;
  imported_at: number;
  /** The notebook held a cut log (`RunLogCut`): these are not all of the run's events. */
  cut: boolean;
}

/**
 * `POST tasks/import`: runs read from a notebook (each a `RunLog`), all imported or none (the first
 * bad one is the error).
 */
export interface IImportBody {
  runs: { [key: string]: unknown }[];
  source?: string | null;
}

/**
 * What `POST tasks/import` answers (201): each run's id in the notebook -> its id here (the same
 * when it was free), and the imported tasks' records.
 */
export interface IImportAnswer {
  ids: { [key: string]: string };
  tasks: { [key: string]: unknown }[];
}

/**
 * `POST otel/export`: back-fill finished tasks, the ones named (`task_ids`) or those the filters
 * keep (as `GET tasks`' filters: agents, statuses, created at or after `since` (ISO 8601), the
 * newest `limit`).
 */
export interface IOtelExportBody {
  task_ids?: string[] | null;
  agent?: string[] | null;
  status?: string[] | null;
  since?: string | null;
  limit?: number | null;
}

/** What `POST tasks/{id}/otel` and `POST otel/export` answer (200). */
export interface IOtelExportAnswer {
  /** The tasks exported, and their spans in all. */
  task_ids: string[];
  spans: number;
  /** Whether the collector took every batch within the wait (false: see the server log). */
  delivered: boolean;
  /** Named tasks left out: unknown, or still running. */
  skipped: string[];
}

// -- message unions -----------------------------------------------------------

export type ServerMessage =
  | IStepMessage
  | IResultMessage
  | IConnectedMessage
  | IErrorMessage
  | IPongMessage;

export type ControlMessage = IApproveMessage | IRejectMessage | IPauseMessage | IResumeMessage;

export type AnyClientMessage =
  | IPingMessage
  | ICancelMessage
  | IApproveMessage
  | IRejectMessage
  | IPauseMessage
  | IResumeMessage;

export type ClientMessage =
  | IPingMessage
  | ICancelMessage
  | IApproveMessage
  | IRejectMessage
  | IPauseMessage
  | IResumeMessage;
