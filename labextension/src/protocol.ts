/**
 * Wire protocol v1 of the agentkit server, as seen from the browser.
 *
 * One module for every message shape; `parseServerMessage` validates what
 * arrives on the WebSocket (or through the kernel relay) before anything
 * renders it.
 */

/** The lifecycle of a task on the server. */
export type TaskStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** The terminal statuses a `result` message carries. */
export type FinalStatus = 'succeeded' | 'failed' | 'cancelled';

/** A JSON object with unknown members. */
export type JSONRecord = { [key: string]: unknown };

/** `StepEvent.to_dict()` of the Python runtime. */
export interface IStepEvent {
  event_type: string;
  step: number;
  data: JSONRecord;
  timestamp: number;
}

export interface IStepMessage {
  type: 'step';
  seq: number;
  task_id: string;
  data: IStepEvent;
}

export interface IResultData {
  status: FinalStatus;
  task_id: string;
  output?: string;
  total_steps?: number;
  total_tokens?: number;
  error?: unknown;
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
  status: TaskStatus;
  last_seq: number;
}

export interface IErrorMessage {
  type: 'error';
  data: { code: string; message: string };
}

export interface IPongMessage {
  type: 'pong';
}

/** A message of a task's log: what REST `events` and the relay carry. */
export type TaskLogMessage = IStepMessage | IResultMessage;

/** Everything the server sends on a task's WebSocket. */
export type ServerMessage =
  | IConnectedMessage
  | IStepMessage
  | IResultMessage
  | IErrorMessage
  | IPongMessage;

/** A task as `GET agentkit/api/tasks` lists it. */
export interface ITask {
  task_id: string;
  agent: string;
  input?: string;
  status: TaskStatus;
  created_at?: number | string | null;
  started_at?: number | string | null;
  finished_at?: number | string | null;
  result?: IResultData | JSONRecord | null;
  last_seq?: number;
  ws_url?: string;
  origin?: string;
}

/** `GET agentkit/api/tasks/{id}`: the task and its log. */
export interface ITaskDetail extends ITask {
  events?: unknown[];
}

export interface IToolInfo {
  name: string;
  description?: string;
}

export interface IAgentInfo {
  name: string;
  description?: string;
  tools?: IToolInfo[];
}

/** The custom mimetype a notebook output carries to re-attach a task view. */
export const TASK_MIMETYPE = 'application/vnd.agentkit.task+json';

/** The data of a `TASK_MIMETYPE` output. */
export interface ITaskReference {
  task_id: string;
  agent?: string;
}

const FINAL: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);

/** Whether a status is terminal. */
export function isFinal(status: string | null | undefined): boolean {
  return status !== null && status !== undefined && FINAL.has(status);
}

/** Whether a value is a plain JSON object. */
export function isRecord(value: unknown): value is JSONRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStepEvent(value: unknown): value is IStepEvent {
  return (
    isRecord(value) &&
    typeof value.event_type === 'string' &&
    typeof value.step === 'number' &&
    (value.data === undefined || isRecord(value.data))
  );
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
      return {
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
    }
    case 'result': {
      if (typeof raw.seq !== 'number' || !isRecord(raw.data)) {
        return null;
      }
      const status = String(raw.data.status ?? 'failed');
      return {
        type: 'result',
        seq: raw.seq,
        task_id: String(raw.task_id ?? raw.data.task_id ?? ''),
        data: {
          ...raw.data,
          status: (FINAL.has(status) ? status : 'failed') as FinalStatus,
          task_id: String(raw.data.task_id ?? raw.task_id ?? '')
        }
      };
    }
    case 'connected':
      return {
        type: 'connected',
        task_id: String(raw.task_id ?? ''),
        agent: String(raw.agent ?? ''),
        status: String(raw.status ?? 'running') as TaskStatus,
        last_seq: typeof raw.last_seq === 'number' ? raw.last_seq : 0
      };
    case 'error': {
      const data = isRecord(raw.data) ? raw.data : {};
      return {
        type: 'error',
        data: {
          code: String(data.code ?? 'error'),
          message: String(data.message ?? 'Unknown error')
        }
      };
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
