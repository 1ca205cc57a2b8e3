/**
 * TaskView: the live view of one agent task, in plain DOM.
 *
 * One class serves the anywidget (notebook output in any front end), the
 * JupyterLab mime renderer (outputs re-attached by task id) and the main-area
 * view opened from the side panel. Every event appends or patches a few nodes;
 * nothing is ever re-rendered as a whole, and the header is refreshed at most
 * once per animation frame, so thousands of steps stay smooth.
 */

import {
  IConnectedMessage,
  IResultMessage,
  IStepEvent,
  ITask,
  JSONRecord,
  TaskLogMessage,
  TaskStatus,
  errorText,
  isFinal,
  toEpochSeconds
} from './protocol';
import { ConnectionState, ITaskBackend, ITaskSink, ITaskSubscription } from './stream';

/** Observations longer than this (characters or lines) start collapsed. */
const COLLAPSE_CHARS = 600;
const COLLAPSE_LINES = 12;

/**
 * Steps per group. The browser lays out a container's children one after the
 * other, so in one flat list of thousands of steps each appended step costs more
 * than the one before; in groups of this many (each its own layout root, see
 * view.css) the cost of an appended step stays flat (benchmarks/render.py).
 */
const STEPS_PER_GROUP = 50;

export interface ITaskViewOptions {
  taskId: string;
  /** The agent's name, when known before the server answers. */
  agent?: string;
  backend: ITaskBackend;
  /** `inline` (notebook output, bounded height) or `fill` (a main-area panel). */
  layout?: 'inline' | 'fill';
}

type ViewStatus = TaskStatus | 'cancelling' | 'unknown';

interface IStepBlock {
  node: HTMLLIElement;
  body: HTMLDivElement;
  draft: Text | null;
  draftNode: HTMLDivElement | null;
}

const STATUS_LABEL: Record<ViewStatus, string> = {
  queued: 'Queued',
  running: 'Running',
  cancelling: 'Cancelling…',
  succeeded: 'Succeeded',
  failed: 'Failed',
  cancelled: 'Cancelled',
  unknown: 'Connecting…'
};

const CONNECTION_LABEL: Record<ConnectionState, string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  relay: 'via kernel',
  closed: '',
  'not-found': 'not found',
  error: 'error'
};

