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
  IStepEventData,
  ITask,
  JSONRecord,
  TaskLogMessage,
  TaskStatus,
  errorText,
  isFinal,
  toEpochSeconds
} from './protocol';
import { ConnectionState, ITaskBackend, ITaskSink, ITaskSubscription } from './stream';
import { hasBidi, revealBidi, textNodes } from './text';

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

/** JSON outputs up to this many characters are parsed and shown as JSON or a table. */
const JSON_MAX_CHARS = 200_000;
/** A list of records is a table up to this many columns; rows beyond ROWS_SHOWN start hidden. */
const TABLE_MAX_COLUMNS = 12;
const TABLE_ROWS_SHOWN = 10;
/** JSON containers longer than this (compact characters) start collapsed, below the top. */
const JSON_OPEN_CHARS = 400;
/** A JSON container this short (compact characters) stays on one line. */
const JSON_INLINE_CHARS = 60;

/**
 * Renders untrusted markdown (a model's thought or answer) into a host element,
 * sanitized: no script, event handler, `javascript:` link, frame or SVG survives.
 */
export interface IMarkdownRenderer {
  render(source: string, host: HTMLElement): void | Promise<void>;
}

let defaultMarkdown: IMarkdownRenderer | null = null;

/**
 * The markdown renderer of views created without one: the JupyterLab plugin sets
 * JupyterLab's (rendermime and its sanitizer), the anywidget module its own
 * (marked and DOMPurify). Without one, thoughts and answers are plain text.
 */
export function setDefaultMarkdown(renderer: IMarkdownRenderer | null): void {
  defaultMarkdown = renderer;
}

/** What a view knows of its task, for a title: the agent and the input. */
export interface ITaskInfo {
  agent: string;
  input: string;
}

export interface ITaskViewOptions {
  taskId: string;
  /** The agent's name, when known before the server answers. */
  agent?: string;
  backend: ITaskBackend;
  /** `inline` (notebook output, bounded height) or `fill` (a main-area panel). */
  layout?: 'inline' | 'fill';
  /** How thoughts and answers are rendered; `setDefaultMarkdown`'s by default. */
  markdown?: IMarkdownRenderer | null;
}

type ViewStatus = TaskStatus | 'cancelling' | 'unknown';

interface IStepBlock {
  node: HTMLLIElement;
  toggle: HTMLButtonElement;
  body: HTMLDivElement;
  summary: HTMLElement;
  draft: Text | null;
  draftNode: HTMLDivElement | null;
}

/** Where a step's time went: the model's turn, then its tools (running together). */
interface IStepTime {
  start: number;
  firstTool: number | null;
  end: number;
  node: HTMLElement;
  model: HTMLElement;
  tools: HTMLElement;
  /** What the timeline shows now (seconds), kept in the view's totals. */
  shownModel: number;
  shownTools: number;
}

const STATUS_LABEL: Record<ViewStatus, string> = {
  [TaskStatus.QUEUED]: 'Queued',
  [TaskStatus.RUNNING]: 'Running',
  cancelling: 'Cancelling…',
  [TaskStatus.SUCCEEDED]: 'Succeeded',
  [TaskStatus.FAILED]: 'Failed',
  [TaskStatus.CANCELLED]: 'Cancelled',
  [TaskStatus.INTERRUPTED]: 'Interrupted',
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

function plural(count: number, word: string): string {
  return `${count.toLocaleString()} ${word}${count === 1 ? '' : 's'}`;
}

function isPlainRecord(value: unknown): value is JSONRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof RawNumber);
}

/**
 * A number whose JSON text a JavaScript number would change (`12345678901234567890`,
 * `1.0`): shown as written, never rounded.
 */
class RawNumber {
  constructor(readonly source: string) {}
}

type SourceReviver = (key: string, value: unknown, context?: { source?: string }) => unknown;

const keepNumbers: SourceReviver = (_key, value, context) =>
  typeof value === 'number' && context?.source !== undefined && context.source !== String(value)
    ? new RawNumber(context.source)
    : value;

