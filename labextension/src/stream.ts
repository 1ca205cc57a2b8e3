/**
 * Where a task view's messages come from.
 *
 * - `DirectBackend`: the browser talks to the server itself, REST for the log
 *   so far, then the task's WebSocket, reconnecting with `?after=<last seq>`.
 * - `RelayBackend`: the kernel relays the stream through the widget's custom
 *   messages (VS Code, Colab, any page not served by the Jupyter server).
 * - `AutoBackend`: direct when the page's server knows the task, else relay;
 *   also relay when the direct WebSocket cannot be opened at all (a proxy that
 *   refuses WebSockets, a blocked port), picking up after the last `seq` seen.
 *
 * A backend also makes forks (`fork`: REST `POST tasks/{id}/fork`, or the kernel's
 * `fork` relay message where the kernel has the tools) and fetches comparisons
 * (`compare`: REST `GET compare`, where the page reaches the server).
 */

import {
  CloseCode,
  ControlMessage,
  ErrorCode,
  ICancelMessage,
  IComparison,
  IConnectedMessage,
  IErrorData,
  IForkEdit,
  IPingMessage,
  IRelayCancel,
  IRelayControl,
  IRelayFork,
  IRelayRequest,
  ITask,
  ITaskDetail,
  TaskLogMessage,
  isFinal,
  isRecord,
  parseLogMessage,
  parseRelayMessage,
  parseServerMessage
} from './protocol';
import { ApiError, ITransport } from './transport';

/**
 * The standard close code for a refused connection (RFC 6455): not one the
 * agentkit server sends, but a proxy or an authenticating gateway in front of it may.
 */
const POLICY_VIOLATION = 1008;

const PING: IPingMessage = { type: 'ping' };

/**
 * Error frames that refuse a viewer's command (a decision, pause, resume, cancel):
 * said to the view that sent it (`onControlError`), not as a connection problem.
 */
const CONTROL_ERRORS: ReadonlySet<string> = new Set<string>([
  ErrorCode.ALREADY_DECIDED,
  ErrorCode.UNKNOWN_CALL,
  ErrorCode.INVALID_ARGUMENTS,
  ErrorCode.NOT_PAUSED,
  ErrorCode.FORBIDDEN,
  ErrorCode.TASK_FINISHED
]);

/** How the view is connected, shown in its header. */
export type ConnectionState =
  | 'connecting'
  | 'live'
  | 'reconnecting'
  | 'relay'
  | 'closed'
  | 'not-found'
  | 'error';

/** What a backend feeds: the task view. */
export interface ITaskSink {
  /** The task's record (agent, input, times, status). */
  onTask(task: ITask): void;
  /** One `step` or `result` of the log, in `seq` order, each once. */
  onMessage(message: TaskLogMessage): void;
  /** The WebSocket's `connected` greeting. */
  onConnected(message: IConnectedMessage): void;
  /**
   * The connection changed; `detail` is a sentence for people, worth a notice in
   * the view (not only a tooltip) when `notice` is true.
   */
  onConnection(state: ConnectionState, detail?: string, notice?: boolean): void;
  /**
   * A message of the log could not be read (not JSON, or a step or result that
   * fails validation): `detail` is the start of what arrived. It is shown, never dropped.
   */
  onUnreadable?(detail: string): void;
  /** Messages `after + 1` to `next - 1` of the log will never be delivered. */
  onGap?(after: number, next: number): void;
  /**
   * The server (or the kernel, on the relay) refused a command this view sent:
   * `already_decided`, `unknown_call`, `invalid_arguments` (with the `call_id` of a
   * decision), `not_paused`, `forbidden`, `task_finished`.
   */
  onControlError?(error: IErrorData): void;
}

/** A running subscription to one task. */
export interface ITaskSubscription {
  /** The transport this subscription ended up with. */
  readonly mode: 'direct' | 'relay';
  /** Ask the server to cancel the task. */
  cancel(): Promise<void>;
  /**
   * Send approve / reject / pause / resume. Resolves once sent (success is silent:
   * the step that records it follows on the stream); a refusal comes to the sink's
   * `onControlError`, or rejects the promise (an `ApiError`) when it went over REST.
   */
  control(command: ControlMessage): Promise<void>;
  /**
   * A GET under `{base_url}agentkit/api/` of the server the stream comes from (the
   * whole text of a cut event); absent, or rejecting, where there is none (the relay).
   */
  request?<T>(path: string): Promise<T>;
  /** Stop listening (the task goes on). */
  dispose(): void;
}

