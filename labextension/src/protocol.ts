/**
 * Wire protocol v1 of the agentkit server, as seen from the browser.
 *
 * The contract itself (statuses, error and close codes, names, message shapes)
 * is generated from `agentkit_jupyter/protocol.py` into `protocol.generated.ts`;
 * this module re-exports what the other modules use, narrows a few wire types
 * to what a parsed message guarantees, and validates what arrives on the
 * WebSocket (or through the kernel relay) before anything renders it.
 */

import {
  ErrorCode,
  FINAL_STATUSES,
  PROTOCOL_VERSION,
  TASK_STATUSES,
  TaskStatus
} from './protocol.generated';
import type {
  FinalStatus,
  IConnectedMessage as IWireConnectedMessage,
  IErrorMessage,
  IPongMessage,
  IBudgetData,
  IImportedFrom,
  IRelayBatch,
  IRelayError,
  IRelayForked,
  IResultData as IWireResultData,
  IResultMessage as IWireResultMessage,
  IStepEventData,
  IStepMessage,
  ITaskPage
} from './protocol.generated';

export {
  API_PREFIX,
  ApprovalDecision,
  ApprovalScope,
  CloseCode,
  COMPARE_MIMETYPE,
  ErrorCode,
  FINAL_STATUSES,
  ForkKind,
  PROTOCOL_VERSION,
  TASK_MIMETYPE,
  TASK_STATUSES,
  TASK_WS_PREFIX,
  TaskStatus
} from './protocol.generated';
export type {
  ControlMessage,
  FinalStatus,
  IApprovalDecidedData,
  IApprovalRequestedData,
  IApproveMessage,
  IBudgetData,
  ICancelMessage,
  ICompareCell,
  ICompareRow,
  ICompareSide,
  IComparison,
  IDiffSegment,
  IErrorData,
  IErrorMessage,
  IPauseData,
  IPauseMessage,
  IPingMessage,
  IPongMessage,
  IRelayBatch,
  IRelayCancel,
  IRelayControl,
  IRelayError,
  IRelayFork,
  IRelayForked,
  IRelayRequest,
  IRejectMessage,
  IForkEdit,
  IResumeMessage,
  IStepEventData,
  IStepMessage,
  IUsageData
} from './protocol.generated';

/** A JSON object with unknown members. */
export type JSONRecord = { [key: string]: unknown };

/** A parsed `result`: its status is one a task ends in. */
export interface IResultData extends IWireResultData {
  status: FinalStatus;
}

export interface IResultMessage extends IWireResultMessage {
  data: IResultData;
}

/** A parsed `connected` greeting: its status is a known one; `can_write` always said. */
export interface IConnectedMessage extends IWireConnectedMessage {
  status: TaskStatus;
  can_write: boolean;
}

/** A message of a task's log: what REST `events` and the relay carry. */
export type TaskLogMessage = IStepMessage | IResultMessage;

/** Everything the server sends on a task's WebSocket, as parsed here. */
export type ServerMessage =
  | IConnectedMessage
  | IStepMessage
  | IResultMessage
  | IErrorMessage
  | IPongMessage;

/**
 * A `relay_error`; `code` and `call_id` when the kernel refused a relayed control
 * command (the task WebSocket's error frame's fields), absent otherwise.
 */
export interface IRelayErrorMessage extends IRelayError {
  code?: string;
  call_id?: string;
}

/** What the kernel sends the view on the relay path. */
export type RelayMessage = IRelayBatch | IRelayErrorMessage | IRelayForked;

/** A task as `GET agentkit/api/tasks` lists it. */
export interface ITask {
  task_id: string;
  agent: string;
  input?: string;
  status: TaskStatus;
  created_at?: number | string | null;
  started_at?: number | string | null;
  finished_at?: number | string | null;
  result?: IWireResultData | JSONRecord | null;
  last_seq?: number;
  ws_url?: string;
  origin?: string;
  /** Calls waiting for a decision (`call_id`, `tool`), in the task list's summaries. */
  pending_approvals?: JSONRecord[];
  /** Runs as data: the task this one was forked from (or continues), and where. */
  parent_id?: string | null;
  forked_at_seq?: number | null;
  fork_kind?: string | null;
  resumed_by?: string | null;
  /** What the run's own model calls used; `cost` null: a price that is not known. */
  tokens_in?: number;
  tokens_out?: number;
  cost?: number | null;
  budget?: IBudgetData | null;
  /** A run loaded from a notebook (`agentkit_jupyter.load()`): where it comes from. */
  imported_from?: IImportedFrom | null;
}