/** Whether JSON.parse tells a reviver the source text (Chrome 114+, Firefox 135+, ...). */
const SOURCE_TEXT = ((): boolean => {
  let seen = false;
  const probe: SourceReviver = (_key, value, context) => {
    seen = seen || context?.source === '1';
    return value;
  };
  JSON.parse('[1]', probe as (key: string, value: unknown) => unknown);
  return seen;
})();

/** An observation's output as JSON, when it is an object or an array. */
function parseJsonOutput(output: unknown): { value: unknown } | null {
  if (typeof output === 'object' && output !== null) {
    return { value: output };
  }
  if (typeof output !== 'string' || output.length > JSON_MAX_CHARS) {
    return null;
  }
  const trimmed = output.trim();
  if (!(trimmed.startsWith('{') || trimmed.startsWith('['))) {
    return null;
  }
  if (!SOURCE_TEXT && /\d{16}/.test(trimmed)) {
    return null; // long numbers would be rounded: keep the text as it is
  }
  try {
    const value: unknown = JSON.parse(trimmed, keepNumbers as (key: string, value: unknown) => unknown);
    return typeof value === 'object' && value !== null ? { value } : null;
  } catch {
    return null;
  }
}

/** The columns of a list of records (the keys, in order of appearance), or null. */
function recordColumns(value: unknown): string[] | null {
  if (!Array.isArray(value) || !value.length || !value.every(isPlainRecord)) {
    return null;
  }
  const columns = new Set<string>();
  for (const row of value as JSONRecord[]) {
    for (const key of Object.keys(row)) {
      columns.add(key);
      if (columns.size > TABLE_MAX_COLUMNS) {
        return null;
      }
    }
  }
  return columns.size ? Array.from(columns) : null;
}