/** A fork just made: its task id, and its record when the server sent it. */
export interface IForked {
  task_id: string;
  task?: ITask;
}

export interface ITaskBackend {
  open(taskId: string, sink: ITaskSink): ITaskSubscription;
  /**
   * Fork task `taskId` at its event `atSeq` with `edit` (none: no change): REST, or
   * the kernel relay's `fork` message. Rejects with an `ApiError` carrying the
   * server's (or the kernel's) code: `invalid_fork`, `fork_needs_kernel`,
   * `invalid_arguments`, `forbidden`, ... Absent where forks cannot be made.
   */
  fork?(taskId: string, atSeq: number, edit: IForkEdit | null): Promise<IForked>;
  /** `GET compare?a=&b=`: runs `a` and `b` compared. Absent without REST access. */
  compare?(a: string, b: string): Promise<IComparison>;
}

/** `POST tasks/{id}/fork`: 201 with the new task's record. */
async function restFork(
  transport: ITransport,
  taskId: string,
  atSeq: number,
  edit: IForkEdit | null
): Promise<IForked> {
  const body: { at_seq: number; edit?: IForkEdit } = { at_seq: atSeq };
  if (edit) {
    body.edit = edit;
  }
  const task = await transport.request<ITask>(`tasks/${encodeURIComponent(taskId)}/fork`, {
    method: 'POST',
    body
  });
  if (!isRecord(task) || typeof task.task_id !== 'string') {
    throw new ApiError(201, ErrorCode.INVALID_MESSAGE, 'The server did not say which task the fork is.');
  }
  return { task_id: task.task_id, task };
}