/**
 * `GET agentkit/api/tasks/{id}`: the task and one page of its log; `has_more`
 * when there are events after `next_after` (the WebSocket replays them too).
 */
export interface ITaskDetail extends ITask, Partial<ITaskPage> {}

export interface IToolInfo {
  name: string;
  description?: string;
}

export interface IAgentInfo {
  name: string;
  description?: string;
  tools?: IToolInfo[];
}

/** The data of a `TASK_MIMETYPE` output. */
export interface ITaskReference {
  task_id: string;
  agent?: string;
}

const STATUSES: ReadonlySet<unknown> = new Set<unknown>(TASK_STATUSES);
const FINAL: ReadonlySet<unknown> = new Set<unknown>(FINAL_STATUSES);

/** Whether a value is a status of the protocol. */
export function isTaskStatus(status: unknown): status is TaskStatus {
  return STATUSES.has(status);
}

/** Whether a status is one a task ends in (`interrupted` included). */
export function isFinal(status: unknown): status is FinalStatus {
  return FINAL.has(status);
}

/** Whether a value is a plain JSON object. */
export function isRecord(value: unknown): value is JSONRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStepEvent(value: unknown): value is IStepEventData {
  return (
    isRecord(value) &&
    typeof value.event_type === 'string' &&
    typeof value.step === 'number' &&
    (value.data === undefined || isRecord(value.data))
  );
}

/**
 * The data of a `result`, checked field by field. A status that is not a final
 * one (a newer or broken server) reads as `failed`: the run is over either way.
 */
function parseResultData(data: JSONRecord, taskId: string): IResultData {
  const result: IResultData = {
    status: isFinal(data.status) ? data.status : TaskStatus.FAILED,
    task_id: typeof data.task_id === 'string' ? data.task_id : taskId
  };
  if (typeof data.output === 'string') {
    result.output = data.output;
  }
  if (typeof data.total_steps === 'number') {
    result.total_steps = data.total_steps;
  }
  if (typeof data.total_tokens === 'number') {
    result.total_tokens = data.total_tokens;
  }
  if (isRecord(data.error)) {
    result.error = data.error;
  } else if (typeof data.error === 'string' && data.error) {
    result.error = { message: data.error };
  }
  if (typeof data.reason === 'string') {
    result.reason = data.reason;
  }
  if (typeof data.code === 'string') {
    result.code = data.code;
  }
  if (isRecord(data.usage)) {
    const usage: { [key: string]: number } = {};
    for (const [key, value] of Object.entries(data.usage)) {
      if (typeof value === 'number' && Number.isFinite(value)) {
        usage[key] = value;
      }
    }
    result.usage = usage;
  }
  if (typeof data.cost === 'number' && Number.isFinite(data.cost)) {
    result.cost = data.cost;
  } else if (data.cost === null) {
    result.cost = null;
  }
  return result;
}

/**
 * Validate one server message; `null` for anything this client does not
 * understand (it is ignored rather than rendered half-way).
 */
