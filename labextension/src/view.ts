/**
 * TaskView: the live view of one agent task, in plain DOM.
 *
 * One class serves the anywidget (notebook output in any front end), the
 * JupyterLab mime renderer (outputs re-attached by task id) and the main-area
 * view opened from the side panel. Every event appends or patches a few nodes;
 * nothing is ever re-rendered as a whole, and the header is refreshed at most
 * once per animation frame, so thousands of steps stay smooth.
 *
 * Runs as data: the header counts tokens in and out and the cost from the
 * `usage` steps (then the result); a fork's steps copied from its parent are
 * drawn muted, with a divider where its live part begins, and a line names the
 * parent ("Compare with parent"); every step of a finished task has "Fork from
 * here" for viewers who may write, and the fork's own view opens below this one
 * (in `forksNode`, which `mount()` puts right after the view).
 */

import { ApprovalCard, ApprovalScopeValue, IApprovalHandlers } from './approval';
import { CompareView } from './compare';
import { FollowUpForm, ForkForm, IForkCall, IForkPoint } from './fork';
import {
  asText,
  formatArguments,
  formatCost,
  formatDuration,
  formatMillis,
  plural,
  shortId,
  UNKNOWN_COST
} from './format';
import {
  ControlMessage,
  ForkKind,
  IApproveMessage,
  IBudgetData,
  IConnectedMessage,
  IErrorData,
  IForkEdit,
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
import { API_PREFIX, EventType, TRUNCATED_KEY } from './protocol.generated';
import type { IToolProgressData, ITruncation } from './protocol.generated';
import { el } from './dom';
import { ConnectionState, IForked, ITaskBackend, ITaskSink, ITaskSubscription } from './stream';
import { hasBidi, revealBidi, textNodes } from './text';
import { LiveToolOutput } from './tool-output';

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
  /**
   * This view shows a fork that the view of `parentId` just made, from its step
   * `step` (the record says the parent too; this says the step at once).
   */
  forkOf?: { parentId: string; step: number | null; followUp?: boolean };
  /** Open another task (a fork's parent) where the host shows tasks: a main-area tab. */
  openTask?: (taskId: string) => void;
}

/** Tokens in and out and the cost (null: a price that is not known). */
interface IUsage {
  tokensIn: number;
  tokensOut: number;
  cost: number | null;
}

/**
 * The events that end a run, as fork points: that step is asked again. (A fork's
 * copied `final_answer`, which a follow-up copies, ends nothing: a run ends with
 * its `result` message, which is never copied.)
 */
const TERMINAL_EVENTS: ReadonlySet<string> = new Set([
  EventType.FINAL_ANSWER,
  EventType.ERROR,
  EventType.CANCELLED
]);

type ViewStatus = TaskStatus | 'cancelling' | 'unknown';

interface IStepBlock {
  node: HTMLLIElement;
  toggle: HTMLButtonElement;
  body: HTMLDivElement;
  summary: HTMLElement;
  /** "Fork from here" (finished tasks, viewers who may write) and its form. */
  actions: HTMLElement;
  forkButton: HTMLButtonElement;
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
  [TaskStatus.WAITING]: 'Waiting for approval',
  [TaskStatus.PAUSED]: 'Paused',
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

/** A pause, resume or step sent and not yet seen on the stream. */
type RunCommand = 'pause' | 'resume' | 'step';

/** How long a pause or resume waits for its step before the button works again. */
const COMMAND_TIMEOUT_MS = 15_000;

let counter = 0;

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

export class TaskView implements ITaskSink {
  /** The view's root (`data-task-id`, `data-status`, ...). */
  readonly node: HTMLElement;
  /**
   * The views of the forks made from this one: a host puts it right after `node`
   * (`mount()` does both). Hidden until there is a fork.
   */
  readonly forksNode: HTMLElement;
  readonly taskId: string;

  private readonly backend: ITaskBackend;
  private subscription: ITaskSubscription | null = null;

  private readonly agentNode: HTMLElement;
  private readonly statusNode: HTMLElement;
  private readonly stepsCountNode: HTMLElement;
  private readonly tokensNode: HTMLElement;
  private readonly costNode: HTMLElement;
  private readonly elapsedNode: HTMLElement;
  private readonly connectionNode: HTMLElement;
  private readonly cancelButton: HTMLButtonElement;
  private readonly pauseButton: HTMLButtonElement;
  private readonly resumeButton: HTMLButtonElement;
  private readonly stepButton: HTMLButtonElement;
  /** Pause, Resume, Step and Cancel: shown only to a viewer who may write. */
  private readonly controlsNode: HTMLElement;
  private readonly collapseButton: HTMLButtonElement;
  private readonly timelineNode: HTMLElement;
  private readonly inputNode: HTMLElement;
  private readonly stepsNode: HTMLOListElement;
  private readonly finalNode: HTMLElement;
  private readonly noticeNode: HTMLElement;
  private readonly warningsNode: HTMLElement;
  /** A fork's line: "Forked from <parent> at step k", "Compare with parent". */
  private readonly forkInfoNode: HTMLElement;
  /** "Imported from analysis.ipynb": a run loaded from a notebook. */
  private readonly importedNode: HTMLElement;
  private readonly compareSlot: HTMLElement;
  private readonly forks: TaskView[] = [];
  private readonly markdown: IMarkdownRenderer | null;
  private readonly openTask: ((taskId: string) => void) | null;
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
  /** Events shown cut by the server (a `truncated` marker) and not loaded whole. */
  private cuts = 0;

  private readonly blocks = new Map<number, IStepBlock>();
  /** The group new steps go into (a list item holding a list; see STEPS_PER_GROUP). */
  private group: HTMLOListElement | null = null;
  private readonly calls = new Map<string, HTMLElement>();
  /** Streamed tool output: each call's live output and progress, by call id. */
  private readonly liveOutputs = new Map<string, LiveToolOutput>();
  /** Live outputs with pieces not yet in the DOM (written once per frame, in `refresh`). */
  private readonly dirtyLive = new Set<LiveToolOutput>();
  /** Human in the loop: the approval card of each call that asked, by call id. */
  private readonly approvals = new Map<string, ApprovalCard>();
  /** Whether this viewer may cancel, decide, pause, resume (null: not told yet). */
  private writable: boolean | null = null;
  private pendingCommand: RunCommand | null = null;
  /** A step was asked for and its `resumed` arrived: the next `paused` ends it. */
  private stepResumed = false;
  private commandTimer = 0;
  private readonly approvalHandlers: IApprovalHandlers = {
    approve: (callId, args, scope) => this.approve(callId, args ?? undefined, scope),
    reject: (callId, reason) => this.reject(callId, reason)
  };
  private status: ViewStatus = 'unknown';
  private agent = '';
  private maxStep = 0;
  private runningTokens = 0;
  private totalTokens: number | null = null;
  /** What this run's own model calls used, from its `usage` steps (none seen: null). */
  private liveUsage: IUsage | null = null;
  /** What a fork's copied `usage` steps say its parent spent on the copied part. */
  private copiedUsage: IUsage | null = null;
  /** The record's figures (used until `usage` steps arrive) and the result's (final). */
  private recordUsage: IUsage | null = null;
  private resultUsage: IUsage | null = null;
  private budget: IBudgetData | null = null;
  /** Runs as data: where each step can be forked, by step. */
  private readonly forkPoints = new Map<number, IForkPoint>();
  private readonly forkCalls = new Map<string, IForkCall>();
  private forkForm: ForkForm | null = null;
  /** The "Fork from here" button whose form is open. */
  private forkFormButton: HTMLButtonElement | null = null;
  /** A fork asked for and not answered yet (its refusal is the form's to show). */
  private forking = false;
  private readonly finalForkButton: HTMLButtonElement;
  /** The step of the final answer (its fork point). */
  private finalStep = 0;
  /** The seq of this run's own (not copied) `final_answer`: where a follow-up forks. */
  private finalAnswerSeq = 0;
  /** "Ask a follow-up…" under a succeeded run's answer (viewers who may fork). */
  private readonly followUpNode: HTMLElement;
  private followUpForm: FollowUpForm | null = null;
  /** This run is a follow-up: a fork that copied its parent's answer and asks on. */
  private followUp = false;
  /** A fork's parent, as far as known, and how it was made. */
  private parentId: string | null = null;
  private forkedAtSeq: number | null = null;
  private forkKind: string | null = null;
  private forkStep: number | null = null;
  private forkTextNode: HTMLElement | null = null;
  private forkCopiedNode: HTMLElement | null = null;
  private compareButton: HTMLButtonElement | null = null;
  private compareOpen = false;
  /** Steps with events copied from the parent; whether the live part has begun. */
  private readonly copiedSteps = new Set<number>();
  private liveMarked = false;
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
    this.openTask = options.openTask ?? null;
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
    this.costNode = el('span', 'ak-meta-cost', '');
    this.elapsedNode = el('span', 'ak-meta-elapsed', '');
    this.elapsedNode.setAttribute('title', 'Elapsed time');
    meta.append(this.stepsCountNode, this.tokensNode, this.costNode, this.elapsedNode);

