/**
 * The JupyterLab / Notebook 7 side of agentkit-jupyter:
 *
 * - a mime renderer for `application/vnd.agentkit.task+json`, ranked before the
 *   ipywidgets view renderer, so every task output is attached by task id
 *   straight to the server (live, or re-rendered when the notebook reopens);
 * - a mime renderer for `application/vnd.agentkit.compare+json` (two runs compared);
 * - the "Agent tasks" side panel, main-area task views and comparisons.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { LabMarkdown } from './lab-markdown';
import { LabTransport } from './lab-transport';
import {
  ComparePanel,
  IPendingCall,
  ITaskRef,
  TaskPanel,
  TasksPanel,
  agentIcon,
  fetchComparison
} from './panel';
import type { ITaskSummary } from './protocol.generated';
import { createCompareRendererFactory, createRendererFactory } from './renderer';
import { revealBidi } from './text';
import { ITaskInfo, setDefaultMarkdown } from './view';

export { TaskView } from './view';
export { CompareView } from './compare';
export { COMPARE_MIMETYPE, TASK_MIMETYPE } from './protocol';

/** A task tab's title: the start of its input (the agent's name without one). */
const TITLE_CHARS = 32;

export function taskTitle(info: Partial<ITaskInfo>): string {
  const input = revealBidi((info.input ?? '').replace(/\s+/g, ' ').trim());
  if (!input) {
    return info.agent ? `Agent: ${info.agent}` : 'Agent task';
  }
  return input.length > TITLE_CHARS ? `${input.slice(0, TITLE_CHARS - 1).trimEnd()}…` : input;
}

namespace CommandIDs {
  export const openTask = 'agentkit:open-task';
  export const showPanel = 'agentkit:show-tasks';
  export const compareTasks = 'agentkit:compare-tasks';
}

/**
 * The ipywidgets view renderer (`@jupyter-widgets/jupyterlab-manager`) is added
 * at rank -10; lower ranks win, so a task output prefers our renderer.
 */
export const RENDERER_RANK = -20;

const rendererPlugin: JupyterFrontEndPlugin<void> = {
  id: 'agentkit-jupyter:renderer',
  description: 'Renders agent task outputs attached to the server by task id.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  activate: (app: JupyterFrontEnd, rendermime: IRenderMimeRegistry) => {
    const transport = new LabTransport(app.serviceManager.serverSettings);
    // Thoughts and answers as markdown: JupyterLab's renderer, sanitized (untrusted).
    setDefaultMarkdown(new LabMarkdown(rendermime));
    // A fork's parent, a compared run: opened in a tab (the panel plugin's command).
    const openTask = (taskId: string): void => {
      if (app.commands.hasCommand(CommandIDs.openTask)) {
        void app.commands.execute(CommandIDs.openTask, { taskId });
      }
    };
    rendermime.addFactory(createRendererFactory(transport, openTask), RENDERER_RANK);
    rendermime.addFactory(createCompareRendererFactory(openTask), RENDERER_RANK);
  }
};