let counter = 0;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function asText(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  if (value === undefined || value === null) {
    return '';
  }
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** Tool arguments: one line when short, indented JSON otherwise. */
function formatArguments(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  try {
    const compact = JSON.stringify(value);
    if (compact !== undefined && compact.length <= 100) {
      return compact;
    }
  } catch {
    return String(value);
  }
  return asText(value);
}

/** `12 ms` below a second. */
function formatMillis(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : formatDuration(ms / 1000);
}

/** `3.2 s`, `1 min 05 s`, `1 h 02 min`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds < 10 ? seconds.toFixed(1) : Math.floor(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  }
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

export class TaskView implements ITaskSink {
  /** The root element: put it anywhere in the page. */
  readonly node: HTMLElement;
  readonly taskId: string;

  private readonly backend: ITaskBackend;
  private subscription: ITaskSubscription | null = null;

  private readonly agentNode: HTMLElement;
  private readonly statusNode: HTMLElement;
  private readonly stepsCountNode: HTMLElement;
  private readonly tokensNode: HTMLElement;
  private readonly elapsedNode: HTMLElement;
  private readonly connectionNode: HTMLElement;
  private readonly cancelButton: HTMLButtonElement;
  private readonly inputNode: HTMLElement;
  private readonly stepsNode: HTMLOListElement;
  private readonly finalNode: HTMLElement;
  private readonly noticeNode: HTMLElement;

  private readonly blocks = new Map<number, IStepBlock>();
  /** The group new steps go into (a list item holding a list; see STEPS_PER_GROUP). */
  private group: HTMLOListElement | null = null;
  private readonly calls = new Map<string, HTMLElement>();
  private status: ViewStatus = 'unknown';
  private agent = '';
  private maxStep = 0;
  private runningTokens = 0;
  private totalTokens: number | null = null;
  private startedAt: number | null = null;
  private finishedAt: number | null = null;
  private firstEventAt: number | null = null;
  private lastEventAt: number | null = null;
  private finalShown = false;
  private errorShown = false;
  private stickToBottom = true;
  /** Where the view last scrolled its list to (the bottom, then). */
  private autoScrollTop = 0;
  private frame = 0;
  private ticker = 0;
  private disposed = false;
  private readonly idPrefix: string;
  private outputs = 0;

  constructor(options: ITaskViewOptions) {
    this.taskId = options.taskId;
    this.backend = options.backend;
    this.agent = options.agent ?? '';
    const id = `agentkit-task-${++counter}`;
    this.idPrefix = id;

    const root = el('section', `ak-task ak-task--${options.layout ?? 'inline'}`);
    root.dataset.taskId = this.taskId;
    root.dataset.status = 'unknown';
    root.setAttribute('aria-labelledby', `${id}-title`);

    const header = el('header', 'ak-header');
    const title = el('div', 'ak-title');
    title.id = `${id}-title`;
    const kind = el('span', 'ak-kind', 'Agent');
    this.agentNode = el('span', 'ak-agent', this.agent || '…');
    title.append(kind, this.agentNode);

    this.statusNode = el('span', 'ak-status', STATUS_LABEL.unknown);
    this.statusNode.setAttribute('role', 'status');
    this.statusNode.setAttribute('aria-live', 'polite');
    this.statusNode.setAttribute('aria-atomic', 'true');
    this.statusNode.dataset.status = 'unknown';

    const meta = el('span', 'ak-meta');
    this.stepsCountNode = el('span', 'ak-meta-steps', '0 steps');
    this.tokensNode = el('span', 'ak-meta-tokens', '');
    this.elapsedNode = el('span', 'ak-meta-elapsed', '');
    this.elapsedNode.setAttribute('title', 'Elapsed time');
    meta.append(this.stepsCountNode, this.tokensNode, this.elapsedNode);

    this.connectionNode = el('span', 'ak-connection', '');
    this.connectionNode.dataset.state = 'connecting';

    this.cancelButton = el('button', 'ak-cancel', 'Cancel');
    this.cancelButton.type = 'button';
    this.cancelButton.setAttribute('aria-label', 'Cancel this agent run');
    this.cancelButton.disabled = true;
    this.cancelButton.addEventListener('click', () => void this.cancel());

    header.append(title, this.statusNode, meta, this.connectionNode, this.cancelButton);

    this.inputNode = el('div', 'ak-input');
    this.inputNode.hidden = true;

    this.stepsNode = el('ol', 'ak-steps');
    this.stepsNode.setAttribute('aria-label', 'Steps of the run');
    this.stepsNode.tabIndex = 0;
    this.stepsNode.addEventListener('scroll', () => {
      const list = this.stepsNode;
      // Steps added since the view scrolled to the bottom move the bottom away
      // too (this event comes a frame later): only a scroll above where the view
      // put it means the reader is looking back.
      this.stickToBottom =
        list.scrollTop + list.clientHeight >= list.scrollHeight - 12 ||
        list.scrollTop >= this.autoScrollTop - 1;
    });
    this.stepsNode.addEventListener('click', event => this.onStepsClick(event));

    this.finalNode = el('div', 'ak-final');
    this.finalNode.hidden = true;

    this.noticeNode = el('div', 'ak-notice');
    this.noticeNode.hidden = true;

    root.append(header, this.inputNode, this.stepsNode, this.finalNode, this.noticeNode);
    this.node = root;
  }

  /** Open the subscription: call once, after the node is in the page or before. */
  start(): this {
    if (!this.subscription && !this.disposed) {
      this.subscription = this.backend.open(this.taskId, this);
      this.node.dataset.mode = this.subscription.mode;
    }
    return this;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) {
      return;
    }
    this.disposed = true;
    this.subscription?.dispose();
    this.subscription = null;
    window.cancelAnimationFrame(this.frame);
    window.clearInterval(this.ticker);
  }

  /** Ask the server to stop the run. */
  async cancel(): Promise<void> {
    if (!this.subscription || isFinal(this.status)) {
      return;
    }
    this.setStatus('cancelling');
    try {
      await this.subscription.cancel();
    } catch (reason) {
      this.showNotice(`Could not cancel: ${errorText(reason instanceof Error ? reason.message : reason)}`, 'error');
      this.setStatus('running');
    }
  }

  // -- ITaskSink ---------------------------------------------------------------

  onTask(task: ITask): void {
    if (task.agent) {
      this.setAgent(task.agent);
    }
    if (typeof task.input === 'string' && task.input) {
      this.inputNode.textContent = task.input;
      this.inputNode.hidden = false;
    }
    this.startedAt = toEpochSeconds(task.started_at) ?? toEpochSeconds(task.created_at);
    this.finishedAt = toEpochSeconds(task.finished_at);
    // A final status comes with the log's `result` message, which every backend
    // delivers: a record that already says "succeeded" while its steps are still on
    // their way (the relay sends the record with each batch) must not end the view
    // before them.
    if (
      task.status &&
      !isFinal(task.status) &&
      (this.status === 'unknown' || this.status === 'queued')
    ) {
      this.setStatus(task.status);
    }
    this.scheduleRefresh();
  }

  onConnected(message: IConnectedMessage): void {
    if (message.agent) {
      this.setAgent(message.agent);
    }
    if (!isFinal(this.status) && this.status !== 'cancelling' && message.status) {
      this.setStatus(message.status);
    }
  }

  onConnection(state: ConnectionState, detail?: string, notice = false): void {
    if (this.disposed) {
      return;
    }
    this.connectionNode.dataset.state = state;
    this.connectionNode.textContent = CONNECTION_LABEL[state];
    this.connectionNode.title = detail ?? '';
    if (this.subscription) {
      this.node.dataset.mode = this.subscription.mode;
    }
    if (state === 'not-found' || state === 'error') {
      this.showNotice(detail ?? 'The connection failed.', 'error');
      if (state === 'not-found') {
        this.setStatus('unknown');
        this.statusNode.textContent = 'Not found';
        this.cancelButton.disabled = true;
      }
    } else if (detail && (state === 'live' || notice)) {
      this.showNotice(detail, 'info');
    }
  }

  onMessage(message: TaskLogMessage): void {
    if (this.disposed) {
      return;
    }
    if (message.type === 'result') {
      this.onResult(message);
    } else {
      this.onStep(message.data);
    }
    this.scheduleRefresh();
  }

  // -- events ------------------------------------------------------------------

  private onStep(event: IStepEvent): void {
    const data = event.data;
    this.noteTime(event.timestamp);
    if (event.step > this.maxStep) {
      this.maxStep = event.step;
    }
    if (this.status === 'unknown' || this.status === 'queued') {
      this.setStatus('running');
    }
    const block = this.block(event.step);
    switch (event.event_type) {
      case 'token':
        this.appendDraft(block, asText(data.delta));
        break;
      case 'thought':
        this.addThought(block, asText(data.text));
        this.countUsage(data.usage);
        break;
      case 'tool_call':
        this.addToolCall(block, data);
        break;
      case 'observation':
        this.addObservation(block, data);
        break;
      case 'final_answer':
        this.dropDraft(block);
        this.showFinal(asText(data.output));
        if (typeof data.total_tokens === 'number') {
          this.totalTokens = data.total_tokens;
        }
        break;
      case 'error': {
        this.markDraftInterrupted(block);
        const code = typeof data.code === 'string' ? ` (${data.code})` : '';
        block.body.append(this.callout('ak-error', 'Error', asText(data.message) + code));
        this.errorShown = true;
        break;
      }
      case 'cancelled':
        this.markDraftInterrupted(block);
        block.body.append(
          this.callout('ak-cancelled', 'Cancelled', asText(data.message) || 'The run was cancelled.')
        );
        break;
      default:
        block.body.append(this.callout('ak-other', event.event_type, asText(data)));
        break;
    }
  }

  private onResult(message: IResultMessage): void {
    const data = message.data;
    if (typeof data.total_tokens === 'number') {
      this.totalTokens = data.total_tokens;
    }
    if (typeof data.total_steps === 'number' && data.total_steps > this.maxStep) {
      this.maxStep = data.total_steps;
    }
    if (this.finishedAt === null) {
      this.finishedAt = this.lastEventAt ?? Date.now() / 1000;
    }
    if (data.status === 'succeeded' && !this.finalShown && typeof data.output === 'string') {
      this.showFinal(data.output);
    }
    if (data.status === 'failed' && !this.errorShown) {
      this.showNotice(errorText(data.error) || 'The run failed.', 'error');
    }
    for (const block of this.blocks.values()) {
      this.markDraftInterrupted(block);
    }
    this.setStatus(data.status);
  }

  // -- DOM pieces --------------------------------------------------------------

  private block(step: number): IStepBlock {
    let block = this.blocks.get(step);
    if (!block) {
      const node = el('li', 'ak-step');
      node.dataset.step = String(step);
      const label = el('div', 'ak-step-label', `Step ${step}`);
      const body = el('div', 'ak-step-body');
      node.append(label, body);
      this.appendStep(node);
      block = { node, body, draft: null, draftNode: null };
      this.blocks.set(step, block);
    }
    return block;
  }

  private appendStep(node: HTMLLIElement): void {
    if (!this.group || this.group.childElementCount >= STEPS_PER_GROUP) {
      // Presentational wrappers: assistive technology sees one list of steps.
      const wrapper = el('li', 'ak-step-group');
      wrapper.setAttribute('role', 'none');
      const group = el('ol', 'ak-step-group-list');
      group.setAttribute('role', 'none');
      wrapper.append(group);
      this.stepsNode.append(wrapper);
      this.group = group;
    }
    this.group.append(node);
  }

  private removeStep(node: HTMLLIElement): void {
    const group = node.parentElement;
    node.remove();
    if (group && !group.childElementCount) {
      group.parentElement?.remove();
      if (group === this.group) {
        this.group = null;
      }
    }
  }

  private appendDraft(block: IStepBlock, delta: string): void {
    if (!delta) {
      return;
    }
    if (!block.draft || !block.draftNode) {
      const node = el('div', 'ak-thought ak-streaming');
      const text = document.createTextNode('');
      node.append(text);
      block.body.append(node);
      block.draft = text;
      block.draftNode = node;
    }
    block.draft.appendData(delta);
  }

  private addThought(block: IStepBlock, text: string): void {
    if (block.draftNode) {
      block.draftNode.textContent = text;
      block.draftNode.classList.remove('ak-streaming');
      block.draft = null;
      block.draftNode = null;
      return;
    }
    if (text) {
      block.body.append(el('div', 'ak-thought', text));
    }
  }

  private dropDraft(block: IStepBlock): void {
    if (block.draftNode) {
      block.draftNode.remove();
      block.draft = null;
      block.draftNode = null;
    }
    if (!block.body.childElementCount) {
      this.removeStep(block.node);
      this.blocks.delete(Number(block.node.dataset.step));
    }
  }

  private markDraftInterrupted(block: IStepBlock): void {
    if (block.draftNode) {
      block.draftNode.classList.remove('ak-streaming');
      block.draftNode.classList.add('ak-interrupted');
      block.draft = null;
      block.draftNode = null;
    }
  }

  private addToolCall(block: IStepBlock, data: JSONRecord): void {
    const node = el('div', 'ak-call');
    const callId = typeof data.call_id === 'string' ? data.call_id : '';
    node.dataset.callId = callId;
    const head = el('div', 'ak-call-head');
    head.append(el('span', 'ak-call-label', 'Tool'), el('code', 'ak-tool-name', asText(data.name)));
    const args = el('pre', 'ak-args', formatArguments(data.arguments));
    args.setAttribute('aria-label', `Arguments of ${asText(data.name)}`);
    node.append(head, args);
    block.body.append(node);
    if (callId) {
      this.calls.set(callId, node);
    }
  }

  private addObservation(block: IStepBlock, data: JSONRecord): void {
    const callId = typeof data.call_id === 'string' ? data.call_id : '';
    const isError = data.is_error === true;
    const node = el('div', isError ? 'ak-observation ak-observation--error' : 'ak-observation');
    const head = el('div', 'ak-observation-head');
    head.append(el('span', 'ak-observation-label', isError ? 'Tool error' : 'Result'));
    if (typeof data.duration_ms === 'number') {
      head.append(el('span', 'ak-duration', formatMillis(data.duration_ms)));
    }
    const text = asText(data.output);
    const output = el('pre', 'ak-output', text);
    output.id = `${this.idPrefix}-out-${++this.outputs}`;
    node.append(head, output);
    const lines = text.split('\n').length;
    if (text.length > COLLAPSE_CHARS || lines > COLLAPSE_LINES) {
      output.classList.add('ak-collapsed');
      const toggle = el('button', 'ak-toggle', `Show all (${lines} lines, ${text.length} chars)`);
      toggle.type = 'button';
      toggle.setAttribute('aria-expanded', 'false');
      toggle.setAttribute('aria-controls', output.id);
      toggle.dataset.label = toggle.textContent ?? '';
      node.append(toggle);
    }
    const call = callId ? this.calls.get(callId) : undefined;
    (call ?? block.body).append(node);
  }

  private onStepsClick(event: MouseEvent): void {
    const target = event.target;
    if (!(target instanceof HTMLButtonElement) || !target.classList.contains('ak-toggle')) {
      return;
    }
    const output = target.parentElement?.querySelector('.ak-output');
    if (!output) {
      return;
    }
    const collapsed = output.classList.toggle('ak-collapsed');
    target.setAttribute('aria-expanded', String(!collapsed));
    target.textContent = collapsed ? (target.dataset.label ?? 'Show all') : 'Show less';
  }

  private callout(className: string, label: string, text: string): HTMLElement {
    const node = el('div', `ak-callout ${className}`);
    node.append(el('strong', 'ak-callout-label', label), el('span', 'ak-callout-text', text));
    return node;
  }

  private showFinal(output: string): void {
    this.finalShown = true;
    this.finalNode.replaceChildren(
      el('div', 'ak-final-label', 'Answer'),
      el('div', 'ak-final-text', output)
    );
    this.finalNode.hidden = false;
  }

  private showNotice(text: string, kind: 'info' | 'error'): void {
    this.noticeNode.textContent = text;
    this.noticeNode.dataset.kind = kind;
    this.noticeNode.setAttribute('role', kind === 'error' ? 'alert' : 'note');
    this.noticeNode.hidden = false;
  }

  // -- header ------------------------------------------------------------------

  private setAgent(agent: string): void {
    if (agent && agent !== this.agent) {
      this.agent = agent;
      this.agentNode.textContent = agent;
    }
  }

  private setStatus(status: ViewStatus): void {
    if (status === this.status) {
      return;
    }
    this.status = status;
    this.node.dataset.status = status;
    this.statusNode.dataset.status = status;
    this.statusNode.textContent = STATUS_LABEL[status];
    const final = isFinal(status);
    this.cancelButton.disabled = final || status === 'cancelling' || status === 'unknown';
    this.cancelButton.textContent = status === 'cancelling' ? 'Cancelling…' : 'Cancel';
    if (final) {
      window.clearInterval(this.ticker);
      this.ticker = 0;
      this.connectionNode.textContent = '';
    } else if (!this.ticker && (status === 'running' || status === 'cancelling')) {
      this.ticker = window.setInterval(() => this.refreshElapsed(), 1000);
    }
    this.scheduleRefresh();
  }

  private countUsage(usage: unknown): void {
    if (typeof usage === 'object' && usage !== null) {
      const { prompt_tokens: prompt, completion_tokens: completion } = usage as {
        prompt_tokens?: unknown;
        completion_tokens?: unknown;
      };
      this.runningTokens +=
        (typeof prompt === 'number' ? prompt : 0) + (typeof completion === 'number' ? completion : 0);
    }
  }

  private noteTime(timestamp: number): void {
    if (this.firstEventAt === null) {
      this.firstEventAt = timestamp;
    }
    this.lastEventAt = timestamp;
  }

  private scheduleRefresh(): void {
    if (this.frame || this.disposed) {
      return;
    }
    this.frame = window.requestAnimationFrame(() => {
      this.frame = 0;
      this.refresh();
    });
  }

  private refresh(): void {
    const steps = this.maxStep;
    this.stepsCountNode.textContent = `${steps} step${steps === 1 ? '' : 's'}`;
    const tokens = this.totalTokens ?? this.runningTokens;
    this.tokensNode.textContent = tokens ? `${tokens.toLocaleString()} tokens` : '';
    this.refreshElapsed();
    if (this.stickToBottom) {
      this.stepsNode.scrollTop = this.stepsNode.scrollHeight;
      this.autoScrollTop = this.stepsNode.scrollTop;
    }
  }

  private refreshElapsed(): void {
    const start = this.startedAt ?? this.firstEventAt;
    if (start === null) {
      return;
    }
    const end = isFinal(this.status)
      ? (this.finishedAt ?? this.lastEventAt ?? start)
      : Date.now() / 1000;
    this.elapsedNode.textContent = formatDuration(Math.max(0, end - start));
  }
}