    this.connectionNode = el('span', 'ak-connection', '');
    this.connectionNode.dataset.state = 'connecting';

    this.cancelButton = el('button', 'ak-cancel', 'Cancel');
    this.cancelButton.type = 'button';
    this.cancelButton.setAttribute('aria-label', 'Cancel this agent run');
    this.cancelButton.disabled = true;
    this.cancelButton.addEventListener('click', () => void this.cancel());

    this.pauseButton = this.controlButton(
      'ak-pause',
      'Pause',
      'Pause this agent run',
      'Pause before the next model or tool call (a call in flight finishes)',
      () => void this.pause()
    );
    this.resumeButton = this.controlButton(
      'ak-resume',
      'Resume',
      'Resume this agent run',
      'Go on running',
      () => void this.resume()
    );
    this.stepButton = this.controlButton(
      'ak-single-step',
      'Step',
      'Step: run one more model or tool call, then pause',
      'Run one more model or tool call, then pause again',
      () => void this.resume(1)
    );
    this.controlsNode = el('span', 'ak-run-controls');
    this.controlsNode.setAttribute('role', 'group');
    this.controlsNode.setAttribute('aria-label', 'Run controls');
    this.controlsNode.hidden = true;
    this.pauseButton.hidden = this.resumeButton.hidden = this.stepButton.hidden = true;
    this.controlsNode.append(this.pauseButton, this.resumeButton, this.stepButton, this.cancelButton);

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
      this.controlsNode,
      this.timelineNode
    );

    this.inputNode = el('div', 'ak-input');
    this.inputNode.hidden = true;
    this.importedNode = el('div', 'ak-imported');
    this.importedNode.hidden = true;

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

    this.forkInfoNode = el('div', 'ak-fork-info');
    this.forkInfoNode.hidden = true;
    this.compareSlot = el('div', 'ak-compare-slot');
    this.compareSlot.id = `${id}-compare`;
    this.compareSlot.hidden = true;

    this.finalForkButton = this.forkOpenButton();
    this.finalForkButton.addEventListener('click', () => this.openForkForm(this.finalStep, this.finalNode));

    this.followUpNode = el('div', 'ak-follow-up-slot');
    this.followUpNode.hidden = true;

    root.append(
      header,
      this.forkInfoNode,
      this.compareSlot,
      this.warningsNode,
      this.importedNode,
      this.inputNode,
      this.stepsNode,
      this.finalNode,
      this.followUpNode,
      this.noticeNode
    );
    root.addEventListener('click', event => this.onCopyClick(event));
    this.node = root;
    this.forksNode = el('div', 'ak-forks');
    this.forksNode.setAttribute('role', 'region');
    this.forksNode.setAttribute('aria-label', 'Forks of this run');
    this.forksNode.hidden = true;
    if (options.forkOf) {
      this.forkStep = options.forkOf.step;
      this.followUp = options.forkOf.followUp === true;
      this.setParent(options.forkOf.parentId, null, ForkKind.FORK);
    }
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

  /** Put the view, and below it the views of its forks, at the end of `host`. */
  mount(host: HTMLElement): this {
    host.append(this.node, this.forksNode);
    return this;
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
    window.clearTimeout(this.commandTimer);
    for (const card of this.approvals.values()) {
      card.dispose();
    }
    for (const fork of this.forks) {
      fork.dispose();
    }
  }

  /** Ask the server to stop the run. */
  async cancel(): Promise<void> {
    if (!this.subscription || isFinal(this.status)) {
      return;
    }
    const before = this.status;
    this.setStatus('cancelling');
    try {
      await this.subscription.cancel();
    } catch (reason) {
      this.showNotice(`Could not cancel: ${errorText(reason instanceof Error ? reason.message : reason)}`, 'error');
      this.setStatus(before === 'cancelling' || before === 'unknown' ? TaskStatus.RUNNING : before);
    }
  }

  /** Pause the run before its next model or tool call (a call in flight finishes). */
  pause(): Promise<void> {
    return this.sendCommand({ type: 'pause' }, 'pause');
  }

  /** Resume a paused run; with `steps`, run that many model or tool calls, then pause. */
  resume(steps?: number): Promise<void> {
    return this.sendCommand(steps ? { type: 'resume', steps } : { type: 'resume' }, steps ? 'step' : 'resume');
  }

  /**
   * Approve the pending call `callId`, with edited `args` if given; `scope: "task"`
   * also approves the tool's later calls in this task. Resolves once sent: the
   * decision shows when its step arrives, a refusal on the call's card.
   */
  approve(callId: string, args?: JSONRecord, scope: ApprovalScopeValue = 'once'): Promise<void> {
    if (!this.subscription) {
      return Promise.reject(new Error('Not connected to the task.'));
    }
    const command: IApproveMessage = { type: 'approve', call_id: callId, scope };
    if (args) {
      command.arguments = args;
    }
    return this.subscription.control(command);
  }

  /** Reject the pending call `callId`; the agent reads `reason` as the call's result. */
  reject(callId: string, reason = ''): Promise<void> {
    if (!this.subscription) {
      return Promise.reject(new Error('Not connected to the task.'));
    }
    return this.subscription.control({ type: 'reject', call_id: callId, reason: reason || null });
  }

  // -- ITaskSink ---------------------------------------------------------------