function restCompare(transport: ITransport, a: string, b: string): Promise<IComparison> {
  return transport.request<IComparison>(`compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
}

/** How long a fork asked of the kernel waits for its `relay_forked` (or refusal). */
const FORK_ANSWER_MS = 30_000;

/** Codes a kernel's refusal of a fork may carry (beside the task's own id). */
const FORK_ERRORS: ReadonlySet<string> = new Set<string>([
  ErrorCode.INVALID_FORK,
  ErrorCode.INVALID_BODY,
  ErrorCode.INVALID_ARGUMENTS,
  ErrorCode.FORK_NEEDS_KERNEL,
  ErrorCode.UNKNOWN_AGENT,
  ErrorCode.TOO_MANY_RUNNING_TASKS,
  ErrorCode.TOO_MANY_CREATIONS
]);

/**
 * Ask the kernel to fork: `{"type": "fork", "at_seq", "edit", "task_id"}` on the
 * widget's comm; the answer is `relay_forked` (with the fork's id) or a
 * `relay_error` with a code (no `call_id`: that is a decision's).
 */
function relayFork(
  model: IRelayModel,
  taskId: string,
  atSeq: number,
  edit: IForkEdit | null
): Promise<IForked> {
  return new Promise<IForked>((resolve, reject) => {
    let timer = 0;
    const listener = (content: unknown): void => {
      const message = parseRelayMessage(content);
      if (!message || message.type === 'relay_batch') {
        return;
      }
      const ours = !message.task_id || message.task_id === taskId;
      if (message.type === 'relay_forked' && ours) {
        finish();
        resolve({ task_id: message.fork_id });
      } else if (
        message.type === 'relay_error' &&
        message.code &&
        !message.call_id &&
        (ours || FORK_ERRORS.has(message.code))
      ) {
        finish();
        reject(new ApiError(0, message.code, message.error));
      }
    };
    const finish = (): void => {
      window.clearTimeout(timer);
      model.off('msg:custom', listener);
    };
    model.on('msg:custom', listener);
    timer = window.setTimeout(() => {
      finish();
      reject(
        new ApiError(
          0,
          'no_answer',
          'No answer came from the kernel. It reads widget messages between cells: ' +
            'try again once no cell is running (or restart the kernel if it is gone).'
        )
      );
    }, FORK_ANSWER_MS);
    const fork: IRelayFork = { type: 'fork', at_seq: atSeq };
    if (edit) {
      fork.edit = { ...edit };
    }
    // The task id too: a view may fork a fork it shows below the widget's task.
    model.send({ ...fork, task_id: taskId });
  });
}

/** Drops what was already delivered, so replays and reconnects never duplicate. */
class Deliverer {
  lastSeq = 0;
  done = false;

  constructor(private readonly sink: ITaskSink) {}

  deliver(message: TaskLogMessage): void {
    if (message.seq <= this.lastSeq) {
      return;
    }
    if (message.seq > this.lastSeq + 1) {
      // The server no longer holds them (events_truncated), or they never arrived.
      this.sink.onGap?.(this.lastSeq, message.seq);
    }
    this.lastSeq = message.seq;
    if (message.type === 'result') {
      this.done = true;
    }
    this.sink.onMessage(message);
  }

  /**
   * Something arrived that is not a message this client can read. A step or a
   * result (or anything that is not JSON) is reported, and its `seq`, when it can
   * be read, counts as delivered (a replay must not bring it back as a gap); other
   * well-formed messages of unknown types are a newer server's, and ignored.
   */
  unreadable(raw: unknown, text?: string): void {
    let seq: number | null = null;
    if (isRecord(raw)) {
      if (raw.type !== 'step' && raw.type !== 'result') {
        return;
      }
      seq = typeof raw.seq === 'number' && Number.isInteger(raw.seq) ? raw.seq : null;
    } else if (text !== undefined) {
      const match = /"seq"\s*:\s*(\d+)/.exec(text);
      seq = match ? Number(match[1]) : null;
    }
    if (seq !== null && seq <= this.lastSeq) {
      return;
    }
    const shown = text ?? safeJson(raw);
    this.sink.onUnreadable?.(shown.length > 300 ? `${shown.slice(0, 300)}…` : shown);
    if (seq !== null && seq === this.lastSeq + 1) {
      this.lastSeq = seq;
    }
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export interface IDirectOptions {
  /** Milliseconds between pings (the server drops sockets idle for 60 s). */
  pingInterval?: number;
  /** The first and the largest reconnect delay, in milliseconds. */
  minBackoff?: number;
  maxBackoff?: number;
  /**
   * Called, instead of reconnecting, when the WebSocket failed this many times
   * in a row (`unavailableAfter`, default 2) without the server ever greeting it
   * with `connected`: the stream is not reachable this way. `lastSeq` is the
   * last message delivered (from the REST log). Without it, retry forever.
   */
  onUnavailable?: (lastSeq: number, detail: string) => void;
  unavailableAfter?: number;
}

/** Talks to the server straight from the browser. */
export class DirectBackend implements ITaskBackend {
  constructor(
    readonly transport: ITransport,
    private readonly options: IDirectOptions = {}
  ) {}

  open(taskId: string, sink: ITaskSink): ITaskSubscription {
    return new DirectSubscription(this.transport, taskId, sink, this.options, null);
  }

  /** Open with a task record already fetched (by `AutoBackend`). */
  openWith(taskId: string, sink: ITaskSink, task: ITaskDetail): ITaskSubscription {
    return new DirectSubscription(this.transport, taskId, sink, this.options, task);
  }

  fork(taskId: string, atSeq: number, edit: IForkEdit | null): Promise<IForked> {
    return restFork(this.transport, taskId, atSeq, edit);
  }

  compare(a: string, b: string): Promise<IComparison> {
    return restCompare(this.transport, a, b);
  }
}

class DirectSubscription implements ITaskSubscription {
  readonly mode = 'direct' as const;
  private readonly deliverer: Deliverer;
  private socket: WebSocket | null = null;
  /** A socket opened only for the `connected` greeting of a finished task. */
  private greeting: WebSocket | null = null;
  private pingTimer = 0;
  private retryTimer = 0;
  private attempts = 0;
  /** The server greeted a socket of this subscription at least once. */
  private greeted = false;
  /** Sockets that closed in a row before any `connected`. */
  private failures = 0;
  private disposed = false;

  constructor(
    private readonly transport: ITransport,
    private readonly taskId: string,
    private readonly sink: ITaskSink,
    private readonly options: IDirectOptions,
    preloaded: ITaskDetail | null
  ) {
    this.deliverer = new Deliverer(sink);
    sink.onConnection('connecting');
    void this.start(preloaded);
  }

  private async start(preloaded: ITaskDetail | null): Promise<void> {
    let task = preloaded;
    if (!task) {
      try {
        task = await this.transport.request<ITaskDetail>(
          `tasks/${encodeURIComponent(this.taskId)}`
        );
      } catch (reason) {
        if (this.disposed) {
          return;
        }
        if (reason instanceof ApiError && reason.status === 404) {
          this.sink.onConnection(
            'not-found',
            `Task ${this.taskId} is not known to this server (deleted, or run elsewhere).`
          );
          return;
        }
        // The REST call failed for another reason: the WebSocket replays the
        // whole log anyway, so go on with it.
        task = null;
      }
    }
    if (this.disposed) {
      return;
    }
    if (task) {
      this.sink.onTask(task);
      for (const raw of task.events ?? []) {
        const message = parseLogMessage(raw);
        if (message) {
          this.deliverer.deliver(message);
        } else {
          this.deliverer.unreadable(raw);
        }
      }
      if (isFinal(task.status) && !this.deliverer.done && !task.has_more) {
        // A finished task whose log lacks the result: make one from the record. (Not
        // when the answer is one page of a longer log: the WebSocket replays the rest.)
        const result = isRecord(task.result) ? task.result : {};
        const message = parseLogMessage({
          type: 'result',
          seq: Math.max(this.deliverer.lastSeq + 1, task.last_seq ?? 0),
          task_id: this.taskId,
          data: { ...result, status: task.status, task_id: this.taskId }
        });
        if (message) {
          this.deliverer.deliver(message);
        }
      }
    }
    if (this.deliverer.done) {
      this.sink.onConnection('closed');
      this.greet();
      return;
    }
    this.connect();
  }

  /**
   * The log came whole over REST (a finished task): no stream is needed, but the
   * WebSocket's `connected` greeting says whether this viewer may write (fork). The
   * server greets, has nothing after the last `seq`, and closes.
   */
  private greet(): void {
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.transport.websocketUrl(this.taskId, this.deliverer.lastSeq));
    } catch {
      return;
    }
    this.greeting = socket;
    const timer = window.setTimeout(() => socket.close(CloseCode.NORMAL, 'Greeted'), 10_000);
    socket.onmessage = event => {
      let raw: unknown;
      try {
        raw = JSON.parse(String(event.data));
      } catch {
        return;
      }
      const message = parseServerMessage(raw);
      if (message?.type === 'connected' && !this.disposed) {
        this.sink.onConnected(message);
        socket.close(CloseCode.NORMAL, 'Greeted');
      }
    };
    socket.onclose = () => {
      window.clearTimeout(timer);
      if (this.greeting === socket) {
        this.greeting = null;
      }
    };
  }

  private connect(): void {
    if (this.disposed) {
      return;
    }
    const socket = new WebSocket(this.transport.websocketUrl(this.taskId, this.deliverer.lastSeq));
    this.socket = socket;
    socket.onopen = () => {
      this.sink.onConnection('live');
      window.clearInterval(this.pingTimer);
      this.pingTimer = window.setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) {
          socket.send(JSON.stringify(PING));
        }
      }, this.options.pingInterval ?? 20000);
    };
    socket.onmessage = event => {
      const text = String(event.data);
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch {
        this.deliverer.unreadable(undefined, text);
        return;
      }
      const message = parseServerMessage(raw);
      if (!message) {
        this.deliverer.unreadable(raw);
        return;
      }
      switch (message.type) {
        case 'connected':
          this.attempts = 0;
          this.greeted = true;
          this.failures = 0;
          this.sink.onConnected(message);
          break;
        case 'step':
        case 'result':
          this.attempts = 0;
          this.deliverer.deliver(message);
          break;
        case 'error':
          if (
            this.sink.onControlError &&
            (message.data.call_id !== undefined || CONTROL_ERRORS.has(message.data.code))
          ) {
            this.sink.onControlError(message.data);
          } else if (message.data.code !== ErrorCode.UNKNOWN_TASK) {
            this.sink.onConnection('live', `Server: ${message.data.message}`);
          }
          break;
        default:
          break;
      }
    };
    socket.onclose = event => {
      window.clearInterval(this.pingTimer);
      if (this.socket === socket) {
        this.socket = null;
      }
      if (this.disposed) {
        return;
      }
      if (this.deliverer.done) {
        this.sink.onConnection('closed');
        return;
      }
      if (event.code === CloseCode.UNKNOWN_TASK) {
        this.sink.onConnection('not-found', `Task ${this.taskId} is not known to this server.`);
        return;
      }
      const refused =
        event.code === CloseCode.UNAUTHENTICATED ||
        event.code === CloseCode.FORBIDDEN ||
        event.code === POLICY_VIOLATION;
      if (!this.greeted && this.options.onUnavailable) {
        this.failures += 1;
        if (refused || this.failures >= (this.options.unavailableAfter ?? 2)) {
          const why = refused
            ? `the server refused it (${event.code})`
            : `it closed ${this.failures} times before the server answered`;
          this.options.onUnavailable(this.deliverer.lastSeq, `The WebSocket to the server failed: ${why}.`);
          return;
        }
      }
      if (refused) {
        this.sink.onConnection('error', 'The server refused the connection (not authenticated).');
        return;
      }
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    const min = this.options.minBackoff ?? 250;
    const max = this.options.maxBackoff ?? 10000;
    const delay = Math.min(max, min * 2 ** this.attempts) * (0.75 + Math.random() * 0.5);
    this.attempts += 1;
    this.sink.onConnection('reconnecting', `Reconnecting in ${Math.round(delay / 100) / 10} s…`);
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
  }

  async cancel(): Promise<void> {
    const socket = this.socket;
    if (socket && socket.readyState === WebSocket.OPEN) {
      const cancel: ICancelMessage = { type: 'cancel' };
      socket.send(JSON.stringify(cancel));
      return;
    }
    try {
      await this.transport.request(`tasks/${encodeURIComponent(this.taskId)}/cancel`, {
        method: 'POST'
      });
    } catch (reason) {
      // 409: it finished in the meantime; its result is on its way.
      if (!(reason instanceof ApiError && reason.status === 409)) {
        throw reason;
      }
    }
    if (!this.socket && !this.deliverer.done) {
      window.clearTimeout(this.retryTimer);
      this.connect();
    }
  }

  request<T>(path: string): Promise<T> {
    return this.transport.request<T>(path);
  }

  async control(command: ControlMessage): Promise<void> {
    const socket = this.socket;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(command));
      return;
    }
    // No socket right now (reconnecting): the same command over REST, whose
    // refusal is an ApiError with the same code.
    const task = `tasks/${encodeURIComponent(this.taskId)}`;
    switch (command.type) {
      case 'approve': {
        const body: { [key: string]: unknown } = { decision: 'approve', scope: command.scope ?? 'once' };
        if (command.arguments) {
          body.arguments = command.arguments;
        }
        await this.transport.request(`${task}/approvals/${encodeURIComponent(command.call_id)}`, {
          method: 'POST',
          body
        });
        break;
      }
      case 'reject':
        await this.transport.request(`${task}/approvals/${encodeURIComponent(command.call_id)}`, {
          method: 'POST',
          body: { decision: 'reject', reason: command.reason ?? null }
        });
        break;
      case 'pause':
        await this.transport.request(`${task}/pause`, {
          method: 'POST',
          body: command.reason ? { reason: command.reason } : {}
        });
        break;
      case 'resume':
        await this.transport.request(`${task}/resume`, {
          method: 'POST',
          body: typeof command.steps === 'number' ? { steps: command.steps } : {}
        });
        break;
    }
    if (!this.socket && !this.deliverer.done) {
      window.clearTimeout(this.retryTimer);
      this.connect();
    }
  }

  dispose(): void {
    if (this.disposed) {
      return;
    }
    this.disposed = true;
    window.clearInterval(this.pingTimer);
    window.clearTimeout(this.retryTimer);
    if (this.greeting) {
      this.greeting.onmessage = null;
      this.greeting.close(CloseCode.NORMAL, 'View closed');
      this.greeting = null;
    }
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.onmessage = null;
      this.socket.close(CloseCode.NORMAL, 'View closed');
      this.socket = null;
    }
  }
}

/** The part of an (any)widget model the relay needs. */
export interface IRelayModel {
  send(content: unknown): void;
  on(event: 'msg:custom', callback: (message: unknown) => void): void;
  off(event: 'msg:custom', callback: (message: unknown) => void): void;
}

/** Gets the stream through the kernel, over the widget's comm. */
export class RelayBackend implements ITaskBackend {
  constructor(private readonly model: IRelayModel) {}

  open(taskId: string, sink: ITaskSink): ITaskSubscription {
    return new RelaySubscription(this.model, taskId, sink, 0);
  }

  /** Take over a stream already delivered up to `after` (by another backend). */
  openAfter(taskId: string, sink: ITaskSink, after: number, detail?: string): ITaskSubscription {
    return new RelaySubscription(this.model, taskId, sink, after, detail);
  }

  fork(taskId: string, atSeq: number, edit: IForkEdit | null): Promise<IForked> {
    return relayFork(this.model, taskId, atSeq, edit);
  }
}

class RelaySubscription implements ITaskSubscription {
  readonly mode = 'relay' as const;
  private readonly deliverer: Deliverer;
  private disposed = false;

  constructor(
    private readonly model: IRelayModel,
    private readonly taskId: string,
    private readonly sink: ITaskSink,
    after: number,
    detail?: string
  ) {
    this.deliverer = new Deliverer(sink);
    this.deliverer.lastSeq = after;
    model.on('msg:custom', this.onCustom);
    if (detail) {
      sink.onConnection('relay', detail, true);
    } else {
      sink.onConnection('relay', 'The kernel relays this run.');
    }
    const request: IRelayRequest = { type: 'relay', after };
    // The task id too: the kernel ignores it, a model shared by views would not.
    model.send({ ...request, task_id: taskId });
  }

  private readonly onCustom = (content: unknown): void => {
    const relayed = this.disposed ? null : parseRelayMessage(content);
    if (!relayed || (relayed.task_id && relayed.task_id !== this.taskId)) {
      return;
    }
    if (relayed.type === 'relay_forked') {
      return; // the answer to a fork (relayFork takes it)
    }
    if (relayed.type === 'relay_batch') {
      if (Object.keys(relayed.task).length) {
        this.sink.onTask(relayed.task as unknown as ITask);
      }
      for (const raw of relayed.messages) {
        const message = parseLogMessage(raw);
        if (message) {
          this.deliverer.deliver(message);
        } else {
          this.deliverer.unreadable(raw);
        }
      }
      if (this.deliverer.done) {
        this.sink.onConnection('closed');
      }
    } else if (relayed.code && this.sink.onControlError) {
      // The kernel refused a relayed command (the server's error, passed on).
      const error: IErrorData = { code: relayed.code, message: relayed.error };
      if (relayed.call_id) {
        error.call_id = relayed.call_id;
      }
      this.sink.onControlError(error);
    } else {
      this.sink.onConnection('error', `Kernel: ${relayed.error}`);
    }
  };

  cancel(): Promise<void> {
    const cancel: IRelayCancel = { type: 'cancel' };
    this.model.send({ ...cancel, task_id: this.taskId });
    return Promise.resolve();
  }

  control(command: ControlMessage): Promise<void> {
    const control: IRelayControl = { type: 'control', command: { ...command } };
    this.model.send({ ...control, task_id: this.taskId });
    return Promise.resolve();
  }

  dispose(): void {
    this.disposed = true;
    this.model.off('msg:custom', this.onCustom);
  }
}

/**
 * Direct when the page's own server answers for the task, relay otherwise.
 * `transport` is `null` where the page was not served by a Jupyter server.
 */
export class AutoBackend implements ITaskBackend {
  constructor(
    private readonly transport: ITransport | null,
    private readonly model: IRelayModel,
    private readonly prefer: 'auto' | 'direct' | 'relay' = 'auto',
    private readonly probeTimeout = 5000
  ) {}

  open(taskId: string, sink: ITaskSink): ITaskSubscription {
    return new AutoSubscription(this, taskId, sink);
  }

  /** @internal */
  get mayGoDirect(): boolean {
    return this.prefer !== 'relay' && this.transport !== null;
  }

  /** @internal */
  get strictDirect(): boolean {
    return this.prefer === 'direct' && this.transport !== null;
  }

  /** @internal */
  async choose(taskId: string): Promise<ITaskDetail | null> {
    if (this.prefer === 'relay' || !this.transport) {
      return null;
    }
    const abort = new AbortController();
    const timer = window.setTimeout(() => abort.abort(), this.probeTimeout);
    try {
      const task = await this.transport.request<ITaskDetail>(
        `tasks/${encodeURIComponent(taskId)}`,
        { signal: abort.signal }
      );
      return isRecord(task) && task.task_id === taskId ? task : null;
    } catch {
      return null;
    } finally {
      window.clearTimeout(timer);
    }
  }

  /**
   * @internal `onUnavailable`: the WebSocket cannot be opened (not with
   * `transport="direct"`, which keeps retrying).
   */
  direct(
    taskId: string,
    sink: ITaskSink,
    task: ITaskDetail | null,
    onUnavailable?: (lastSeq: number, detail: string) => void
  ): ITaskSubscription {
    const backend = new DirectBackend(this.transport as ITransport, {
      onUnavailable: this.strictDirect ? undefined : onUnavailable
    });
    return task ? backend.openWith(taskId, sink, task) : backend.open(taskId, sink);
  }

  /** @internal */
  relay(taskId: string, sink: ITaskSink, after = 0, detail?: string): ITaskSubscription {
    return new RelayBackend(this.model).openAfter(taskId, sink, after, detail);
  }

  /** Through the kernel, whichever way the stream comes: the kernel has the tools. */
  fork(taskId: string, atSeq: number, edit: IForkEdit | null): Promise<IForked> {
    return relayFork(this.model, taskId, atSeq, edit);
  }

  compare(a: string, b: string): Promise<IComparison> {
    if (!this.transport) {
      return Promise.reject(new Error('This page does not reach the Jupyter server, so runs cannot be compared here.'));
    }
    return restCompare(this.transport, a, b);
  }
}

class AutoSubscription implements ITaskSubscription {
  private inner: ITaskSubscription | null = null;
  /** Set before the inner subscription exists: it reports its state at once. */
  private chosen: 'direct' | 'relay';
  private disposed = false;
  private pendingCancel = false;

  constructor(backend: AutoBackend, taskId: string, sink: ITaskSink) {
    this.chosen = backend.mayGoDirect ? 'direct' : 'relay';
    sink.onConnection('connecting');
    const fallBack = (lastSeq: number, detail: string): void => {
      if (this.disposed) {
        return;
      }
      this.inner?.dispose();
      this.chosen = 'relay';
      this.inner = backend.relay(taskId, sink, lastSeq, `${detail} The kernel relays this run.`);
    };
    void backend.choose(taskId).then(task => {
      if (this.disposed) {
        return;
      }
      if (task || backend.strictDirect) {
        this.chosen = 'direct';
        this.inner = backend.direct(taskId, sink, task, fallBack);
      } else {
        this.chosen = 'relay';
        this.inner = backend.relay(taskId, sink);
      }
      if (this.pendingCancel) {
        void this.inner.cancel();
      }
    });
  }

  get mode(): 'direct' | 'relay' {
    return this.chosen;
  }

  request<T>(path: string): Promise<T> {
    if (this.inner?.request) {
      return this.inner.request<T>(path);
    }
    return Promise.reject(new Error('Not available while the kernel relays this run.'));
  }

  cancel(): Promise<void> {
    if (this.inner) {
      return this.inner.cancel();
    }
    this.pendingCancel = true;
    return Promise.resolve();
  }

  control(command: ControlMessage): Promise<void> {
    if (this.inner) {
      return this.inner.control(command);
    }
    return Promise.reject(new Error('Not connected to the task yet; try again in a moment.'));
  }

  dispose(): void {
    this.disposed = true;
    this.inner?.dispose();
  }
}