const panelPlugin: JupyterFrontEndPlugin<void> = {
  id: 'agentkit-jupyter:tasks-panel',
  description: 'The Agent tasks side panel.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    if (rendermime) {
      // Also here: a restored task tab may be built before the renderer plugin runs.
      setDefaultMarkdown(new LabMarkdown(rendermime));
    }
    const transport = new LabTransport(app.serviceManager.serverSettings);
    const tracker = new WidgetTracker<MainAreaWidget<TaskPanel>>({ namespace: 'agentkit-task' });
    const compares = new WidgetTracker<MainAreaWidget<ComparePanel>>({ namespace: 'agentkit-compare' });
    const openById = (taskId: string): void => {
      void app.commands.execute(CommandIDs.openTask, { taskId });
    };

    app.commands.addCommand(CommandIDs.openTask, {
      label: args => (args.agent ? `Agent task: ${String(args.agent)}` : 'Open agent task'),
      caption: 'Watch an agent task in the main area',
      execute: args => {
        const taskId = String(args.taskId ?? '');
        if (!taskId) {
          return;
        }
        const existing = tracker.find(widget => widget.content.taskId === taskId);
        if (existing) {
          app.shell.activateById(existing.id);
          return existing;
        }
        const agent = typeof args.agent === 'string' ? args.agent : undefined;
        const input = typeof args.input === 'string' ? args.input : '';
        const content = new TaskPanel(transport, taskId, agent, openById);
        const widget = new MainAreaWidget({ content });
        widget.id = `agentkit-task-${taskId}`;
        // Titled by the input's start, so that tabs of one agent differ (the full
        // input is the caption); the view learns the input from the server.
        const retitle = (info: Partial<ITaskInfo>): void => {
          const label = taskTitle(info);
          const about = info.input ? `: ${revealBidi(info.input)}` : '';
          const caption = `${info.agent ?? 'Agent'} task${about}\n${taskId}`;
          content.title.label = label;
          content.title.caption = caption;
          widget.title.label = label;
          widget.title.caption = caption;
        };
        retitle({ agent, input });
        content.view.onInfo(retitle);
        widget.title.icon = agentIcon;
        widget.title.closable = true;
        void tracker.add(widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
        return widget;
      }
    });

    // Human in the loop: a task that starts waiting for a decision, and is not
    // shown in the current notebook (or tab), is announced with a notification
    // whose button opens it; the notification goes once nothing waits any more.
    const notices = new Map<string, string>();
    const shownHere = (taskId: string): boolean => {
      const current = app.shell.currentWidget;
      const selector = `.ak-task[data-task-id="${CSS.escape(taskId)}"]`;
      return !!current && current.isVisible && current.node.querySelector(selector) !== null;
    };
    const onWaiting = (task: ITaskSummary, calls: IPendingCall[]): void => {
      if (shownHere(task.task_id)) {
        return;
      }
      const previous = notices.get(task.task_id);
      if (previous) {
        Notification.dismiss(previous);
      }
      const tools = [...new Set(calls.map(call => call.tool))].join(', ');
      const agent = revealBidi(task.agent);
      const message = `Agent ${agent} waits for your approval to run ${revealBidi(tools)}.`;
      const id = Notification.warning(message.length > 140 ? `${message.slice(0, 139)}…` : message, {
        autoClose: false,
        actions: [
          {
            label: 'Open task',
            caption: 'Open the task to approve, edit or reject the call',
            displayType: 'accent',
            callback: () => {
              void app.commands.execute(CommandIDs.openTask, {
                taskId: task.task_id,
                agent: task.agent,
                input: task.input ?? ''
              });
            }
          }
        ]
      });
      notices.set(task.task_id, id);
    };
    const onSettled = (taskId: string): void => {
      const id = notices.get(taskId);
      if (id) {
        Notification.dismiss(id);
        notices.delete(taskId);
      }
    };

    app.commands.addCommand(CommandIDs.compareTasks, {
      label: 'Compare two agent tasks',
      caption: 'Show two runs side by side: their steps aligned, what differs marked',
      execute: async args => {
        const a = String(args.a ?? '');
        const b = String(args.b ?? '');
        if (!a || !b) {
          return;
        }
        const comparison = await fetchComparison(transport, a, b);
        const existing = compares.find(widget => widget.content.a === a && widget.content.b === b);
        if (existing) {
          existing.content.view.update(comparison); // the runs may have gone on
          app.shell.activateById(existing.id);
          return existing;
        }
        const content = new ComparePanel(a, b, comparison, openById);
        const widget = new MainAreaWidget({ content });
        widget.id = `agentkit-compare-${a}-${b}`;
        widget.title.label = content.title.label;
        widget.title.caption = content.title.caption;
        widget.title.icon = agentIcon;
        widget.title.closable = true;
        void compares.add(widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
        return widget;
      }
    });

    const panel = new TasksPanel({
      transport,
      openTask: (task: ITaskRef) =>
        void app.commands.execute(CommandIDs.openTask, {
          taskId: task.task_id,
          agent: task.agent,
          input: task.input ?? ''
        }),
      onWaiting,
      onSettled,
      compareTasks: (a: string, b: string) => app.commands.execute(CommandIDs.compareTasks, { a, b })
    });
    app.shell.add(panel, 'left', { rank: 800 });

    app.commands.addCommand(CommandIDs.showPanel, {
      label: 'Show Agent Tasks',
      caption: 'Show the Agent tasks side panel',
      execute: () => app.shell.activateById(panel.id)
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.showPanel, category: 'Agents' });
    }

    if (restorer) {
      restorer.add(panel, 'agentkit-tasks-panel');
      void restorer.restore(tracker, {
        command: CommandIDs.openTask,
        args: widget => ({ taskId: widget.content.taskId, agent: widget.content.agent ?? '' }),
        name: widget => widget.content.taskId
      });
      void restorer.restore(compares, {
        command: CommandIDs.compareTasks,
        args: widget => ({ a: widget.content.a, b: widget.content.b }),
        name: widget => `${widget.content.a}:${widget.content.b}`
      });
    }
  }
};

export default [rendererPlugin, panelPlugin];