  onTask(task: ITask): void {
    if (task.agent) {
      this.setAgent(task.agent);
    }
    if (typeof task.parent_id === 'string' && task.parent_id) {
      this.setParent(
        task.parent_id,
        typeof task.forked_at_seq === 'number' ? task.forked_at_seq : null,
        typeof task.fork_kind === 'string' ? task.fork_kind : ForkKind.FORK
      );
    }
    if (typeof task.tokens_in === 'number' || typeof task.tokens_out === 'number') {
      this.recordUsage = {
        tokensIn: typeof task.tokens_in === 'number' ? task.tokens_in : 0,
        tokensOut: typeof task.tokens_out === 'number' ? task.tokens_out : 0,
        cost: typeof task.cost === 'number' ? task.cost : null
      };
    }
    if (task.budget && typeof task.budget === 'object') {
      this.budget = task.budget;
    }
    const from = task.imported_from;
    if (from && typeof from === 'object' && this.importedNode.hidden) {
      const source = typeof from.source === 'string' && from.source ? from.source : 'a notebook';
      const there = typeof from.task_id === 'string' ? from.task_id : '';
      this.importedNode.textContent =
        `Imported from ${revealBidi(source)}${there ? ` (task ${there} there)` : ''}` +
        (from.cut ? ': the notebook held only part of its log' : '');
      this.importedNode.hidden = false;
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
    this.setWritable(message.can_write !== false);
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
    if (state === 'relay' && this.writable === null) {
      // The kernel carries the stream, and commands, with its own credentials.
      this.setWritable(true);
    }
    this.connectionNode.title = detail ?? '';
    if (this.subscription) {
      this.node.dataset.mode = this.subscription.mode;
    }
    this.updateCompareButton();
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
      this.onStep(message.data, message.seq);
    }
    this.scheduleRefresh();
  }

  // -- events ------------------------------------------------------------------

  private onStep(event: IStepEventData, seq: number): void {
    const data = event.data;
    const copied = event.copied === true;
    if (!copied) {
      // A fork's copied events are its parent's past: they took none of this run's time.
      const previous = this.lastEventAt;
      this.noteTime(event.timestamp);
      this.noteStepTime(event.step, event.event_type, event.timestamp, previous);
    }
    if (this.status === 'unknown' || this.status === TaskStatus.QUEUED) {
      this.setStatus(TaskStatus.RUNNING);
    }
    this.noteForkPoint(event, seq);
    if (event.event_type === 'usage') {
      // Not a step of its own: what the step's model call used.
      this.addUsage(event.step, data, copied);
      return;
    }
    if (event.step > this.maxStep) {
      this.maxStep = event.step;
    }
    const fresh = !this.blocks.has(event.step);
    const block = this.block(event.step);
    this.lastBlock = block;
    let added: Element | null = null;
    switch (event.event_type) {
      case 'token':
        added = this.appendDraft(block, asText(data.delta));
        break;
      case 'thought':
        added = this.addThought(block, asText(data.text));
        this.countUsage(data.usage);
        break;
      case 'tool_call':
        added = this.addToolCall(block, data);
        break;
      case 'observation':
        added = this.addObservation(block, data);
        break;
      case 'final_answer':
        if (copied) {
          // A follow-up's copy of its parent's answer: part of the conversation
          // above, drawn in its step; this run's own answer comes live.
          added = this.addCopiedAnswer(block, asText(data.output));
          break;
        }
        this.dropDraft(block);
        this.finalAnswerSeq = seq;
        this.showFinal(asText(data.output), event.step);
        if (typeof data.total_tokens === 'number') {
          this.totalTokens = data.total_tokens;
        }
        break;
      case EventType.TOOL_OUTPUT:
      case EventType.TOOL_PROGRESS:
        added = this.addLiveOutput(block, event.event_type, data);
        break;
      case 'error': {
        this.markDraftInterrupted(block);
        const code = typeof data.code === 'string' ? ` (${data.code})` : '';
        added = this.callout('ak-error', 'Error', asText(data.message) + code);
        block.body.append(added);
        block.node.classList.add('ak-step--error');
        this.errorShown = true;
        break;
      }
      case 'cancelled': {
        this.markDraftInterrupted(block);
        const budget = data.code === 'budget_exceeded';
        added = this.callout(
          'ak-cancelled',
          budget ? 'Stopped by its budget' : 'Cancelled',
          asText(data.message) || asText(data.reason) || 'The run was cancelled.'
        );
        block.body.append(added);
        break;
      }
      case 'approval_requested':
        added = this.addApproval(block, data, event.timestamp);
        break;
      case 'approval_decided':
        this.decideApproval(block, data);
        break;
      case 'paused':
      case 'resumed':
        added = this.addPauseEvent(block, event.event_type, data);
        break;
      default:
        added = this.callout('ak-other', event.event_type, asText(data));
        block.body.append(added);
        break;
    }
    this.markCopied(block, event.step, added, copied, fresh, event.event_type);
    if (event.event_type === EventType.TOOL_OUTPUT || event.event_type === EventType.TOOL_PROGRESS) {
      return; // (a piece the server cut is said by its live output: "the output was cut")
    }
    if (data.truncated === true || typeof data.truncated === 'number') {
      // The stream carries a shortened copy of a large event.
      const original = typeof data.original_size === 'number' ? ` (${plural(data.original_size, 'character')} in full)` : '';
      block.body.append(
        this.callout('ak-truncated', 'Shortened', `This event was cut short for the stream${original}.`)
      );
      this.warn('truncated', 'This view does not show everything: some events were cut short for the stream.', 'warning');
    }
    this.noteCut(block, event.event_type, event.step, data);
  }

