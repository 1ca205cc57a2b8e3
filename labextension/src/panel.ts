import { Dialog, showDialog } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { CompareView } from './compare';
import { formatCost, formatDuration, formatTokens, shortId } from './format';
import { revealBidi as showBidiControls } from './text';
import { IAgentInfo, IComparison, ITask, TaskStatus, isFinal, isRecord, toEpochSeconds } from './protocol';
import { LIST_SINCE_QUERY } from './protocol.generated';
import type { ITaskList, ITaskSummary } from './protocol.generated';
import { DirectBackend } from './stream';
import { ApiError, ITransport } from './transport';
import { TaskView } from './view';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2a1 1 0 0 1 1 1v1.05A7 7 0 0 1 19 11v6a3 3 0 0 1-3 3H8a3 3 0 0 1-3-3v-6a7 7 0 0 1 6-6.95V3a1 1 0 0 1 1-1zm0 4a5 5 0 0 0-5 5v6a1 1 0 0 0 1 1h8a1 1 0 0 0 1-1v-6a5 5 0 0 0-5-5zm-2.5 5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zm5 0a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zM2 12h2v4H2zm18 0h2v4h-2z"/>
  </g>
</svg>`;

export const agentIcon = new LabIcon({ name: 'agentkit-jupyter:agent', svgstr: ICON_SVG });

/** A main-area panel showing one task's TaskView (and the forks made from it, below). */
export class TaskPanel extends Widget {
  readonly view: TaskView;

  constructor(
    transport: ITransport,
    readonly taskId: string,
    readonly agent?: string,
    openTask?: (taskId: string) => void
  ) {
    super();
    this.id = `agentkit-task-content-${taskId}`;
    this.addClass('agentkit-task-panel');
    this.title.label = agent ? `Agent: ${agent}` : 'Agent task';
    this.title.caption = `Agent task ${taskId}`;
    this.title.icon = agentIcon;
    this.title.closable = true;
    this.view = new TaskView({
      taskId,
      agent,
      backend: new DirectBackend(transport),
      layout: 'fill',
      openTask
    });
    this.view.mount(this.node);
    this.view.start();
  }

  dispose(): void {
    if (!this.isDisposed) {
      this.view.dispose();
    }
    super.dispose();
  }
}

/** A main-area panel showing two runs compared (`GET compare`). */
export class ComparePanel extends Widget {
  readonly view: CompareView;

  constructor(
    readonly a: string,
    readonly b: string,
    comparison: IComparison,
    openTask?: (taskId: string) => void
  ) {
    super();
    this.id = `agentkit-compare-content-${a}-${b}`;
    this.addClass('agentkit-compare-panel');
    this.title.label = `Compare ${shortId(a)} · ${shortId(b)}`;
    this.title.caption = `Agent tasks ${a} (A) and ${b} (B) compared`;
    this.title.icon = agentIcon;
    this.title.closable = true;
    this.view = new CompareView(comparison, { layout: 'fill', openTask });
    this.node.append(this.view.node);
  }
}

/** `GET compare?a=&b=`. */
export function fetchComparison(transport: ITransport, a: string, b: string): Promise<IComparison> {
  return transport.request<IComparison>(`compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
}

/** What the panel needs to open a task in the main area. */
export interface ITaskRef {
  task_id: string;
  agent: string;
  /** The input as far as the panel has it (the tab's first title). */
  input?: string;
}

/** A tool call waiting for a decision, as the task list has it. */
export interface IPendingCall {
  call_id: string;
  tool: string;
}

export interface ITasksPanelOptions {
  transport: ITransport;
  /** Open a task in the main area. */
  openTask: (task: ITaskRef) => void;
  /** Milliseconds between refreshes of the task list. */
  interval?: number;
  /**
   * Calls of `task` started waiting for a decision (each call once, from the list's
   * `pending_approvals`). With it, the list is also refreshed while the panel is
   * hidden (every `hiddenInterval` ms), so that it is heard of.
   */
  onWaiting?: (task: ITaskSummary, calls: IPendingCall[]) => void;
  /** A task that was waiting no longer is (decided, ended or deleted). */
  onSettled?: (taskId: string) => void;
  hiddenInterval?: number;
  /**
   * Compare runs `a` and `b` in the main area ("Compare" with two tasks selected).
   * Rejects (an `ApiError`) when the server cannot; the panel says why.
   */
  compareTasks?: (a: string, b: string) => Promise<unknown>;
}

/** `pending_approvals` of a summary, read defensively. */
export function pendingCalls(task: Partial<ITaskSummary>): IPendingCall[] {
  const pending = Array.isArray(task.pending_approvals) ? task.pending_approvals : [];
  return pending
    .filter(isRecord)
    .map(call => ({ call_id: String(call.call_id ?? ''), tool: String(call.tool ?? call.name ?? 'a tool') }));
}

/** `GET agentkit/api/agents`; `errors` is absent on older servers. */
interface IAgentsAnswer {
  agents: IAgentInfo[];
  errors?: unknown;
}