function compactJson(value: unknown): string {
  if (value instanceof RawNumber) {
    return value.source;
  }
  if (Array.isArray(value)) {
    return `[${value.map(compactJson).join(',')}]`;
  }
  if (isPlainRecord(value)) {
    const members = Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}:${compactJson(item)}`);
    return `{${members.join(',')}}`;
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** A JSON value as DOM: containers as `<details>` (large ones start closed). */
function jsonNode(value: unknown, depth: number): HTMLElement {
  if (value === null || typeof value !== 'object' || value instanceof RawNumber) {
    const kind = value === null ? 'null' : value instanceof RawNumber ? 'number' : typeof value;
    const node = el('span', `ak-json-${kind}`);
    node.append(...textNodes(compactJson(value)));
    return node;
  }
  const isArray = Array.isArray(value);
  const entries: [string | null, unknown][] = isArray
    ? (value as unknown[]).map(item => [null, item])
    : Object.entries(value as JSONRecord);
  const compact = compactJson(value);
  if (!entries.length || compact.length <= JSON_INLINE_CHARS) {
    const node = el('span', 'ak-json-inline');
    node.append(...textNodes(compact));
    return node;
  }
  const [open, close] = isArray ? ['[', ']'] : ['{', '}'];
  const details = el('details', 'ak-json-node');
  details.open = depth === 0 || compact.length <= JSON_OPEN_CHARS;
  const summary = el('summary', 'ak-json-summary');
  summary.append(
    el('span', 'ak-json-bracket', open),
    el('span', 'ak-json-count', ` ${plural(entries.length, isArray ? 'item' : 'key')} ${close}`)
  );
  details.append(summary);
  const children = el('div', 'ak-json-children');
  entries.forEach(([key, item], index) => {
    const row = el('div', 'ak-json-entry');
    if (key !== null) {
      const name = el('span', 'ak-json-key');
      name.append(...textNodes(JSON.stringify(key)));
      row.append(name, ': ');
    }
    row.append(jsonNode(item, depth + 1));
    if (index < entries.length - 1) {
      row.append(',');
    }
    children.append(row);
  });
  details.append(children, el('div', 'ak-json-bracket ak-json-close', close));
  return details;
}

/** A list of records as a table. */
function recordTable(rows: JSONRecord[], columns: string[]): HTMLTableElement {
  const table = el('table', 'ak-table');
  const head = el('thead');
  const headRow = el('tr');
  for (const column of columns) {
    const th = el('th');
    th.scope = 'col';
    th.append(...textNodes(column));
    headRow.append(th);
  }
  head.append(headRow);
  const body = el('tbody');
  rows.forEach((row, index) => {
    const tr = el('tr');
    if (index >= TABLE_ROWS_SHOWN) {
      tr.className = 'ak-table-more';
    }
    for (const column of columns) {
      const cell = row[column];
      const td = el('td');
      if (typeof cell === 'number' || cell instanceof RawNumber) {
        td.className = 'ak-num';
      }
      const text = cell === undefined ? '' : typeof cell === 'string' ? cell : compactJson(cell);
      td.append(...textNodes(text));
      tr.append(td);
    }
    body.append(tr);
  });
  table.append(head, body);
  return table;
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
  private readonly collapseButton: HTMLButtonElement;
  private readonly timelineNode: HTMLElement;
  private readonly inputNode: HTMLElement;
  private readonly stepsNode: HTMLOListElement;
  private readonly finalNode: HTMLElement;
  private readonly noticeNode: HTMLElement;
  private readonly warningsNode: HTMLElement;
  private readonly markdown: IMarkdownRenderer | null;
  private readonly infoListeners = new Set<(info: ITaskInfo) => void>();
  private input = '';
  private readonly times = new Map<number, IStepTime>();
  private readonly dirtyTimes = new Set<number>();
  private modelSeconds = 0;
  private toolSeconds = 0;
  /** "Collapse all" was the last choice: steps that arrive start collapsed too. */
  private collapseNew = false;
  private unreadable = 0;
  /** The step that got the latest event. */
  private lastBlock: IStepBlock | null = null;
  private missing = 0;
  private bidiSeen = false;

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
    this.markdown = options.markdown !== undefined ? options.markdown : defaultMarkdown;
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
    this.stepsCountNode.title =
      'A step is one turn of the model: its thought, its tool calls and their results. ' +
      'The last step gives the answer.';
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

    this.collapseButton = el('button', 'ak-collapse-all', 'Collapse all');
    this.collapseButton.type = 'button';
    this.collapseButton.hidden = true;
    this.collapseButton.setAttribute('aria-controls', `${id}-steps`);
    this.collapseButton.addEventListener('click', () => this.toggleAll());

    this.timelineNode = el('div', 'ak-timeline');
    this.timelineNode.hidden = true;
    this.timelineNode.setAttribute('role', 'img');
    this.timelineNode.addEventListener('click', event => this.onTimelineClick(event));

    header.append(
      title,
      this.statusNode,
      meta,
      this.connectionNode,
      this.collapseButton,
      this.cancelButton,
      this.timelineNode
    );

    this.inputNode = el('div', 'ak-input');
    this.inputNode.hidden = true;

    this.stepsNode = el('ol', 'ak-steps');
    this.stepsNode.id = `${id}-steps`;
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

    this.warningsNode = el('div', 'ak-warnings');
    this.warningsNode.hidden = true;

    root.append(
      header,
      this.warningsNode,
      this.inputNode,
      this.stepsNode,
      this.finalNode,
      this.noticeNode
    );
    root.addEventListener('click', event => this.onCopyClick(event));
    this.node = root;
  }

  /**
   * Call `listener` with the task's agent and input now (if known) and whenever
   * they change, e.g. to title a tab. Returns a function that stops it.
   */
  onInfo(listener: (info: ITaskInfo) => void): () => void {
    this.infoListeners.add(listener);
    if (this.agent || this.input) {
      listener({ agent: this.agent, input: this.input });
    }
    return () => this.infoListeners.delete(listener);
  }

  private emitInfo(): void {
    const info = { agent: this.agent, input: this.input };
    for (const listener of this.infoListeners) {
      listener(info);
    }
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
    this.infoListeners.clear();
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
      this.setStatus(TaskStatus.RUNNING);
    }
  }

  // -- ITaskSink ---------------------------------------------------------------

  onTask(task: ITask): void {
    if (task.agent) {
      this.setAgent(task.agent);
    }
    if (typeof task.input === 'string' && task.input && task.input !== this.input) {
      this.input = task.input;
      this.inputNode.replaceChildren(...this.show(task.input));
      this.inputNode.hidden = false;
      this.emitInfo();
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
      (this.status === 'unknown' || this.status === TaskStatus.QUEUED)
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

  onUnreadable(detail: string): void {
    if (this.disposed) {
      return;
    }
    this.unreadable += 1;
    const notice = el('div', 'ak-unreadable-step');
    notice.append(
      this.callout(
        'ak-unreadable',
        'Unreadable step',
        'A message of this run could not be read, so what it says is not shown here.'
      )
    );
    if (detail) {
      const raw = el('pre', 'ak-args ak-unreadable-raw');
      raw.append(...this.show(detail));
      notice.append(raw);
    }
    // Where it arrived: after what the latest step shows (a result that follows it
    // then comes below it, not above), or as an entry of its own.
    if (this.lastBlock && this.lastBlock.node.isConnected) {
      this.lastBlock.body.append(notice);
    } else {
      const node = el('li', 'ak-step ak-step--unreadable');
      const body = el('div', 'ak-step-body');
      body.append(notice);
      node.append(el('div', 'ak-step-label', '?'), body);
      this.appendStep(node);
    }
    this.warn(
      'unreadable',
      `${plural(this.unreadable, 'message')} of this run could not be read: marked "Unreadable step" below.`,
      'error'
    );
    this.scheduleRefresh();
  }

  onGap(after: number, next: number): void {
    if (this.disposed || next <= after + 1) {
      return;
    }
    const count = next - after - 1;
    this.missing += count;
    this.lastBlock = null;
    const node = el('li', 'ak-step ak-step--gap');
    node.append(el('div', 'ak-step-label', '…'));
    const body = el('div', 'ak-step-body');
    body.append(
      this.callout(
        'ak-gap',
        'Not shown',
        after === 0
          ? `The start of this run (${plural(count, 'message')}) is no longer held by the server.`
          : `${plural(count, 'message')} of this run (${after + 1}–${next - 1}) could not be shown.`
      )
    );
    node.append(body);
    this.appendStep(node);
    this.warn(
      'gap',
      `This view does not show everything: ${plural(this.missing, 'message')} of the run ` +
        'are missing (the server no longer holds them).',
      'warning'
    );
    this.scheduleRefresh();
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

  private onStep(event: IStepEventData): void {
    const data = event.data;
    const previous = this.lastEventAt;
    this.noteTime(event.timestamp);
    this.noteStepTime(event.step, event.event_type, event.timestamp, previous);
    if (event.step > this.maxStep) {
      this.maxStep = event.step;
    }
    if (this.status === 'unknown' || this.status === TaskStatus.QUEUED) {
      this.setStatus(TaskStatus.RUNNING);
    }
    const block = this.block(event.step);
    this.lastBlock = block;
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
        this.showFinal(asText(data.output), event.step);
        if (typeof data.total_tokens === 'number') {
          this.totalTokens = data.total_tokens;
        }
        break;
      case 'error': {
        this.markDraftInterrupted(block);
        const code = typeof data.code === 'string' ? ` (${data.code})` : '';
        block.body.append(this.callout('ak-error', 'Error', asText(data.message) + code));
        block.node.classList.add('ak-step--error');
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
    if (data.truncated === true || typeof data.truncated === 'number') {
      // The stream carries a shortened copy of a large event.
      const original = typeof data.original_size === 'number' ? ` (${plural(data.original_size, 'character')} in full)` : '';
      block.body.append(
        this.callout('ak-truncated', 'Shortened', `This event was cut short for the stream${original}.`)
      );
      this.warn('truncated', 'This view does not show everything: some events were cut short for the stream.', 'warning');
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
    if (
      data.status === TaskStatus.SUCCEEDED &&
      !this.finalShown &&
      typeof data.output === 'string'
    ) {
      this.showFinal(data.output, this.maxStep);
    }
    if (data.status === TaskStatus.FAILED && !this.errorShown) {
      this.showNotice(errorText(data.error) || 'The run failed.', 'error');
    }
    if (data.status === TaskStatus.INTERRUPTED) {
      // Restored after a server restart: what it did is shown, but it ended unfinished.
      this.showNotice(errorText(data.error) || 'The run was interrupted.', 'warning');
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
      const toggle = el('button', 'ak-step-label ak-step-toggle', `Step ${step}`);
      toggle.type = 'button';
      toggle.setAttribute('aria-expanded', 'true');
      const body = el('div', 'ak-step-body');
      body.id = `${this.idPrefix}-step-${step}`;
      toggle.setAttribute('aria-controls', body.id);
      const summary = el('div', 'ak-step-summary');
      summary.hidden = true;
      node.append(toggle, body, summary);
      this.appendStep(node);
      block = { node, toggle, body, summary, draft: null, draftNode: null };
      this.blocks.set(step, block);
      this.collapseButton.hidden = false;
      if (this.collapseNew) {
        this.setCollapsed(block, true);
      }
    }
    return block;
  }

  private setCollapsed(block: IStepBlock, collapsed: boolean): void {
    block.node.classList.toggle('ak-step--collapsed', collapsed);
    block.toggle.setAttribute('aria-expanded', String(!collapsed));
    block.body.hidden = collapsed;
    block.summary.hidden = !collapsed;
    if (collapsed) {
      const calls = Array.from(block.body.querySelectorAll('.ak-tool-name'), node => node.textContent ?? '');
      const errors = block.body.querySelectorAll('.ak-error, .ak-observation--error').length;
      const parts: string[] = [];
      if (calls.length) {
        parts.push(`${plural(calls.length, 'tool call')}: ${calls.join(', ')}`);
      } else if (block.body.querySelector('.ak-thought')) {
        parts.push('a thought');
      }
      if (errors) {
        parts.push(plural(errors, 'error'));
      }
      block.summary.textContent = parts.join(' · ') || 'collapsed';
    }
  }

  private toggleAll(): void {
    const collapse = this.collapseButton.textContent === 'Collapse all';
    this.collapseNew = collapse;
    for (const block of this.blocks.values()) {
      this.setCollapsed(block, collapse);
    }
    this.collapseButton.textContent = collapse ? 'Expand all' : 'Collapse all';
  }

  private onTimelineClick(event: MouseEvent): void {
    const target = event.target instanceof Element ? event.target.closest('.ak-tl-step') : null;
    const step = target instanceof HTMLElement ? Number(target.dataset.step) : NaN;
    const block = this.blocks.get(step);
    if (!block) {
      return;
    }
    this.setCollapsed(block, false);
    this.stickToBottom = false;
    block.node.scrollIntoView({ block: 'nearest' });
    block.toggle.focus();
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
    if (hasBidi(delta)) {
      this.noteBidi();
      delta = revealBidi(delta);
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
      const node = block.draftNode;
      node.classList.remove('ak-streaming');
      block.draft = null;
      block.draftNode = null;
      this.renderMarkdown(node, text);
      return;
    }
    if (text) {
      const node = el('div', 'ak-thought');
      this.renderMarkdown(node, text);
      block.body.append(node);
    }
  }

  /** Untrusted markdown, sanitized by the renderer; plain text until it is done (or without one). */
  private renderMarkdown(host: HTMLElement, text: string): void {
    host.replaceChildren(...this.show(text));
    const markdown = this.markdown;
    if (!markdown || !text.trim()) {
      return;
    }
    const source = revealBidi(text);
    const target = el('div', 'ak-md');
    const done = (): void => {
      this.decorate(target);
      host.replaceChildren(target);
      this.scheduleRefresh(); // taller now: keep following the end
    };
    try {
      const pending = markdown.render(source, target);
      if (pending) {
        pending.then(done, () => undefined);
      } else {
        done();
      }
    } catch {
      // The plain text stays.
    }
  }

  /** Rendered markdown: a copy button on each code block, bidi markers highlighted. */
  private decorate(root: HTMLElement): void {
    for (const pre of Array.from(root.querySelectorAll('pre'))) {
      const wrapper = el('div', 'ak-code');
      pre.replaceWith(wrapper);
      const copy = el('button', 'ak-copy', 'Copy');
      copy.type = 'button';
      copy.setAttribute('aria-label', 'Copy this code');
      wrapper.append(copy, pre);
    }
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const marked: Text[] = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node instanceof Text && /⟨U\+[0-9A-F]{4}⟩/.test(node.data)) {
        marked.push(node);
      }
    }
    for (const node of marked) {
      const parts = node.data.split(/(⟨U\+[0-9A-F]{4}⟩)/);
      node.replaceWith(
        ...parts.map((part, index) => {
          if (index % 2 === 0) {
            return document.createTextNode(part);
          }
          const marker = el('span', 'ak-bidi', part);
          marker.title = 'A bidirectional control character: invisible, it would reorder the text after it';
          return marker;
        })
      );
    }
  }

  private onCopyClick(event: MouseEvent): void {
    const target = event.target;
    if (!(target instanceof HTMLButtonElement) || !target.classList.contains('ak-copy')) {
      return;
    }
    const code = target.parentElement?.querySelector('pre')?.textContent ?? '';
    const said = (label: string): void => {
      target.textContent = label;
      window.setTimeout(() => {
        target.textContent = 'Copy';
      }, 1500);
    };
    navigator.clipboard.writeText(code).then(
      () => said('Copied'),
      () => said('Copy failed')
    );
  }

  /** Text from the run as DOM nodes, bidi controls made visible (and noted once). */
  private show(text: string): Node[] {
    if (hasBidi(text)) {
      this.noteBidi();
    }
    return textNodes(text);
  }

  private noteBidi(): void {
    if (!this.bidiSeen) {
      this.bidiSeen = true;
      this.warn(
        'bidi',
        'This run\'s text holds invisible bidirectional control characters, which can ' +
          'disguise text (a file name, a command): each is shown as a marker such as ⟨U+202E⟩.',
        'warning'
      );
    }
  }

  /** A lasting warning above the steps, one per `key` (updated in place). */
  private warn(key: string, text: string, kind: 'warning' | 'error'): void {
    let node = this.warningsNode.querySelector<HTMLElement>(`[data-key="${key}"]`);
    if (!node) {
      node = el('div', 'ak-warning');
      node.dataset.key = key;
      node.setAttribute('role', kind === 'error' ? 'alert' : 'note');
      this.warningsNode.append(node);
    }
    node.dataset.kind = kind;
    node.textContent = text;
    this.warningsNode.hidden = false;
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
    const name = el('code', 'ak-tool-name');
    name.append(...this.show(asText(data.name)));
    head.append(el('span', 'ak-call-label', 'Tool'), name);
    const args = el('pre', 'ak-args');
    args.append(...this.show(formatArguments(data.arguments)));
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
    const parsed = isError ? null : parseJsonOutput(data.output);
    const columns = parsed ? recordColumns(parsed.value) : null;
    let output: HTMLElement;
    let label = '';
    if (parsed && columns) {
      const rows = parsed.value as JSONRecord[];
      output = el('div', 'ak-output ak-table-wrap');
      output.append(recordTable(rows, columns));
      output.dataset.format = 'table';
      if (rows.length > TABLE_ROWS_SHOWN) {
        label = `Show all (${plural(rows.length, 'row')})`;
      }
    } else if (parsed) {
      output = el('div', 'ak-output ak-json');
      output.append(jsonNode(parsed.value, 0));
      output.dataset.format = 'json';
      const lines = (compactJson(parsed.value).match(/[,[{]/g) ?? []).length + 1;
      if (lines > COLLAPSE_LINES * 2) {
        label = `Show all (${plural(lines, 'line')})`;
      }
    } else {
      output = el('pre', 'ak-output');
      output.append(...this.show(text));
      const lines = text.split('\n').length;
      if (text.length > COLLAPSE_CHARS || lines > COLLAPSE_LINES) {
        label = `Show all (${plural(lines, 'line')}, ${plural(text.length, 'character')})`;
      }
    }
    output.id = `${this.idPrefix}-out-${++this.outputs}`;
    node.append(head, output);
    if (label) {
      output.classList.add('ak-collapsed');
      const toggle = el('button', 'ak-toggle', label);
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
    if (target instanceof HTMLButtonElement && target.classList.contains('ak-step-toggle')) {
      const step = Number(target.parentElement?.dataset.step);
      const block = this.blocks.get(step);
      if (block) {
        this.setCollapsed(block, target.getAttribute('aria-expanded') === 'true');
      }
      return;
    }
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
    const body = el('span', 'ak-callout-text');
    body.append(...this.show(text));
    node.append(el('strong', 'ak-callout-label', label), body);
    return node;
  }

  private showFinal(output: string, step: number): void {
    this.finalShown = true;
    const label = el('div', 'ak-final-label', 'Answer');
    if (step > 0) {
      // The answer is the last step's (model turn's) text: it is counted in "N steps".
      label.append(el('span', 'ak-final-step', `Step ${step}`));
    }
    const text = el('div', 'ak-final-text');
    this.renderMarkdown(text, output);
    this.finalNode.replaceChildren(label, text);
    this.finalNode.hidden = false;
  }

  private showNotice(text: string, kind: 'info' | 'warning' | 'error'): void {
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
      this.emitInfo();
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
    // A focused button that becomes disabled drops the focus to the page: keep it in
    // the view, on the status that says what happened.
    const root = this.node.getRootNode();
    const focused =
      (root instanceof Document || root instanceof ShadowRoot) && root.activeElement === this.cancelButton;
    this.cancelButton.disabled = final || status === 'cancelling' || status === 'unknown';
    if (focused && this.cancelButton.disabled) {
      this.statusNode.tabIndex = -1;
      this.statusNode.focus();
    }
    this.cancelButton.textContent = status === 'cancelling' ? 'Cancelling…' : 'Cancel';
    if (final) {
      window.clearInterval(this.ticker);
      this.ticker = 0;
      this.connectionNode.textContent = '';
    } else if (!this.ticker && (status === TaskStatus.RUNNING || status === 'cancelling')) {
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

  /** Where step `step`'s time goes, from its events' timestamps (epoch seconds). */
  private noteStepTime(step: number, kind: string, at: number, previous: number | null): void {
    let time = this.times.get(step);
    if (!time) {
      // A step starts when the one before it ended (the model is asked then), the
      // first when the task started.
      const begin = step <= 1 ? (this.startedAt ?? at) : (previous ?? at);
      const node = el('span', 'ak-tl-step');
      node.dataset.step = String(step);
      const model = el('span', 'ak-tl-model');
      const tools = el('span', 'ak-tl-tools');
      node.append(model, tools);
      this.timelineNode.append(node);
      time = {
        start: Math.min(begin, at),
        firstTool: null,
        end: at,
        node,
        model,
        tools,
        shownModel: 0,
        shownTools: 0
      };
      this.times.set(step, time);
    }
    if (kind === 'tool_call' && time.firstTool === null) {
      time.firstTool = at;
    }
    time.end = Math.max(time.end, at);
    this.dirtyTimes.add(step);
  }

  private refreshTimeline(): void {
    if (!this.dirtyTimes.size) {
      return;
    }
    for (const step of this.dirtyTimes) {
      const time = this.times.get(step);
      if (!time) {
        continue;
      }
      const model = Math.max(0, (time.firstTool ?? time.end) - time.start);
      const tools = time.firstTool === null ? 0 : Math.max(0, time.end - time.firstTool);
      time.node.style.flexGrow = String(Math.max(model + tools, 0.05));
      time.model.style.flexGrow = String(model);
      time.tools.style.flexGrow = String(tools);
      this.modelSeconds += model - time.shownModel;
      this.toolSeconds += tools - time.shownTools;
      time.shownModel = model;
      time.shownTools = tools;
      time.node.title =
        `Step ${step}: model ${formatDuration(model)}` + (tools ? `, tools ${formatDuration(tools)}` : '');
    }
    this.dirtyTimes.clear();
    const model = this.modelSeconds;
    const tools = this.toolSeconds;
    this.timelineNode.setAttribute(
      'aria-label',
      `Time per step: ${plural(this.times.size, 'step')}, model ${formatDuration(model)}, tools ${formatDuration(tools)}`
    );
    this.timelineNode.title = `Model ${formatDuration(model)} · tools ${formatDuration(tools)} (click a step to show it)`;
    this.timelineNode.hidden = false;
  }

  private refresh(): void {
    const steps = this.maxStep;
    this.stepsCountNode.textContent = plural(steps, 'step');
    this.refreshTimeline();
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