export function parseServerMessage(raw: unknown): ServerMessage | null {
  if (!isRecord(raw) || typeof raw.type !== 'string') {
    return null;
  }
  switch (raw.type) {
    case 'step': {
      if (typeof raw.seq !== 'number' || !isStepEvent(raw.data)) {
        return null;
      }
      const event = raw.data;
      const step: IStepMessage = {
        type: 'step',
        seq: raw.seq,
        task_id: String(raw.task_id ?? ''),
        data: {
          event_type: event.event_type,
          step: event.step,
          data: isRecord(event.data) ? event.data : {},
          timestamp: typeof event.timestamp === 'number' ? event.timestamp : Date.now() / 1000
        }
      };
      if (event.copied === true) {
        // A fork's copy of its parent's event: no model or tool call made it.
        step.data.copied = true;
      }
      return step;
    }
    case 'result': {
      if (typeof raw.seq !== 'number' || !isRecord(raw.data)) {
        return null;
      }
      const taskId = String(raw.task_id ?? raw.data.task_id ?? '');
      return {
        type: 'result',
        seq: raw.seq,
        task_id: taskId,
        data: parseResultData(raw.data, taskId)
      };
    }
    case 'connected':
      return {
        type: 'connected',
        task_id: String(raw.task_id ?? ''),
        agent: String(raw.agent ?? ''),
        status: isTaskStatus(raw.status) ? raw.status : TaskStatus.RUNNING,
        last_seq: typeof raw.last_seq === 'number' ? raw.last_seq : 0,
        after: typeof raw.after === 'number' ? raw.after : 0,
        protocol: typeof raw.protocol === 'number' ? raw.protocol : PROTOCOL_VERSION,
        // An older server does not say: it let every viewer that may read cancel.
        can_write: raw.can_write !== false
      };
    case 'error': {
      const data = isRecord(raw.data) ? raw.data : {};
      const message: IErrorMessage = {
        type: 'error',
        data: {
          code: typeof data.code === 'string' ? data.code : ErrorCode.INTERNAL_ERROR,
          message: String(data.message ?? 'Unknown error')
        }
      };
      if (typeof data.last_seq === 'number') {
        message.data.last_seq = data.last_seq;
      }
      if (typeof data.first_seq === 'number') {
        message.data.first_seq = data.first_seq;
      }
      if (typeof data.call_id === 'string') {
        message.data.call_id = data.call_id;
      }
      return message;
    }
    case 'pong':
      return { type: 'pong' };
    default:
      return null;
  }
}

/** Parse a log message (`step` or `result`) or return `null`. */
export function parseLogMessage(raw: unknown): TaskLogMessage | null {
  const msg = parseServerMessage(raw);
  return msg && (msg.type === 'step' || msg.type === 'result') ? msg : null;
}

/**
 * Validate a message of the kernel relay (`relay_batch`, `relay_error` or
 * `relay_forked`); `null` for anything else. A missing `task_id` reads as `''`.
 */
export function parseRelayMessage(raw: unknown): RelayMessage | null {
  if (!isRecord(raw)) {
    return null;
  }
  const taskId = typeof raw.task_id === 'string' ? raw.task_id : '';
  switch (raw.type) {
    case 'relay_batch':
      return {
        type: 'relay_batch',
        task_id: taskId,
        task: isRecord(raw.task) ? raw.task : {},
        messages: Array.isArray(raw.messages) ? raw.messages.filter(isRecord) : []
      };
    case 'relay_error': {
      const error: IRelayErrorMessage = {
        type: 'relay_error',
        task_id: taskId,
        error: errorText(raw.error)
      };
      if (typeof raw.code === 'string') {
        error.code = raw.code;
      }
      if (typeof raw.call_id === 'string') {
        error.call_id = raw.call_id;
      }
      return error;
    }
    case 'relay_forked':
      return typeof raw.fork_id === 'string' && raw.fork_id
        ? { type: 'relay_forked', task_id: taskId, fork_id: raw.fork_id }
        : null;
    default:
      return null;
  }
}

/** Seconds since the epoch from a number (seconds) or an ISO date string. */
export function toEpochSeconds(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) {
    // Milliseconds are told apart from seconds by their size.
    return value > 1e12 ? value / 1000 : value;
  }
  if (typeof value === 'string' && value) {
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed / 1000;
  }
  return null;
}

/** The readable message of a result's or an error's `error` field. */
export function errorText(error: unknown): string {
  if (typeof error === 'string') {
    return error;
  }
  if (isRecord(error)) {
    const message = error.message ?? error.code;
    return typeof message === 'string' ? message : JSON.stringify(error);
  }
  return error === undefined || error === null ? '' : String(error);
}