/** One row's nodes; rows exist only for the tasks scrolled into view. */
interface IRow {
  taskId: string;
  node: HTMLLIElement;
  open: HTMLButtonElement;
  agent: HTMLElement;
  start: HTMLTimeElement;
  input: HTMLElement;
  status: HTMLElement;
  /** "Waiting for you: <tool>": shown while calls of the task wait for a decision. */
  approval: HTMLElement;
  time: HTMLElement;
  cancel: HTMLButtonElement;
  /** Selects the task for "Compare". */
  select: HTMLInputElement;
  /** Tokens and cost (from the summary). */
  usage: HTMLElement;
  /** "fork of <parent>": a click opens the parent. */
  fork: HTMLElement;
  /** "imported": a run loaded from a notebook (agentkit_jupyter.load()). */
  imported: HTMLElement;
}

/** The height of one row in pixels (panel.css gives `.ak-task-row` the same). */
export const ROW_HEIGHT = 48;
/** Rows drawn above and below the visible ones, so a quick scroll shows no gap. */
const OVERSCAN = 8;
/** The status filter's choices: a status, or a group of them. */
const STATUS_FILTERS: ReadonlyArray<[string, string]> = [
  ['', 'Any status'],
  ['active', 'Running, waiting or queued'],
  [TaskStatus.WAITING, 'Waiting for approval'],
  [TaskStatus.PAUSED, 'Paused'],
  ['finished', 'Finished'],
  [TaskStatus.SUCCEEDED, 'Succeeded'],
  [TaskStatus.FAILED, 'Failed'],
  [TaskStatus.CANCELLED, 'Cancelled'],
  [TaskStatus.INTERRUPTED, 'Interrupted']
];
/** `GET status` is asked on the first refresh and then every this many. */
const STATUS_EVERY = 5;
/** Deletions of "Clear finished" in flight at once. */
const DELETE_CONCURRENCY = 6;

