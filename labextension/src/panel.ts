import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { IAgentInfo, ITask, TaskStatus, isFinal, toEpochSeconds } from './protocol';
import { DirectBackend } from './stream';
import { ITransport } from './transport';
import { TaskView, formatDuration } from './view';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2a1 1 0 0 1 1 1v1.05A7 7 0 0 1 19 11v6a3 3 0 0 1-3 3H8a3 3 0 0 1-3-3v-6a7 7 0 0 1 6-6.95V3a1 1 0 0 1 1-1zm0 4a5 5 0 0 0-5 5v6a1 1 0 0 0 1 1h8a1 1 0 0 0 1-1v-6a5 5 0 0 0-5-5zm-2.5 5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zm5 0a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zM2 12h2v4H2zm18 0h2v4h-2z"/>
  </g>
</svg>`;

export const agentIcon = new LabIcon({ name: 'agentkit-jupyter:agent', svgstr: ICON_SVG });

/** A main-area panel showing one task's TaskView. */
export class TaskPanel extends Widget {
  readonly view: TaskView;

  constructor(
    transport: ITransport,
    readonly taskId: string,
    readonly agent?: string
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
      layout: 'fill'
    });
    this.node.append(this.view.node);
    this.view.start();
  }

  dispose(): void {
    if (!this.isDisposed) {
      this.view.dispose();
    }
    super.dispose();
  }
}

export interface ITasksPanelOptions {
  transport: ITransport;
  /** Open a task in the main area. */
  openTask: (task: ITask) => void;
  /** Milliseconds between refreshes of the task list. */
  interval?: number;
}

interface IRow {
  node: HTMLLIElement;
  status: HTMLElement;
  time: HTMLElement;
  cancel: HTMLButtonElement;
}

/** The "Agent tasks" side panel: start a demo run, see and open every task. */
export class TasksPanel extends Widget {
  private readonly transport: ITransport;
  private readonly openTask: (task: ITask) => void;
  private readonly interval: number;
  private readonly agentSelect: HTMLSelectElement;
  private readonly inputField: HTMLTextAreaElement;
  private readonly startButton: HTMLButtonElement;
  private readonly formNotice: HTMLElement;
  private readonly list: HTMLUListElement;
  private readonly empty: HTMLElement;
  private readonly listNotice: HTMLElement;
  private readonly rows = new Map<string, IRow>();
  private readonly tasks = new Map<string, ITask>();
  private agents: IAgentInfo[] = [];
  private timer = 0;
  private refreshing = false;

  constructor(options: ITasksPanelOptions) {
    super();
    this.transport = options.transport;
    this.openTask = options.openTask;
    this.interval = options.interval ?? 2000;
    this.id = 'agentkit-tasks-panel';
    this.addClass('agentkit-tasks-panel');
    this.title.icon = agentIcon;
    this.title.caption = 'Agent tasks';

    const heading = document.createElement('h2');
    heading.className = 'ak-panel-heading';
    heading.textContent = 'Agent tasks';

    const form = document.createElement('form');
    form.className = 'ak-start-form';
    form.setAttribute('aria-label', 'Start an agent task');
    const agentLabel = document.createElement('label');
    agentLabel.textContent = 'Agent';
    this.agentSelect = document.createElement('select');
    this.agentSelect.className = 'ak-agent-select jp-mod-styled';
    this.agentSelect.id = 'agentkit-start-agent';
    agentLabel.htmlFor = this.agentSelect.id;
    const inputLabel = document.createElement('label');
    inputLabel.textContent = 'Input';
    this.inputField = document.createElement('textarea');
    this.inputField.className = 'ak-input-field jp-mod-styled';
    this.inputField.id = 'agentkit-start-input';
    this.inputField.rows = 3;
    this.inputField.placeholder = 'Compare Paris and Berlin';
    inputLabel.htmlFor = this.inputField.id;
    this.startButton = document.createElement('button');
    this.startButton.type = 'submit';
    this.startButton.className = 'ak-start jp-mod-styled jp-mod-accept';
    this.startButton.textContent = 'Start';
    this.formNotice = document.createElement('div');
    this.formNotice.className = 'ak-form-notice';
    this.formNotice.setAttribute('role', 'status');
    form.append(
      agentLabel,
      this.agentSelect,
      inputLabel,
      this.inputField,
      this.startButton,
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

    const listHeading = document.createElement('h3');
    listHeading.className = 'ak-list-heading';
    listHeading.textContent = 'Tasks';
    listHeading.id = 'agentkit-tasks-list-heading';
    this.list = document.createElement('ul');
    this.list.className = 'ak-task-list';
    this.list.setAttribute('aria-labelledby', listHeading.id);
    this.empty = document.createElement('p');
    this.empty.className = 'ak-empty';
    this.empty.textContent = 'No tasks yet.';
    this.listNotice = document.createElement('div');
    this.listNotice.className = 'ak-list-notice';
    this.listNotice.setAttribute('role', 'status');

    this.node.append(heading, form, listHeading, this.listNotice, this.empty, this.list);
  }

  /** Fetch agents and tasks now. */
  async refresh(): Promise<void> {
    if (this.refreshing || this.isDisposed) {
      return;
    }
    this.refreshing = true;
    try {
      if (!this.agents.length) {
        await this.loadAgents();
      }
      const { tasks } = await this.transport.request<{ tasks: ITask[] }>('tasks');
      this.renderTasks(tasks);
      this.listNotice.textContent = '';
    } catch (reason) {
      this.listNotice.textContent = `Could not load tasks: ${reason instanceof Error ? reason.message : String(reason)}`;
    } finally {
      this.refreshing = false;
    }
  }

  protected onAfterShow(): void {
    void this.refresh();
    window.clearInterval(this.timer);
    this.timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.refresh();
      }
    }, this.interval);
  }

  protected onAfterAttach(): void {
    if (this.isVisible) {
      this.onAfterShow();
    }
  }

  protected onBeforeHide(): void {
    window.clearInterval(this.timer);
    this.timer = 0;
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this.timer);
    this.timer = 0;
  }

  dispose(): void {
    window.clearInterval(this.timer);
    super.dispose();
  }

  private async loadAgents(): Promise<void> {
    const { agents } = await this.transport.request<{ agents: IAgentInfo[] }>('agents');
    this.agents = agents;
    const selected = this.agentSelect.value;
    this.agentSelect.replaceChildren(
      ...agents.map(agent => {
        const option = document.createElement('option');
        option.value = agent.name;
        option.textContent = agent.name;
        option.title = agent.description ?? '';
        return option;
      })
    );
    if (selected) {
      this.agentSelect.value = selected;
    }
  }

  private async start(): Promise<void> {
    const agent = this.agentSelect.value;
    const input = this.inputField.value.trim() || this.inputField.placeholder;
    if (!agent) {
      this.formNotice.textContent = 'No agent to start.';
      return;
    }
    this.startButton.disabled = true;
    this.formNotice.textContent = 'Starting…';
    try {
      const task = await this.transport.request<ITask>('tasks', {
        method: 'POST',
        body: { agent, input }
      });
      this.formNotice.textContent = `Started ${agent}.`;
      this.tasks.set(task.task_id, { ...task, agent, input });
      this.openTask({ ...task, agent, input });
      void this.refresh();
    } catch (reason) {
      this.formNotice.textContent = `Could not start: ${reason instanceof Error ? reason.message : String(reason)}`;
    } finally {
      this.startButton.disabled = false;
    }
  }

  private renderTasks(tasks: ITask[]): void {
    const sorted = [...tasks].sort(
      (a, b) => (toEpochSeconds(b.created_at) ?? 0) - (toEpochSeconds(a.created_at) ?? 0)
    );
    const seen = new Set<string>();
    let previous: HTMLLIElement | null = null;
    for (const task of sorted) {
      seen.add(task.task_id);
      this.tasks.set(task.task_id, task);
      let row = this.rows.get(task.task_id);
      if (!row) {
        row = this.createRow(task);
        this.rows.set(task.task_id, row);
      }
      this.updateRow(row, task);
      // Keep the DOM order without rebuilding: move only what is out of place.
      const expected: ChildNode | null = previous ? previous.nextSibling : this.list.firstChild;
      if (expected !== row.node) {
        this.list.insertBefore(row.node, expected);
      }
      previous = row.node;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.node.remove();
        this.rows.delete(id);
        this.tasks.delete(id);
      }
    }
    this.empty.hidden = sorted.length > 0;
  }

  private createRow(task: ITask): IRow {
    const node = document.createElement('li');
    node.className = 'ak-task-row';
    node.dataset.taskId = task.task_id;
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'ak-task-open';
    const name = document.createElement('span');
    name.className = 'ak-task-agent';
    name.textContent = task.agent;
    const input = document.createElement('span');
    input.className = 'ak-task-input';
    input.textContent = task.input ?? '';
    open.title = `${task.agent}: ${task.input ?? ''}\n${task.task_id}`;
    open.setAttribute('aria-label', `Open ${task.agent} task: ${task.input ?? task.task_id}`);
    open.append(name, input);
    open.addEventListener('click', () => this.openTask(this.tasks.get(task.task_id) ?? task));
    const status = document.createElement('span');
    status.className = 'ak-status ak-task-status';
    const time = document.createElement('span');
    time.className = 'ak-task-time';
    const cancel = document.createElement('button');
    cancel.type = 'button';
    cancel.className = 'ak-task-cancel';
    cancel.textContent = '✕';
    cancel.title = 'Cancel this task';
    cancel.setAttribute('aria-label', `Cancel ${task.agent} task`);
    cancel.addEventListener('click', () => void this.cancelTask(task.task_id, cancel));
    node.append(open, status, time, cancel);
    return { node, status, time, cancel };
  }

  private updateRow(row: IRow, task: ITask): void {
    const status: TaskStatus = task.status;
    if (row.status.dataset.status !== status) {
      row.status.dataset.status = status;
      row.status.textContent = status;
      row.node.dataset.status = status;
    }
    row.cancel.hidden = isFinal(status);
    const start = toEpochSeconds(task.started_at) ?? toEpochSeconds(task.created_at);
    const end = toEpochSeconds(task.finished_at) ?? Date.now() / 1000;
    row.time.textContent = start === null ? '' : formatDuration(Math.max(0, end - start));
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
}