  private onResult(message: IResultMessage): void {
    const data = message.data;
    if (typeof data.total_tokens === 'number') {
      this.totalTokens = data.total_tokens;
    }
    const usage = data.usage;
    if (usage && (typeof usage.prompt_tokens === 'number' || typeof usage.completion_tokens === 'number')) {
      // The run's own figures, final (a result without `cost` keeps what the steps said).
      this.resultUsage = {
        tokensIn: usage.prompt_tokens ?? 0,
        tokensOut: usage.completion_tokens ?? 0,
        cost: data.cost !== undefined ? data.cost : (this.liveUsage?.cost ?? null)
      };
    }
    if (data.code === 'budget_exceeded') {
      this.showNotice(`Stopped by its budget${data.reason ? `: ${data.reason}` : '.'}`, 'warning');
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
      this.noteCut(null, 'result', this.maxStep, data as unknown as JSONRecord);
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
    for (const live of this.liveOutputs.values()) {
      this.finishLive(live, 'ended');
    }
    this.endApprovals(
      data.status === TaskStatus.INTERRUPTED
        ? 'The run was interrupted while this call waited: it did not run.'
        : 'The run ended while this call waited: it did not run.'
    );
    this.clearCommand();
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
      const actions = el('div', 'ak-step-actions');
      const forkButton = this.forkOpenButton();
      forkButton.hidden = !this.canFork();
      forkButton.addEventListener('click', () => this.openForkForm(step, actions));
      actions.append(forkButton);
      node.append(toggle, body, summary, actions);
      this.appendStep(node);
      block = { node, toggle, body, summary, actions, forkButton, draft: null, draftNode: null };
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
      const errors = block.body.querySelectorAll(
        '.ak-error, .ak-observation--error:not(.ak-observation--rejected)'
      ).length;
      const waiting = block.body.querySelectorAll('.ak-approval[data-state="pending"]').length;
      const rejected = block.body.querySelectorAll('.ak-observation--rejected').length;
      const parts: string[] = [];
      if (calls.length) {
        parts.push(`${plural(calls.length, 'tool call')}: ${calls.join(', ')}`);
      } else if (block.body.querySelector('.ak-thought')) {
        parts.push('a thought');
      }
      if (waiting) {
        parts.push(`${waiting} waiting for approval`);
      }
      if (rejected) {
        parts.push(`${rejected} not run`);
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

  /** Returns the draft's node when this delta started it. */
  private appendDraft(block: IStepBlock, delta: string): HTMLElement | null {
    if (!delta) {
      return null;
    }
    if (hasBidi(delta)) {
      this.noteBidi();
      delta = revealBidi(delta);
    }
    let started: HTMLElement | null = null;
    if (!block.draft || !block.draftNode) {
      const node = el('div', 'ak-thought ak-streaming');
      const text = document.createTextNode('');
      node.append(text);
      block.body.append(node);
      block.draft = text;
      block.draftNode = node;
      started = node;
    }
    block.draft.appendData(delta);
    return started;
  }

  /** Returns the thought's node when it is new (not its own draft's). */
  private addThought(block: IStepBlock, text: string): HTMLElement | null {
    if (block.draftNode) {
      const node = block.draftNode;
      node.classList.remove('ak-streaming');
      block.draft = null;
      block.draftNode = null;
      this.renderMarkdown(node, text);
      return null;
    }
    if (text) {
      const node = el('div', 'ak-thought');
      this.renderMarkdown(node, text);
      block.body.append(node);
      return node;
    }
    return null;
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

  private addToolCall(block: IStepBlock, data: JSONRecord): HTMLElement {
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
      this.liveOutputs.delete(callId); // (a call announced again: its output starts anew)
    }
    return node;
  }

  private addObservation(block: IStepBlock, data: JSONRecord): HTMLElement {
    const callId = typeof data.call_id === 'string' ? data.call_id : '';
    const isError = data.is_error === true;
    // A call a person rejected (or nobody decided in time) did not run: not a tool error.
    const notRun = isError && (data.error_code === 'rejected' || data.error_code === 'timed_out');
    const node = el('div', isError ? 'ak-observation ak-observation--error' : 'ak-observation');
    if (notRun) {
      node.classList.add('ak-observation--rejected');
    }
    const head = el('div', 'ak-observation-head');
    head.append(el('span', 'ak-observation-label', notRun ? 'Not run' : isError ? 'Tool error' : 'Result'));
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
    const live = callId ? this.liveOutputs.get(callId) : undefined;
    if (live) {
      // The output streamed so far stays above the result, collapsed; the bar goes.
      this.finishLive(live, 'done');
    }
    return node;
  }

  /**
   * `tool_output` / `tool_progress` of a running call: its live output under the
   * call's card (in the step without one). Returns the node when this event made it.
   * The text reaches the DOM in `refresh`, once per frame.
   */
  private addLiveOutput(block: IStepBlock, kind: string, data: JSONRecord): HTMLElement | null {
    const callId = typeof data.call_id === 'string' ? data.call_id : '';
    let live = callId ? this.liveOutputs.get(callId) : undefined;
    let made: HTMLElement | null = null;
    if (!live) {
      live = new LiveToolOutput({
        name: asText(data.name),
        idPrefix: this.idPrefix,
        show: text => this.show(text)
      });
      live.node.dataset.callId = callId;
      const call = callId ? this.calls.get(callId) : undefined;
      (call ?? block.body).append(live.node);
      if (callId) {
        this.liveOutputs.set(callId, live);
      }
      made = live.node;
    }
    if (kind === EventType.TOOL_OUTPUT) {
      // Cut by the stream's bound (`cut`), or by the server's cap on one event.
      live.append(asText(data.text), data.cut === true || isPlainRecord(data[TRUNCATED_KEY]));
    } else {
      live.progress(data as unknown as IToolProgressData);
    }
    if (live.isDirty) {
      this.dirtyLive.add(live);
    }
    return made;
  }

  private finishLive(live: LiveToolOutput, state: 'done' | 'ended'): void {
    live.finish(state);
    if (live.isDirty) {
      this.dirtyLive.add(live);
      this.scheduleRefresh();
    }
  }

  /** A follow-up's copied `final_answer` (its parent's answer), in its step. */
  private addCopiedAnswer(block: IStepBlock, output: string): HTMLElement {
    if (block.draftNode) {
      // Its streamed text, copied too: the answer takes its place.
      block.draftNode.remove();
      block.draft = null;
      block.draftNode = null;
    }
    const node = el('div', 'ak-answer-copied');
    const text = el('div', 'ak-answer-copied-text');
    this.renderMarkdown(text, output);
    node.append(el('div', 'ak-answer-copied-label', 'Answer'), text);
    block.body.append(node);
    if (!this.followUp) {
      this.followUp = true;
      this.updateForkInfo();
    }
    return node;
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

  /**
   * An event the server cut to `max_event_bytes` (its data has a `truncated` marker):
   * say "showing M of N characters" under what it shows, with "Load all", which
   * fetches the whole event (`href`) and shows it in place of the cut one.
   */
  private noteCut(block: IStepBlock | null, kind: string, step: number, data: JSONRecord): void {
    const marker = data[TRUNCATED_KEY] as ITruncation | undefined;
    if (!marker || typeof marker !== 'object' || typeof marker.href !== 'string') {
      return;
    }
    const callId = typeof data.call_id === 'string' ? data.call_id : '';
    let shown: Element | null;
    if (!block || kind === 'final_answer') {
      shown = this.finalNode.querySelector('.ak-cut') ? null : this.finalNode.lastElementChild;
    } else if (kind === 'token') {
      shown = block.draftNode;
    } else {
      shown = ((kind === 'observation' && this.calls.get(callId)) || block.body).lastElementChild;
    }
    if (!shown) {
      return;
    }
    const fields = Object.entries(marker.fields ?? {});
    const parts = fields.map(
      ([name, cut]) =>
        `showing ${cut.shown.toLocaleString()} of ${plural(cut.chars, 'character')}` +
        (fields.length > 1 || name !== 'output' ? ` (${name || 'all'})` : '')
    );
    const note = el('div', 'ak-cut');
    note.setAttribute('role', 'note');
    const text = el('span', 'ak-cut-text', `Shortened by the server: ${parts.join('; ') || 'cut'}.`);
    note.append(text);
    const sayCuts = (): void => {
      if (this.cuts) {
        this.warn(
          'cut',
          `This view does not show everything: ${plural(this.cuts, 'event')} of this run ` +
            `${this.cuts === 1 ? 'is' : 'are'} shortened by the server ("Load all" shows the whole text).`,
          'warning'
        );
      } else {
        this.warningsNode.querySelector('[data-key="cut"]')?.remove();
        this.warningsNode.hidden = !this.warningsNode.childElementCount;
      }
    };
    const settle = (): void => {
      this.cuts -= 1;
      sayCuts();
    };
    if (kind !== 'token') {
      // (A cut token is part of a draft; its thought or answer comes with its own note.)
      const load = el('button', 'ak-cut-load', 'Load all');
      load.type = 'button';
      load.addEventListener('click', () => {
        const request = this.subscription?.request;
        if (!request) {
          text.textContent = 'The whole text cannot be loaded here: this view gets the run through the kernel.';
          return;
        }
        load.disabled = true;
        load.textContent = 'Loading…';
        const path = marker.href.startsWith(API_PREFIX) ? marker.href.slice(API_PREFIX.length) : marker.href;
        request.call(this.subscription, path).then(
          whole => {
            // A step's texts are in its event's data; a result's in itself.
            const message = whole as { type?: string; data?: JSONRecord };
            const event = message.data ?? {};
            const full = (message.type === 'step' ? (event.data as JSONRecord | undefined) : event) ?? {};
            if (!block || kind === 'final_answer' || kind === 'result') {
              this.showFinal(asText(full.output), step);
            } else if (kind === 'observation') {
              const holder = shown.parentElement ?? block.body;
              this.addObservation(block, full);
              const fresh = holder.lastElementChild;
              if (fresh && fresh !== shown) {
                shown.replaceWith(fresh);
              }
            } else if (kind === 'thought') {
              this.renderMarkdown(shown as HTMLElement, asText(full.text));
            } else if (kind === 'tool_call') {
              shown.querySelector('.ak-args')?.replaceChildren(...this.show(formatArguments(full.arguments)));
            } else {
              (shown.querySelector('.ak-callout-text') ?? shown).replaceChildren(
                ...this.show(asText(full.message ?? full))
              );
            }
            note.remove();
            settle();
            this.scheduleRefresh();
          },
          (reason: unknown) => {
            load.disabled = false;
            load.textContent = 'Load all';
            text.textContent = `Could not load the whole text: ${errorText(reason instanceof Error ? reason.message : reason)}`;
          }
        );
      });
      note.append(load);
    }
    if (shown === this.finalNode.lastElementChild) {
      this.finalNode.append(note);
    } else {
      shown.after(note);
    }
    this.cuts += 1;
    sayCuts();
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
    this.finalStep = step;
    this.finalForkButton.hidden = !this.canFork() || !this.forkPoints.get(step)?.lastSeq;
    label.append(this.finalForkButton);
    this.finalNode.replaceChildren(label, text);
    this.finalNode.hidden = false;
  }

  private showNotice(text: string, kind: 'info' | 'warning' | 'error'): void {
    this.noticeNode.textContent = text;
    this.noticeNode.dataset.kind = kind;
    this.noticeNode.setAttribute('role', kind === 'error' ? 'alert' : 'note');
    this.noticeNode.hidden = false;
  }

  // -- human in the loop -------------------------------------------------------

  /** `approval_requested`: the call's card, inside the call (or the step, without one). */
  private addApproval(block: IStepBlock, data: JSONRecord, timestamp: number): HTMLElement | null {
    const callId = typeof data.call_id === 'string' ? data.call_id : '';
    if (callId && this.approvals.has(callId)) {
      return null;
    }
    const call = callId ? this.calls.get(callId) : undefined;
    const card = new ApprovalCard({
      data,
      timestamp,
      idPrefix: this.idPrefix,
      show: text => this.show(text),
      handlers: this.approvalHandlers,
      standalone: !call
    });
    card.setWritable(this.writable);
    (call ?? block.body).append(card.node);
    if (callId) {
      this.approvals.set(callId, card);
    }
    if (block.node.classList.contains('ak-step--collapsed')) {
      this.setCollapsed(block, false); // a decision to take is never folded away
    }
    this.followStatus(TaskStatus.WAITING);
    this.updatePending();
    return card.node;
  }

  /** `approval_decided`: the card says who decided what (a card of its own if none asked). */
  private decideApproval(block: IStepBlock, data: JSONRecord): void {
    const callId = typeof data.call_id === 'string' ? data.call_id : '';
    let card = callId ? this.approvals.get(callId) : undefined;
    if (!card) {
      // Decided without a request shown: approved for the task earlier, or a gap.
      const call = callId ? this.calls.get(callId) : undefined;
      const tool = call?.querySelector('.ak-tool-name')?.textContent ?? asText(data.tool);
      card = new ApprovalCard({
        data: { call_id: callId, tool, arguments: data.arguments },
        timestamp: NaN,
        idPrefix: this.idPrefix,
        show: text => this.show(text),
        handlers: this.approvalHandlers,
        standalone: !call
      });
      (call ?? block.body).append(card.node);
      if (callId) {
        this.approvals.set(callId, card);
      }
    }
    if (!card.isPending) {
      return;
    }
    if (card.decide(data)) {
      this.focusAfterDecision(card);
    }
    if (!this.pendingApprovals() && this.status === TaskStatus.WAITING) {
      this.followStatus(TaskStatus.RUNNING);
    }
    this.updatePending();
  }

  /** The run ended: the cards still pending say so. */
  private endApprovals(text: string): void {
    for (const card of this.approvals.values()) {
      if (card.isPending && card.end(text)) {
        this.focusAfterDecision(card);
      }
    }
    this.updatePending();
  }

  /** The focus was in a card just decided: to the next pending card, else its decision. */
  private focusAfterDecision(card: ApprovalCard): void {
    const pending = Array.from(this.approvals.values()).filter(other => other.isPending);
    const next =
      pending.find(
        other => card.node.compareDocumentPosition(other.node) & Node.DOCUMENT_POSITION_FOLLOWING
      ) ?? pending[0];
    if (next) {
      next.focus();
    } else {
      card.focusDecision();
    }
  }

  private pendingApprovals(): number {
    let count = 0;
    for (const card of this.approvals.values()) {
      count += card.isPending ? 1 : 0;
    }
    return count;
  }

  private updatePending(): void {
    const count = this.pendingApprovals();
    this.node.dataset.pendingApprovals = String(count);
    if (this.status === TaskStatus.WAITING) {
      this.statusNode.textContent =
        count > 1 ? `Waiting for approval (${count} calls)` : STATUS_LABEL[TaskStatus.WAITING];
    }
  }

  /** `paused` / `resumed`: a line in the step, the status, the buttons. */
  private addPauseEvent(block: IStepBlock, kind: string, data: JSONRecord): HTMLElement {
    const by = typeof data.by === 'string' && data.by ? ` by ${data.by}` : '';
    const reason = typeof data.reason === 'string' && data.reason ? `: ${data.reason}` : '';
    let line: HTMLElement;
    if (kind === 'paused') {
      line = this.callout('ak-paused', 'Paused', `Paused${by}${reason}.`);
      block.body.append(line);
      if (this.pendingCommand === 'pause' || (this.pendingCommand === 'step' && this.stepResumed)) {
        this.clearCommand();
      }
      this.followStatus(TaskStatus.PAUSED);
    } else {
      const steps = typeof data.steps === 'number' ? data.steps : null;
      const then = steps ? `, for ${plural(steps, 'more call')}, then it pauses again` : '';
      line = this.callout('ak-resumed', 'Resumed', `Resumed${by}${then}${reason}.`);
      block.body.append(line);
      if (this.pendingCommand === 'resume' || (this.pendingCommand === 'step' && steps === null)) {
        this.clearCommand();
      } else if (this.pendingCommand === 'step') {
        this.stepResumed = true;
        window.clearTimeout(this.commandTimer);
      }
      this.followStatus(this.pendingApprovals() ? TaskStatus.WAITING : TaskStatus.RUNNING);
    }
    this.updateControls();
    return line;
  }

  /** A status an event implies, unless the run is over or being cancelled. */
  private followStatus(status: ViewStatus): void {
    if (!isFinal(this.status) && this.status !== 'cancelling' && this.status !== 'unknown') {
      this.setStatus(status);
    }
  }

  onControlError(error: IErrorData): void {
    if (this.disposed || (this.forking && !error.call_id)) {
      return; // (a fork's refusal: its form says it)
    }
    const card = error.call_id ? this.approvals.get(error.call_id) : undefined;
    if (card) {
      card.showError(error.code, error.message);
    } else if (this.pendingCommand) {
      this.commandFailed(error.message);
    } else {
      this.showNotice(error.message, 'error');
    }
  }

  private setWritable(writable: boolean): void {
    if (writable === this.writable) {
      return;
    }
    this.writable = writable;
    for (const card of this.approvals.values()) {
      card.setWritable(writable);
    }
    this.updateControls();
    this.updateForkActions();
  }

  private async sendCommand(command: ControlMessage, kind: RunCommand): Promise<void> {
    if (!this.subscription || isFinal(this.status) || this.pendingCommand) {
      return;
    }
    this.pendingCommand = kind;
    this.stepResumed = false;
    window.clearTimeout(this.commandTimer);
    this.commandTimer = window.setTimeout(() => {
      if (this.pendingCommand === kind && !this.stepResumed) {
        this.commandFailed('no confirmation came from the server yet; try again.');
      }
    }, COMMAND_TIMEOUT_MS);
    this.updateControls();
    try {
      await this.subscription.control(command);
    } catch (reason) {
      if (this.pendingCommand === kind) {
        this.commandFailed(errorText(reason instanceof Error ? reason.message : reason));
      }
    }
  }

  private commandFailed(text: string): void {
    const verb = this.pendingCommand === 'pause' ? 'pause' : this.pendingCommand === 'step' ? 'step' : 'resume';
    this.clearCommand();
    this.showNotice(`Could not ${verb}: ${text}`, 'error');
    this.updateControls();
  }

  private clearCommand(): void {
    this.pendingCommand = null;
    this.stepResumed = false;
    window.clearTimeout(this.commandTimer);
  }

  private controlButton(
    className: string,
    text: string,
    label: string,
    title: string,
    onClick: () => void
  ): HTMLButtonElement {
    const button = el('button', `ak-control ${className}`, text);
    button.type = 'button';
    button.dataset.label = text;
    button.setAttribute('aria-label', label);
    button.title = title;
    button.addEventListener('click', () => {
      // aria-disabled, not disabled, while a command is on its way: the focus stays.
      if (button.getAttribute('aria-disabled') !== 'true') {
        onClick();
      }
    });
    return button;
  }

  /** Which of Pause, Resume, Step and Cancel show, and which work, now. */
  private updateControls(): void {
    const status = this.status;
    const writable = this.writable === true;
    const live = !isFinal(status) && status !== 'unknown' && status !== 'cancelling';
    const stepping = this.pendingCommand === 'step';
    const paused = status === TaskStatus.PAUSED || stepping;
    const root = this.node.getRootNode();
    const active = root instanceof Document || root instanceof ShadowRoot ? root.activeElement : null;
    this.node.dataset.writable = String(this.writable);
    this.controlsNode.hidden = !writable;
    this.cancelButton.disabled = !writable || isFinal(status) || status === 'cancelling' || status === 'unknown';
    this.pauseButton.hidden = !live || paused || status === TaskStatus.QUEUED;
    this.resumeButton.hidden = !live || !paused;
    this.stepButton.hidden = !live || !paused;
    const busy: [HTMLButtonElement, RunCommand, string][] = [
      [this.pauseButton, 'pause', 'Pausing…'],
      [this.resumeButton, 'resume', 'Resuming…'],
      [this.stepButton, 'step', 'Stepping…']
    ];
    for (const [button, kind, text] of busy) {
      button.setAttribute('aria-disabled', String(this.pendingCommand !== null));
      button.textContent = this.pendingCommand === kind ? text : (button.dataset.label ?? '');
    }
    // A focused button that goes away: the focus moves to the one that replaces it.
    if (active instanceof HTMLElement && active.hidden && this.controlsNode.contains(active)) {
      const next = [this.resumeButton, this.pauseButton, this.stepButton].find(
        button => !button.hidden && !this.controlsNode.hidden
      );
      if (next) {
        next.focus();
      } else {
        this.statusNode.tabIndex = -1;
        this.statusNode.focus();
      }
    }
  }

  // -- runs as data: usage, copies, forks --------------------------------------

  /** A `usage` step: one model call's tokens and cost (a fork's copied ones: the parent's). */
  private addUsage(step: number, data: JSONRecord, copied: boolean): void {
    const tokensIn = typeof data.prompt_tokens === 'number' ? data.prompt_tokens : 0;
    const tokensOut = typeof data.completion_tokens === 'number' ? data.completion_tokens : 0;
    const cost = typeof data.cost === 'number' && Number.isFinite(data.cost) ? data.cost : null;
    const add = (usage: IUsage | null): IUsage => ({
      tokensIn: (usage?.tokensIn ?? 0) + tokensIn,
      tokensOut: (usage?.tokensOut ?? 0) + tokensOut,
      cost: usage && usage.cost === null ? null : cost === null ? null : (usage?.cost ?? 0) + cost
    });
    if (copied) {
      this.copiedUsage = add(this.copiedUsage);
    } else {
      this.liveUsage = add(this.liveUsage);
    }
    const block = this.blocks.get(step);
    if (block) {
      const model = typeof data.model === 'string' && data.model ? ` (${data.model})` : '';
      const time = typeof data.duration_ms === 'number' ? `, ${formatMillis(data.duration_ms)}` : '';
      const estimated = data.estimated === true ? ', estimated (the call was cut)' : '';
      block.toggle.title =
        `Model call${model}: ${tokensIn.toLocaleString()} tokens in, ${tokensOut.toLocaleString()} out, ` +
        `${cost === null ? 'cost unknown' : formatCost(cost)}${time}${estimated}` +
        (copied ? ' (in the parent run: copied here)' : '');
    }
  }

  /** The header's tokens in and out and cost: the result's, else the steps', else the record's. */
  private refreshUsage(): void {
    const usage = this.resultUsage ?? this.liveUsage ?? this.recordUsage;
    if (!usage || (!usage.tokensIn && !usage.tokensOut && !usage.cost)) {
      // No usage steps (an older server or run): the total the steps and result said.
      const tokens = this.totalTokens ?? this.runningTokens;
      this.tokensNode.textContent = tokens ? `${tokens.toLocaleString()} tokens` : '';
      this.tokensNode.title = '';
      this.costNode.textContent = '';
      this.costNode.title = '';
      delete this.costNode.dataset.cost;
      return;
    }
    this.tokensNode.textContent = `${usage.tokensIn.toLocaleString()} tokens in · ${usage.tokensOut.toLocaleString()} out`;
    const lines = [
      `Tokens of this run's model calls: ${usage.tokensIn.toLocaleString()} in (prompt), ` +
        `${usage.tokensOut.toLocaleString()} out (completion)`
    ];
    const copied = this.copiedUsage;
    if (copied) {
      lines.push(
        `The steps copied from the parent used ${copied.tokensIn.toLocaleString()} in and ` +
          `${copied.tokensOut.toLocaleString()} out (${formatCost(copied.cost)}) there: not spent again.`
      );
    }
    const budget = this.budget;
    if (budget && (typeof budget.max_tokens === 'number' || typeof budget.max_cost === 'number')) {
      const limits: string[] = [];
      if (typeof budget.max_tokens === 'number') {
        limits.push(plural(budget.max_tokens, 'token'));
      }
      if (typeof budget.max_cost === 'number') {
        limits.push(formatCost(budget.max_cost));
      }
      lines.push(`Budget: ${limits.join(' or ')}`);
    }
    this.tokensNode.title = lines.join('\n');
    // An unknown cost says so ("cost —"): a bare dash would read as punctuation.
    this.costNode.textContent = usage.cost === null ? `cost ${UNKNOWN_COST}` : formatCost(usage.cost);
    this.costNode.dataset.cost = usage.cost === null ? 'unknown' : String(usage.cost);
    this.costNode.title =
      usage.cost === null
        ? 'Cost unknown: no price is known for this model (none is made up)'
        : `Cost of this run's model calls, US dollars: ${usage.cost}`;
  }

  /** Where step `event.step` can be forked: its last event, its calls and their results. */
  private noteForkPoint(event: IStepEventData, seq: number): void {
    const kind = event.event_type;
    if (kind === 'token') {
      return; // a streamed piece is no place to fork at
    }
    let point = this.forkPoints.get(event.step);
    if (!point) {
      point = { step: event.step, lastSeq: 0, terminal: false, calls: [] };
      this.forkPoints.set(event.step, point);
    }
    if (seq >= point.lastSeq) {
      point.lastSeq = seq;
      point.terminal = TERMINAL_EVENTS.has(kind);
    }
    const data = event.data;
    const callId = typeof data.call_id === 'string' ? data.call_id : '';
    if (!callId) {
      return;
    }
    const call = this.forkCalls.get(callId);
    if (kind === 'tool_call' && !call) {
      const fresh: IForkCall = {
        callId,
        name: asText(data.name),
        callSeq: seq,
        resultSeq: null,
        arguments: data.arguments,
        output: ''
      };
      point.calls.push(fresh);
      this.forkCalls.set(callId, fresh);
    } else if (kind === 'observation' && call) {
      call.resultSeq = seq;
      call.output = asText(data.output);
    } else if (kind === 'approval_requested' && call && data.schema !== undefined) {
      call.schema = data.schema;
    }
  }

  /**
   * A fork's copied event is drawn muted (`ak-copied`; a step made only of copies,
   * `ak-step--copied`); the first live event after copies gets a divider above it.
   */
  private markCopied(
    block: IStepBlock,
    step: number,
    added: Element | null,
    copied: boolean,
    fresh: boolean,
    kind: string
  ): void {
    if (copied) {
      added?.classList.add('ak-copied');
      if (fresh) {
        block.node.classList.add('ak-step--copied');
      }
      if (!this.copiedSteps.has(step)) {
        this.copiedSteps.add(step);
        this.node.dataset.copiedSteps = String(this.copiedSteps.size);
        this.updateForkInfo();
      }
      return;
    }
    if (!this.copiedSteps.size || this.liveMarked || (!added && kind !== 'final_answer')) {
      return;
    }
    this.liveMarked = true;
    const text =
      this.forkKind === ForkKind.RESUME
        ? 'Live from here: the run goes on (above: copied from the interrupted run)'
        : this.followUp
          ? 'Live from here: the follow-up (above: the conversation so far, copied from the parent run)'
          : 'Live from here (above: copied from the parent run, no model or tool call made again)';
    const question = <T extends HTMLElement>(divider: T): T => {
      if (this.followUp && this.input && this.forkKind !== ForkKind.RESUME) {
        // The conversation reads on: the question asked after the copied answer.
        const asked = el('div', 'ak-follow-up-question');
        asked.append(el('span', 'ak-follow-up-question-label', 'Follow-up: '), ...this.show(this.input));
        divider.append(asked);
      }
      return divider;
    };
    if (added && !fresh) {
      block.node.classList.replace('ak-step--copied', 'ak-step--mixed');
      block.node.classList.add('ak-step--mixed');
      const divider = question(el('div', 'ak-fork-divider', text));
      divider.setAttribute('role', 'separator');
      added.before(divider);
      return;
    }
    const divider = question(el('li', 'ak-fork-divider ak-fork-divider--step', text));
    divider.setAttribute('role', 'separator');
    if (added && block.node.parentElement) {
      block.node.before(divider);
    } else {
      this.appendStep(divider); // the answer: it shows below the steps
    }
  }

  /** Whether this viewer may fork this task now (finished, may write, a backend that can). */
  private canFork(): boolean {
    return !!this.backend.fork && this.writable === true && isFinal(this.status);
  }

  private canCompare(): boolean {
    return !!this.backend.compare && this.subscription?.mode === 'direct';
  }

  private forkOpenButton(): HTMLButtonElement {
    const button = el('button', 'ak-fork-open', 'Fork from here');
    button.type = 'button';
    button.title =
      'Start a new run from this step: copied up to here (no model or tool call), then live, ' +
      'with nothing changed or a tool result, arguments or the input changed';
    button.setAttribute('aria-expanded', 'false');
    button.hidden = true;
    return button;
  }

  /** Show "Fork from here" where a fork can be made, hide it everywhere else. */
  private updateForkActions(): void {
    const can = this.canFork();
    this.node.dataset.canFork = String(can);
    for (const [step, block] of this.blocks) {
      block.forkButton.hidden = !can || !this.forkPoints.get(step)?.lastSeq;
    }
    this.finalForkButton.hidden = !can || !this.forkPoints.get(this.finalStep)?.lastSeq;
    if (!can && this.forkForm) {
      this.closeForkForm(false);
    }
    this.updateFollowUp();
  }

  /** "Ask a follow-up…" under the answer of a succeeded run, for a viewer who may fork. */
  private updateFollowUp(): void {
    const can = this.canFork() && this.status === TaskStatus.SUCCEEDED && this.finalAnswerSeq > 0;
    this.node.dataset.canFollowUp = String(can);
    if (can && !this.followUpForm) {
      this.followUpForm = new FollowUpForm({
        idPrefix: this.idPrefix,
        show: text => this.show(text),
        submit: question => this.askFollowUp(question).then(child => child.focus())
      });
      this.followUpNode.replaceChildren(this.followUpForm.node);
    }
    this.followUpNode.hidden = !can;
  }

  /**
   * Ask `question` after this run's answer: a fork at its `final_answer` with
   * `edit.follow_up` (everything copied, the answer too), whose view opens below,
   * live. Rejects with the refusal (an error with the server's or the kernel's `code`).
   */
  askFollowUp(question: string): Promise<TaskView> {
    if (!this.finalAnswerSeq) {
      return Promise.reject(new Error('This run has no answer to follow up on.'));
    }
    return this.fork(this.finalAnswerSeq, { follow_up: question }, this.finalStep || null, true);
  }

  private openForkForm(step: number, host: HTMLElement): void {
    const point = this.forkPoints.get(step);
    if (!point || !point.lastSeq || !this.canFork()) {
      return;
    }
    const button =
      step === this.finalStep && host === this.finalNode ? this.finalForkButton : this.blocks.get(step)?.forkButton;
    if (this.forkForm && this.forkForm.step === step && this.forkForm.node.isConnected) {
      this.forkForm.focus();
      return;
    }
    this.closeForkForm(false);
    const form = new ForkForm({
      point,
      input: step === 1 && this.input ? this.input : null,
      idPrefix: this.idPrefix,
      show: text => this.show(text),
      submit: async (atSeq, edit) => {
        const child = await this.fork(atSeq, edit, atSeq === 0 ? null : step);
        this.closeForkForm(false);
        child.focus();
      },
      close: () => this.closeForkForm(true)
    });
    this.forkForm = form;
    this.forkFormButton = button ?? null;
    button?.setAttribute('aria-expanded', 'true');
    if (button) {
      form.node.id = `${this.idPrefix}-fork-form`;
      button.setAttribute('aria-controls', form.node.id);
    }
    host.append(form.node);
    form.focus();
  }

  private closeForkForm(focusButton: boolean): void {
    const form = this.forkForm;
    const button = this.forkFormButton;
    this.forkForm = null;
    this.forkFormButton = null;
    form?.node.remove();
    button?.setAttribute('aria-expanded', 'false');
    if (focusButton && button && !button.hidden) {
      button.focus();
    }
  }

  /**
   * Fork this task at its event `atSeq` (0: the start), with `edit` (none: no
   * change), and show the fork's view below this one, live. Rejects with the
   * refusal (an error with the server's or the kernel's `code`).
   */
  async fork(
    atSeq: number,
    edit: IForkEdit | null = null,
    step: number | null = null,
    followUp = false
  ): Promise<TaskView> {
    if (!this.backend.fork) {
      throw new Error('Forks cannot be made from this view.');
    }
    this.forking = true;
    try {
      const forked = await this.backend.fork(this.taskId, atSeq, edit);
      return this.openFork(forked, step ?? this.stepAt(atSeq), followUp || !!edit?.follow_up);
    } finally {
      this.forking = false;
    }
  }

  /** The step of this run's event `seq` (null for 0, or one not seen). */
  private stepAt(seq: number): number | null {
    let found: number | null = null;
    for (const point of this.forkPoints.values()) {
      if (seq > 0 && point.lastSeq >= seq && (found === null || point.step < found)) {
        found = point.step;
      }
    }
    return found;
  }

  private openFork(forked: IForked, step: number | null, followUp = false): TaskView {
    const child = new TaskView({
      taskId: forked.task_id,
      agent: this.agent || undefined,
      backend: this.backend,
      markdown: this.markdown,
      forkOf: { parentId: this.taskId, step, followUp },
      openTask: this.openTask ?? undefined
    });
    this.forks.push(child);
    child.mount(this.forksNode);
    this.forksNode.hidden = false;
    child.start();
    child.node.scrollIntoView?.({ block: 'nearest' });
    return child;
  }

  /** Put the focus on the view (its status, which says what it is doing). */
  focus(): void {
    this.statusNode.tabIndex = -1;
    this.statusNode.focus();
  }

  /** A fork's parent (and how it was made): the line under the header says so. */
  private setParent(parentId: string, forkedAtSeq: number | null, kind: string): void {
    if (
      parentId === this.parentId &&
      kind === this.forkKind &&
      (forkedAtSeq === null || forkedAtSeq === this.forkedAtSeq)
    ) {
      return;
    }
    this.parentId = parentId;
    this.forkKind = kind;
    if (forkedAtSeq !== null) {
      this.forkedAtSeq = forkedAtSeq;
    }
    this.node.dataset.parentId = parentId;
    this.node.dataset.forkKind = kind;
    this.updateForkInfo();
    if (this.forkStep === null && this.forkedAtSeq && kind !== ForkKind.RESUME) {
      void this.learnForkStep();
    }
  }

  /** The step of the parent's event the fork was made at (`GET tasks/{parent}/events/{seq}`). */
  private async learnForkStep(): Promise<void> {
    const subscription = this.subscription;
    const seq = this.forkedAtSeq;
    const parent = this.parentId;
    if (!subscription?.request || !seq || !parent) {
      return;
    }
    try {
      const message = await subscription.request<{ data?: { step?: unknown } }>(
        `tasks/${encodeURIComponent(parent)}/events/${seq}`
      );
      const step = message?.data?.step;
      if (typeof step === 'number' && this.forkStep === null && parent === this.parentId) {
        this.forkStep = step;
        this.updateForkInfo();
      }
    } catch {
      // (The relay, or the parent is gone: the line says "at event N".)
    }
  }

  private updateForkInfo(): void {
    const parentId = this.parentId;
    if (!parentId) {
      return;
    }
    const info = this.forkInfoNode;
    if (!this.forkTextNode) {
      this.forkTextNode = el('span', 'ak-fork-line');
      this.forkCopiedNode = el('span', 'ak-fork-copied');
      const compare = el('button', 'ak-compare-parent', 'Compare with parent');
      compare.type = 'button';
      compare.setAttribute('aria-expanded', 'false');
      compare.setAttribute('aria-controls', this.compareSlot.id);
      compare.addEventListener('click', () => {
        if (compare.getAttribute('aria-disabled') !== 'true') {
          void this.toggleCompare();
        }
      });
      this.compareButton = compare;
      info.append(el('span', 'ak-fork-badge', 'Fork'), this.forkTextNode, this.forkCopiedNode, compare);
    }
    const resume = this.forkKind === ForkKind.RESUME;
    const followUp = this.followUp && !resume;
    info.querySelector('.ak-fork-badge')?.replaceChildren(resume ? 'Continuation' : followUp ? 'Follow-up' : 'Fork');
    info.dataset.kind = resume ? 'resume' : followUp ? 'follow-up' : 'fork';
    let parent: HTMLElement;
    const openTask = this.openTask;
    if (openTask) {
      parent = el('button', 'ak-fork-parent', shortId(parentId));
      (parent as HTMLButtonElement).type = 'button';
      parent.setAttribute('aria-label', `Open the parent task ${parentId}`);
      parent.addEventListener('click', () => openTask(parentId));
    } else {
      parent = el('code', 'ak-fork-parent', shortId(parentId));
    }
    parent.title = `Task ${parentId}`;
    let where = '';
    if (followUp) {
      where = "'s answer";
    } else if (!resume) {
      if (this.forkedAtSeq === 0) {
        where = ' from the start, with a new input';
      } else if (this.forkStep !== null) {
        where = ` at step ${this.forkStep}`;
      } else if (this.forkedAtSeq !== null) {
        where = ` at its event ${this.forkedAtSeq}`;
      }
    }
    this.forkTextNode.replaceChildren(
      resume ? 'Continues ' : followUp ? 'Follows up on ' : 'Forked from ',
      parent,
      resume ? ', which was interrupted' : where
    );
    if (this.forkCopiedNode) {
      const copied = this.copiedSteps.size;
      this.forkCopiedNode.textContent = copied ? `${plural(copied, 'step')} copied from it` : '';
    }
    this.updateCompareButton();
    info.hidden = false;
  }

  private updateCompareButton(): void {
    if (this.compareButton) {
      this.compareButton.hidden = !this.canCompare();
    }
  }

  /** "Compare with parent": the comparison of the parent (a) and this fork (b), in place. */
  private async toggleCompare(): Promise<void> {
    const button = this.compareButton;
    const parentId = this.parentId;
    const compare = this.backend.compare;
    if (!button || !parentId || !compare) {
      return;
    }
    if (this.compareOpen) {
      this.compareOpen = false;
      this.compareSlot.hidden = true;
      this.compareSlot.replaceChildren();
      button.textContent = 'Compare with parent';
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    button.setAttribute('aria-disabled', 'true');
    button.textContent = 'Comparing…';
    try {
      const comparison = await compare.call(this.backend, parentId, this.taskId);
      const view = new CompareView(comparison, { openTask: this.openTask ?? undefined });
      this.compareSlot.replaceChildren(view.node);
      this.compareOpen = true;
      button.textContent = 'Hide comparison';
      button.setAttribute('aria-expanded', 'true');
    } catch (reason) {
      const error = el('div', 'ak-compare-error');
      error.setAttribute('role', 'alert');
      error.append(...this.show(`Could not compare: ${errorText(reason instanceof Error ? reason.message : reason)}`));
      this.compareSlot.replaceChildren(error);
      button.textContent = 'Compare with parent';
    } finally {
      this.compareSlot.hidden = false;
      button.removeAttribute('aria-disabled');
    }
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
    this.updateControls();
    if (focused && this.cancelButton.disabled) {
      this.statusNode.tabIndex = -1;
      this.statusNode.focus();
    }
    this.cancelButton.textContent = status === 'cancelling' ? 'Cancelling…' : 'Cancel';
    this.updateForkActions();
    if (final) {
      window.clearInterval(this.ticker);
      this.ticker = 0;
      this.connectionNode.textContent = '';
    } else if (
      !this.ticker &&
      (status === TaskStatus.RUNNING ||
        status === TaskStatus.WAITING ||
        status === TaskStatus.PAUSED ||
        status === 'cancelling')
    ) {
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
    for (const live of this.dirtyLive) {
      live.flush();
    }
    this.dirtyLive.clear();
    const steps = this.maxStep;
    this.stepsCountNode.textContent = plural(steps, 'step');
    this.refreshTimeline();
    this.refreshUsage();
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