function errorText(reason: unknown): string {
  return showBidiControls(reason instanceof Error ? reason.message : String(reason));
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

/** "14:03" today, "30 Nov 14:03" another day. */
export function formatStart(seconds: number, now: Date = new Date()): string {
  const date = new Date(seconds * 1000);
  const time = date.toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' });
  if (date.toDateString() === now.toDateString()) {
    return time;
  }
  const day = date.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
  return `${day} ${time}`;
}

/** The agent-loading failures of `GET agents` (`[{source, message}]`), if any. */
function agentErrors(errors: unknown): string[] {
  if (!Array.isArray(errors)) {
    return [];
  }
  return errors
    .filter(isRecord)
    .map(error => `${String(error.source ?? 'an agent source')}: ${String(error.message ?? '')}`);
}

/**
 * The "Agent tasks" side panel: start a run, see and open every task.
 *
 * The list is polled incrementally (`GET tasks?since=<cursor>`: only what changed)
 * and virtualized: rows have a fixed height and only those scrolled into view
 * (plus a few) are in the DOM, so hundreds of tasks cost a screenful of nodes.
 */
export class TasksPanel extends Widget {
  private readonly transport: ITransport;
  private readonly openTask: (task: ITaskRef) => void;
  private readonly interval: number;
  private readonly hiddenInterval: number;
  private readonly onWaiting: ((task: ITaskSummary, calls: IPendingCall[]) => void) | null;
  private readonly onSettled: ((taskId: string) => void) | null;
  /** The waiting calls already told of (`onWaiting`), per task. */
  private readonly toldWaiting = new Map<string, Set<string>>();
  private lastRefresh = 0;
  private readonly warnings: HTMLElement;
  private readonly agentWarning: HTMLElement;
  private readonly historyWarning: HTMLElement;
  private readonly agentSelect: HTMLSelectElement;
  private readonly agentDescription: HTMLElement;
  private readonly inputField: HTMLTextAreaElement;
  private readonly startButton: HTMLButtonElement;
  private readonly formNotice: HTMLElement;
  private readonly agentFilter: HTMLSelectElement;
  private readonly statusFilter: HTMLSelectElement;
  private readonly clearButton: HTMLButtonElement;
  private readonly compareButton: HTMLButtonElement;
  private readonly compareTasks: ((a: string, b: string) => Promise<unknown>) | null;
  /** The tasks selected for "Compare", in the order they were selected (two at most). */
  private selected: string[] = [];
  /** A row to point at (the parent a fork's link opened) and until when. */
  private highlighted: { taskId: string; until: number } | null = null;
  private readonly count: HTMLElement;
  private readonly scroller: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly list: HTMLUListElement;
  private readonly empty: HTMLElement;
  private readonly listNotice: HTMLElement;
  private readonly rows = new Map<string, IRow>();
  private readonly tasks = new Map<string, ITaskSummary>();
  /** The filtered tasks, newest first: what the list shows. */
  private shown: ITaskSummary[] = [];
  private agents: IAgentInfo[] = [];
  private agentsLoaded = false;
  private cursor: string | null = null;
  private timer = 0;
  private frame = 0;
  private refreshes = 0;
  private statusSupported = true;
  private refreshing = false;
  private readonly resizeObserver: ResizeObserver | null;

  constructor(options: ITasksPanelOptions) {
    super();
    this.transport = options.transport;
    this.openTask = options.openTask;
    this.interval = options.interval ?? 2000;
    this.hiddenInterval = options.hiddenInterval ?? 4000;
    this.onWaiting = options.onWaiting ?? null;
    this.onSettled = options.onSettled ?? null;
    this.compareTasks = options.compareTasks ?? null;
    this.id = 'agentkit-tasks-panel';
    this.addClass('agentkit-tasks-panel');
    this.title.icon = agentIcon;
    this.title.caption = 'Agent tasks';

    const heading = document.createElement('h2');
    heading.className = 'ak-panel-heading';
    heading.textContent = 'Agent tasks';

    this.warnings = document.createElement('div');
    this.warnings.className = 'ak-panel-warnings';
    this.agentWarning = this.warning('agents');
    this.historyWarning = this.warning('history');

    const form = document.createElement('form');
    form.className = 'ak-start-form';
    form.noValidate = true;
    form.setAttribute('aria-label', 'Start an agent task');
    const agentLabel = document.createElement('label');
    agentLabel.textContent = 'Agent';
    const selectWrap = document.createElement('div');
    selectWrap.className = 'ak-select-wrap';
    this.agentSelect = document.createElement('select');
    this.agentSelect.className = 'ak-agent-select';
    this.agentSelect.id = 'agentkit-start-agent';
    agentLabel.htmlFor = this.agentSelect.id;
    selectWrap.append(this.agentSelect);
    this.agentDescription = document.createElement('p');
    this.agentDescription.className = 'ak-agent-description';
    this.agentDescription.id = 'agentkit-start-agent-description';
    this.agentSelect.setAttribute('aria-describedby', this.agentDescription.id);
    const inputLabel = document.createElement('label');
    inputLabel.textContent = 'Input';
    this.inputField = document.createElement('textarea');
    this.inputField.className = 'ak-input-field';
    this.inputField.id = 'agentkit-start-input';
    this.inputField.rows = 3;
    this.inputField.placeholder = 'e.g. Compare Paris and Berlin';
    inputLabel.htmlFor = this.inputField.id;
    const footer = document.createElement('div');
    footer.className = 'ak-form-footer';
    const hint = document.createElement('span');
    hint.className = 'ak-input-hint';
    hint.id = 'agentkit-start-hint';
    const mac = /Mac|iPhone|iPad/.test(navigator.platform);
    hint.textContent = `${mac ? '⌘' : 'Ctrl'}+Enter to start`;
    this.inputField.setAttribute('aria-describedby', hint.id);
    this.startButton = document.createElement('button');
    this.startButton.type = 'submit';
    this.startButton.className = 'ak-start jp-mod-styled jp-mod-accept';
    this.startButton.textContent = 'Start';
    this.startButton.title = `Start the agent (${hint.textContent})`;
    footer.append(hint, this.startButton);
    this.formNotice = document.createElement('div');
    this.formNotice.className = 'ak-form-notice';
    this.formNotice.setAttribute('role', 'status');
    form.append(
      agentLabel,
      selectWrap,
      this.agentDescription,
      inputLabel,
      this.inputField,
      footer,
      this.formNotice
    );
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.start();
    });
    this.inputField.addEventListener('keydown', event => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        void this.start();
      }
    });
    this.inputField.addEventListener('input', () => {
      if (this.inputField.value.trim()) {
        this.inputField.removeAttribute('aria-invalid');
      }
    });
    this.agentSelect.addEventListener('change', () => this.describeAgent());

    const listHeader = document.createElement('div');
    listHeader.className = 'ak-list-header';
    const listHeading = document.createElement('h3');
    listHeading.className = 'ak-list-heading';
    listHeading.textContent = 'Tasks';
    listHeading.id = 'agentkit-tasks-list-heading';
    this.count = document.createElement('span');
    this.count.className = 'ak-task-count';
    listHeader.append(listHeading, this.count);

    const toolbar = document.createElement('div');
    toolbar.className = 'ak-list-toolbar';
    this.agentFilter = this.filter('agentkit-filter-agent', 'Show tasks of agent', [
      ['', 'All agents']
    ]);
    this.statusFilter = this.filter('agentkit-filter-status', 'Show tasks with status', [
      ...STATUS_FILTERS
    ]);
    this.clearButton = document.createElement('button');
    this.clearButton.type = 'button';
    this.clearButton.className = 'ak-clear-finished';
    this.clearButton.textContent = 'Clear finished';
    this.clearButton.title = 'Delete the finished tasks shown, after asking';
    this.clearButton.addEventListener('click', () => void this.clearFinished());
    this.compareButton = document.createElement('button');
    this.compareButton.type = 'button';
    this.compareButton.className = 'ak-compare-tasks';
    this.compareButton.textContent = 'Compare';
    this.compareButton.hidden = !this.compareTasks;
    this.compareButton.addEventListener('click', () => void this.compareSelected());
    toolbar.append(
      this.agentFilter.parentElement ?? this.agentFilter,
      this.statusFilter.parentElement ?? this.statusFilter
    );
    listHeader.append(this.compareButton, this.clearButton);

    this.scroller = document.createElement('div');
    this.scroller.className = 'ak-task-scroller';
    this.scroller.tabIndex = -1;
    this.spacer = document.createElement('div');
    this.spacer.className = 'ak-task-spacer';
    this.list = document.createElement('ul');
    this.list.className = 'ak-task-list';
    this.list.setAttribute('aria-labelledby', listHeading.id);
    this.spacer.append(this.list);
    this.scroller.append(this.spacer);
    this.scroller.addEventListener('scroll', () => this.scheduleRender(), { passive: true });
    this.empty = document.createElement('p');
    this.empty.className = 'ak-empty';
    this.empty.textContent = 'No tasks yet.';
    this.listNotice = document.createElement('div');
    this.listNotice.className = 'ak-list-notice';
    this.listNotice.setAttribute('role', 'status');

    this.node.append(
      heading,
      this.warnings,
      form,
      listHeader,
      toolbar,
      this.listNotice,
      this.empty,
      this.scroller
    );
    this.resizeObserver =
      typeof ResizeObserver === 'undefined'
        ? null
        : new ResizeObserver(() => this.scheduleRender());
    this.resizeObserver?.observe(this.scroller);
    this.applyFilter();
    this.updateCompareButton();
  }

  /** Fetch agents, changes to the task list and (now and then) the server's status. */
  async refresh(): Promise<void> {
    if (this.refreshing || this.isDisposed) {
      return;
    }
    this.refreshing = true;
    this.lastRefresh = Date.now();
    try {
      if (!this.agentsLoaded) {
        await this.loadAgents();
      }
      if (this.statusSupported && this.refreshes % STATUS_EVERY === 0) {
        await this.loadStatus();
      }
      this.refreshes += 1;
      const query = this.cursor ? `?${LIST_SINCE_QUERY}=${encodeURIComponent(this.cursor)}` : '';
      const answer = await this.transport.request<Partial<ITaskList>>(`tasks${query}`);
      this.applyChanges(answer);
      this.listNotice.textContent = '';
    } catch (reason) {
      this.listNotice.textContent = `Could not load tasks: ${errorText(reason)}`;
    } finally {
      this.refreshing = false;
    }
  }

  protected onAfterShow(): void {
    void this.refresh();
    this.startTimer();
    this.scheduleRender();
  }

  protected onAfterAttach(): void {
    if (this.isVisible) {
      this.onAfterShow();
    } else if (this.onWaiting) {
      void this.refresh();
      this.startTimer();
    }
  }

  protected onBeforeHide(): void {
    if (!this.onWaiting) {
      window.clearInterval(this.timer);
      this.timer = 0;
    }
  }

  /** Refresh every `interval` while shown; while hidden, only to hear of waiting calls. */
  private startTimer(): void {
    window.clearInterval(this.timer);
    this.timer = window.setInterval(() => {
      if (this.isVisible || (this.onWaiting && Date.now() - this.lastRefresh >= this.hiddenInterval - 50)) {
        void this.refresh();
      }
    }, this.interval);
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this.timer);
    this.timer = 0;
  }

  dispose(): void {
    window.clearInterval(this.timer);
    window.cancelAnimationFrame(this.frame);
    this.resizeObserver?.disconnect();
    super.dispose();
  }

  private warning(kind: string): HTMLElement {
    const node = document.createElement('div');
    node.className = 'ak-panel-warning';
    node.dataset.kind = kind;
    node.setAttribute('role', 'alert');
    node.hidden = true;
    this.warnings.append(node);
    return node;
  }

  private filter(
    id: string,
    label: string,
    choices: ReadonlyArray<[string, string]>
  ): HTMLSelectElement {
    const wrap = document.createElement('div');
    wrap.className = 'ak-select-wrap';
    const select = document.createElement('select');
    select.className = id.replace('agentkit-', 'ak-');
    select.id = id;
    select.setAttribute('aria-label', label);
    for (const [value, text] of choices) {
      select.append(new Option(text, value));
    }
    select.addEventListener('change', () => {
      this.applyFilter();
      this.scroller.scrollTop = 0;
    });
    wrap.append(select);
    return select;
  }

  private async loadAgents(): Promise<void> {
    const answer = await this.transport.request<IAgentsAnswer>('agents');
    this.agents = Array.isArray(answer.agents) ? answer.agents : [];
    this.agentsLoaded = true;
    const selected = this.agentSelect.value;
    this.agentSelect.replaceChildren(
      ...this.agents.map(agent => new Option(showBidiControls(agent.name), agent.name))
    );
    if (selected && this.agents.some(agent => agent.name === selected)) {
      this.agentSelect.value = selected;
    }
    this.describeAgent();
    this.updateAgentFilter();
    const errors = agentErrors(answer.errors);
    this.agentWarning.hidden = errors.length === 0;
    if (errors.length) {
      const title = document.createElement('strong');
      title.textContent = `${plural(errors.length, 'agent source')} failed to load and ${
        errors.length === 1 ? 'is' : 'are'
      } not offered:`;
      const items = document.createElement('ul');
      items.append(
        ...errors.map(text => {
          const item = document.createElement('li');
          item.textContent = showBidiControls(text);
          return item;
        })
      );
      const more = document.createElement('span');
      more.textContent = 'The server log has the details.';
      this.agentWarning.replaceChildren(title, items, more);
    }
  }

  private async loadStatus(): Promise<void> {
    let status: unknown;
    try {
      status = await this.transport.request<unknown>('status');
    } catch (reason) {
      if (reason instanceof ApiError && reason.status === 404) {
        this.statusSupported = false; // an older server: no status route
      }
      return; // the list's own request says whether the server answers at all
    }
    const history = isRecord(status) && isRecord(status.history) ? status.history : null;
    const lines: string[] = [];
    if (history && history.state === 'failing') {
      const error = isRecord(history.error) ? history.error : {};
      const since = typeof error.since === 'number' ? ` since ${formatStart(error.since)}` : '';
      const pending = typeof history.pending === 'number' ? history.pending : 0;
      lines.push(
        `The task history cannot be written${since}: ${String(error.message ?? 'unknown error')}. ` +
          'Runs go on, and the server keeps retrying' +
          (pending ? ` (${plural(pending, 'change')} not saved yet)` : '') +
          '; a server restart now would lose them.'
      );
    }
    if (history && Array.isArray(history.warnings)) {
      lines.push(...history.warnings.map(String));
    }
    this.historyWarning.hidden = lines.length === 0;
    this.historyWarning.replaceChildren(
      ...lines.map(line => {
        const p = document.createElement('p');
        p.textContent = showBidiControls(line);
        return p;
      })
    );
  }

  private describeAgent(): void {
    const agent = this.agents.find(a => a.name === this.agentSelect.value);
    const description = agent?.description?.trim() ?? '';
    this.agentDescription.textContent = showBidiControls(description);
    this.agentDescription.hidden = !description;
  }

  private async start(): Promise<void> {
    const agent = this.agentSelect.value;
    const input = this.inputField.value.trim();
    this.formNotice.dataset.kind = 'error';
    if (!agent) {
      this.formNotice.textContent = 'No agent to start.';
      return;
    }
    if (!input) {
      this.formNotice.textContent = 'Type what the agent should do first.';
      this.inputField.setAttribute('aria-invalid', 'true');
      this.inputField.focus();
      return;
    }
    this.startButton.disabled = true;
    this.formNotice.dataset.kind = 'info';
    this.formNotice.textContent = 'Starting…';
    try {
      const task = await this.transport.request<ITask>('tasks', {
        method: 'POST',
        body: { agent, input }
      });
      this.formNotice.textContent = `Started ${showBidiControls(agent)}.`;
      this.openTask({ task_id: task.task_id, agent, input });
      void this.refresh();
    } catch (reason) {
      this.formNotice.dataset.kind = 'error';
      this.formNotice.textContent = `Could not start: ${errorText(reason)}`;
    } finally {
      this.startButton.disabled = false;
    }
  }

  /** Apply one answer of `GET tasks[?since=]`. */
  private applyChanges(answer: Partial<ITaskList>): void {
    if (answer.full !== false) {
      this.tasks.clear();
    }
    for (const id of Array.isArray(answer.deleted) ? answer.deleted : []) {
      this.tasks.delete(id);
    }
    for (const task of Array.isArray(answer.tasks) ? answer.tasks : []) {
      if (isRecord(task) && typeof task.task_id === 'string') {
        this.tasks.set(task.task_id, task);
      }
    }
    const kept = this.selected.filter(id => this.tasks.has(id));
    if (kept.length !== this.selected.length) {
      this.selected = kept;
      this.updateCompareButton();
    }
    this.cursor = typeof answer.cursor === 'string' ? answer.cursor : null;
    this.updateAgentFilter();
    this.applyFilter();
    this.tellWaiting();
  }

  /** `onWaiting` for calls that started waiting since the last answer, `onSettled` after. */
  private tellWaiting(): void {
    if (!this.onWaiting && !this.onSettled) {
      return;
    }
    for (const [taskId, told] of this.toldWaiting) {
      const task = this.tasks.get(taskId);
      const now = new Set(task && !isFinal(task.status) ? pendingCalls(task).map(call => call.call_id) : []);
      for (const id of told) {
        if (!now.has(id)) {
          told.delete(id);
        }
      }
      if (!told.size) {
        this.toldWaiting.delete(taskId);
        this.onSettled?.(taskId);
      }
    }
    for (const task of this.tasks.values()) {
      if (isFinal(task.status)) {
        continue;
      }
      const calls = pendingCalls(task);
      if (!calls.length) {
        continue;
      }
      let told = this.toldWaiting.get(task.task_id);
      const fresh = calls.filter(call => !told?.has(call.call_id));
      if (!fresh.length) {
        continue;
      }
      if (!told) {
        told = new Set();
        this.toldWaiting.set(task.task_id, told);
      }
      for (const call of fresh) {
        told.add(call.call_id);
      }
      this.onWaiting?.(task, fresh);
    }
  }

  private updateAgentFilter(): void {
    const names = new Set<string>(this.agents.map(agent => agent.name));
    for (const task of this.tasks.values()) {
      names.add(task.agent);
    }
    const have = new Set(Array.from(this.agentFilter.options, option => option.value));
    for (const name of [...names].sort()) {
      if (!have.has(name)) {
        this.agentFilter.append(new Option(showBidiControls(name), name));
      }
    }
  }

  private matches(task: ITaskSummary): boolean {
    const agent = this.agentFilter.value;
    const status = this.statusFilter.value;
    if (agent && task.agent !== agent) {
      return false;
    }
    switch (status) {
      case '':
        return true;
      case 'active':
        return !isFinal(task.status);
      case 'finished':
        return isFinal(task.status);
      default:
        return task.status === status;
    }
  }

  /** Recompute what the list shows (filtered, newest first), then draw it. */
  private applyFilter(): void {
    const start = (task: ITaskSummary): number => toEpochSeconds(task.created_at) ?? 0;
    this.shown = [...this.tasks.values()]
      .filter(task => this.matches(task))
      .sort((a, b) => start(b) - start(a));
    const total = this.tasks.size;
    const filtered = this.agentFilter.value !== '' || this.statusFilter.value !== '';
    this.count.textContent = filtered
      ? `${this.shown.length} of ${total}`
      : total
        ? String(total)
        : '';
    this.empty.hidden = this.shown.length > 0;
    this.empty.textContent = total ? 'No task matches the filter.' : 'No tasks yet.';
    this.clearButton.disabled = !this.shown.some(task => isFinal(task.status));
    this.spacer.style.height = `${this.shown.length * ROW_HEIGHT}px`;
    this.renderWindow();
  }

  private scheduleRender(): void {
    if (!this.frame) {
      this.frame = window.requestAnimationFrame(() => {
        this.frame = 0;
        this.renderWindow();
      });
    }
  }

  /** Draw the rows scrolled into view (and OVERSCAN more each side), nothing else. */
  private renderWindow(): void {
    const height = this.scroller.clientHeight || 20 * ROW_HEIGHT;
    const top = this.scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.shown.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    this.list.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    const wanted = new Set<string>();
    let previous: HTMLLIElement | null = null;
    for (let index = first; index < last; index++) {
      const task = this.shown[index];
      wanted.add(task.task_id);
      let row = this.rows.get(task.task_id);
      if (!row) {
        row = this.createRow(task.task_id);
        this.rows.set(task.task_id, row);
      }
      this.updateRow(row, task, index);
      // Keep the DOM order without rebuilding: move only what is out of place.
      const expected: ChildNode | null = previous ? previous.nextSibling : this.list.firstChild;
      if (expected !== row.node) {
        this.list.insertBefore(row.node, expected);
      }
      previous = row.node;
    }
    for (const [id, row] of this.rows) {
      if (!wanted.has(id)) {
        row.node.remove();
        this.rows.delete(id);
      }
    }
  }

  private createRow(taskId: string): IRow {
    const node = document.createElement('li');
    node.className = 'ak-task-row';
    node.dataset.taskId = taskId;
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'ak-task-open';
    const line = document.createElement('span');
    line.className = 'ak-task-line';
    const agent = document.createElement('span');
    agent.className = 'ak-task-agent';
    const start = document.createElement('time');
    start.className = 'ak-task-start';
    const time = document.createElement('span');
    time.className = 'ak-task-time';
    const status = document.createElement('span');
    status.className = 'ak-task-status';
    const approval = document.createElement('span');
    approval.className = 'ak-task-approval';
    approval.hidden = true;
    const usage = document.createElement('span');
    usage.className = 'ak-task-usage';
    line.append(agent, start, approval, status);
    const input = document.createElement('span');
    input.className = 'ak-task-input';
    const fork = document.createElement('span');
    fork.className = 'ak-task-fork';
    fork.hidden = true;
    const imported = document.createElement('span');
    imported.className = 'ak-task-imported';
    imported.textContent = 'imported';
    imported.hidden = true;
    const second = document.createElement('span');
    second.className = 'ak-task-line';
    second.append(fork, imported, input, usage, time);
    open.append(line, second);
    open.addEventListener('click', event => {
      const task = this.tasks.get(taskId);
      if (!task) {
        return;
      }
      // "fork of <parent>": the parent, shown in the list and opened.
      const target = event.target instanceof Element ? event.target.closest('.ak-task-fork') : null;
      if (target && task.parent_id) {
        this.showParent(task.parent_id);
        return;
      }
      this.openTask({ task_id: task.task_id, agent: task.agent, input: task.input });
    });
    const select = document.createElement('input');
    select.type = 'checkbox';
    select.className = 'ak-task-select';
    select.addEventListener('change', () => this.setSelected(taskId, select.checked));
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.className = 'ak-task-cancel';
    cancel.textContent = '✕';
    cancel.title = 'Cancel this task';
    cancel.addEventListener('click', () => void this.cancelTask(taskId, cancel));
    if (this.compareTasks) {
      node.dataset.selectable = 'true';
      node.append(select);
    }
    node.append(open, cancel);
    return { taskId, node, open, agent, start, input, status, approval, time, cancel, select, usage, fork, imported };
  }

  private updateRow(row: IRow, task: ITaskSummary, index: number): void {
    const status = task.status;
    if (row.status.dataset.status !== status) {
      row.status.dataset.status = status;
      row.status.textContent = status;
      row.node.dataset.status = status;
    }
    row.node.setAttribute('aria-posinset', String(index + 1));
    row.node.setAttribute('aria-setsize', String(this.shown.length));
    const agent = showBidiControls(task.agent);
    const text = showBidiControls(task.input ?? '');
    const cut = task.input_chars > (task.input ?? '').length;
    if (row.input.textContent !== text) {
      row.input.textContent = text;
    }
    row.agent.textContent = agent;
    const created = toEpochSeconds(task.started_at) ?? toEpochSeconds(task.created_at);
    const startText = created === null ? '' : formatStart(created);
    row.start.textContent = startText;
    const full = created === null ? '' : new Date(created * 1000).toLocaleString();
    if (created !== null) {
      row.start.dateTime = new Date(created * 1000).toISOString();
    }
    // The hover shows the input as far as the list has it (the task view has all).
    const more = cut ? `… (${task.input_chars.toLocaleString()} characters in all)` : '';
    const calls = isFinal(status) ? [] : pendingCalls(task);
    const tools = [...new Set(calls.map(call => showBidiControls(call.tool)))];
    const waiting = tools.length
      ? `waits for a decision on ${tools.join(', ')}${calls.length > tools.length ? ` (${calls.length} calls)` : ''}`
      : '';
    row.approval.hidden = !calls.length;
    row.node.dataset.pendingApprovals = String(calls.length);
    if (calls.length) {
      const label = `${tools[0]}${calls.length > 1 ? ` +${calls.length - 1}` : ''}`;
      if (row.approval.textContent !== label) {
        row.approval.textContent = label;
      }
      row.approval.title = `This task ${waiting}: open it to approve or reject`;
    }
    // Runs as data: tokens and cost, and the parent of a fork.
    const tokensIn = typeof task.tokens_in === 'number' ? task.tokens_in : 0;
    const tokensOut = typeof task.tokens_out === 'number' ? task.tokens_out : 0;
    const cost = typeof task.cost === 'number' ? task.cost : null;
    const spent = tokensIn + tokensOut > 0 || (cost ?? 0) > 0;
    const usageText = spent
      ? `${formatTokens(tokensIn + tokensOut)} tok${cost === null ? '' : ` · ${formatCost(cost)}`}`
      : '';
    const usageTitle = spent
      ? `${tokensIn.toLocaleString()} tokens in, ${tokensOut.toLocaleString()} out · ` +
        (cost === null ? 'cost unknown (no price is known for this model)' : `cost ${formatCost(cost)}`)
      : '';
    if (row.usage.textContent !== usageText) {
      row.usage.textContent = usageText;
    }
    row.usage.title = usageTitle;
    row.usage.dataset.cost = cost === null ? 'unknown' : String(cost);
    const parent = typeof task.parent_id === 'string' && task.parent_id ? task.parent_id : '';
    const resume = task.fork_kind === 'resume';
    const forkText = parent ? `${resume ? 'resumes' : 'fork of'} ${shortId(parent)}` : '';
    row.fork.hidden = !parent;
    row.node.dataset.parentId = parent;
    if (row.fork.textContent !== forkText) {
      row.fork.textContent = forkText;
    }
    row.fork.title = parent ? `${resume ? 'Continues' : 'Forked from'} task ${parent}: click to show it` : '';
    const from = task.imported_from;
    const importedText = from ? `imported from ${from.source ? showBidiControls(from.source) : 'a notebook'}` : '';
    row.imported.hidden = !from;
    row.imported.title = importedText;
    row.node.dataset.imported = from ? 'true' : 'false';
    const about = [full ? `started ${full}` : '', waiting, usageTitle, forkText, importedText]
      .filter(Boolean)
      .map(part => ` · ${part}`)
      .join('');
    row.open.title = `${agent}${about}\n${text}${more}`;
    row.open.setAttribute(
      'aria-label',
      `Open ${agent} task${waiting ? `, which ${waiting}` : ''}${forkText ? ` (${forkText})` : ''}: ${text || task.task_id}`
    );
    row.select.checked = this.selected.includes(task.task_id);
    row.select.setAttribute('aria-label', `Select ${agent} task ${shortId(task.task_id)} to compare`);
    const highlight = this.highlighted;
    if (highlight && highlight.taskId === task.task_id && Date.now() < highlight.until) {
      row.node.dataset.highlight = 'true';
    } else {
      delete row.node.dataset.highlight;
    }
    row.cancel.hidden = isFinal(status);
    row.cancel.setAttribute('aria-label', `Cancel ${agent} task`);
    const end = toEpochSeconds(task.finished_at) ?? Date.now() / 1000;
    row.time.textContent = created === null ? '' : formatDuration(Math.max(0, end - created));
  }

  /** Select (or not) a task for "Compare": two at most, the oldest choice gives way. */
  private setSelected(taskId: string, selected: boolean): void {
    this.selected = this.selected.filter(id => id !== taskId);
    if (selected) {
      this.selected.push(taskId);
      while (this.selected.length > 2) {
        const dropped = this.selected.shift();
        const row = dropped ? this.rows.get(dropped) : undefined;
        if (row) {
          row.select.checked = false;
        }
      }
    }
    this.updateCompareButton();
  }

  private updateCompareButton(): void {
    const ready = this.selected.length === 2;
    this.compareButton.disabled = !ready;
    this.compareButton.textContent = ready ? 'Compare 2' : 'Compare';
    this.compareButton.title = ready
      ? 'Compare the two selected runs side by side'
      : 'Select two tasks (their check boxes) to compare them';
  }

  /** "Compare": the two selected runs, a fork's parent (or else the older) as run A. */
  private async compareSelected(): Promise<void> {
    if (!this.compareTasks || this.selected.length !== 2) {
      return;
    }
    let [a, b] = this.selected;
    const first = this.tasks.get(a);
    const second = this.tasks.get(b);
    const start = (task?: ITaskSummary): number => toEpochSeconds(task?.created_at) ?? 0;
    if (first?.parent_id === b || (second?.parent_id !== a && start(second) < start(first))) {
      [a, b] = [b, a];
    }
    this.compareButton.disabled = true;
    this.listNotice.textContent = 'Comparing…';
    try {
      await this.compareTasks(a, b);
      this.listNotice.textContent = '';
    } catch (reason) {
      const missing = reason instanceof ApiError && reason.status === 404 && !reason.code.startsWith('unknown');
      this.listNotice.textContent = missing
        ? 'Could not compare: this server has no compare route (an older agentkit-jupyter).'
        : `Could not compare: ${errorText(reason)}`;
    } finally {
      this.updateCompareButton();
    }
  }

  /** A fork's "fork of <parent>": the parent's row scrolled to and marked, and the parent opened. */
  private showParent(parentId: string): void {
    const index = this.shown.findIndex(task => task.task_id === parentId);
    if (index >= 0) {
      const top = index * ROW_HEIGHT;
      const height = this.scroller.clientHeight;
      if (top < this.scroller.scrollTop || top + ROW_HEIGHT > this.scroller.scrollTop + height) {
        this.scroller.scrollTop = Math.max(0, top - Math.floor(height / 2));
      }
      this.highlighted = { taskId: parentId, until: Date.now() + 3000 };
      this.renderWindow();
      window.setTimeout(() => this.renderWindow(), 3100);
    }
    const parent = this.tasks.get(parentId);
    this.openTask({ task_id: parentId, agent: parent?.agent ?? '', input: parent?.input });
  }

  private async cancelTask(taskId: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      await this.transport.request(`tasks/${encodeURIComponent(taskId)}/cancel`, {
        method: 'POST'
      });
    } catch {
      // 409: already finished; the next refresh shows it.
    } finally {
      button.disabled = false;
      void this.refresh();
    }
  }

  /** "Clear finished": after a confirmation, DELETE the finished tasks the filter shows. */
  private async clearFinished(): Promise<void> {
    const doomed = this.shown.filter(task => isFinal(task.status)).map(task => task.task_id);
    if (!doomed.length) {
      return;
    }
    const scope = [
      this.agentFilter.value ? `of ${this.agentFilter.value}` : '',
      this.statusFilter.value && this.statusFilter.value !== 'finished'
        ? `that ${this.statusFilter.selectedOptions[0]?.textContent?.toLowerCase() ?? ''}`
        : ''
    ]
      .filter(Boolean)
      .join(' ');
    const result = await showDialog({
      title: 'Clear finished tasks',
      body: showBidiControls(
        `Delete ${plural(doomed.length, 'finished task')}${scope ? ` ${scope}` : ''}? ` +
          'Their steps and results are removed from the server for good. ' +
          'Running tasks are kept.'
      ),
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!result.button.accept) {
      return;
    }
    this.clearButton.disabled = true;
    let deleted = 0;
    let failed = 0;
    const queue = [...doomed];
    const worker = async (): Promise<void> => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        try {
          await this.transport.request(`tasks/${encodeURIComponent(id)}`, { method: 'DELETE' });
          deleted += 1;
        } catch (reason) {
          if (reason instanceof ApiError && reason.status === 404) {
            deleted += 1; // already gone
          } else {
            failed += 1;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: DELETE_CONCURRENCY }, worker));
    this.listNotice.textContent =
      `Deleted ${plural(deleted, 'finished task')}.` +
      (failed ? ` ${plural(failed, 'task')} could not be deleted.` : '');
    await this.refresh();
    if (deleted || failed) {
      this.listNotice.textContent =
        `Deleted ${plural(deleted, 'finished task')}.` +
        (failed ? ` ${plural(failed, 'task')} could not be deleted.` : '');
    }
  }
}
