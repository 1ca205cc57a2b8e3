/**
 * The anywidget front end of `agentkit_jupyter.TaskWidget`: one self-contained
 * ES module (bundled by esbuild, stylesheet included) that renders the same
 * TaskView as the JupyterLab plugin, in any front end that runs ipywidgets.
 * The Python `CompareWidget` uses the same module: its model's `kind` is
 * "compare" and its `comparison` trait the `Comparison` the CompareView shows.
 */

import type { AnyModel, RenderProps } from '@anywidget/types';

import viewCss from '../style/view.css';
import { CompareView } from './compare';
import { purifiedMarkdown } from './markdown';
import { PageTransport } from './page-transport';
import { AutoBackend, IRelayModel } from './stream';
import { TaskView, setDefaultMarkdown } from './view';

// Thoughts and answers as markdown: marked, sanitized by DOMPurify.
setDefaultMarkdown(purifiedMarkdown);

/** The synced traits of the Python `TaskWidget` (and `CompareWidget`: `kind`, `comparison`). */
interface ITaskWidgetModel {
  task_id: string;
  agent: string;
  transport: 'auto' | 'direct' | 'relay';
  /** "compare" for a `CompareWidget`; absent (or "task") for a task. */
  kind?: string;
  comparison?: unknown;
}

const STYLE_ID = 'agentkit-jupyter-task-style';

function injectStyle(root: Node): void {
  const host = root.getRootNode();
  const doc = host instanceof ShadowRoot ? host : document;
  const target = host instanceof ShadowRoot ? host : document.head;
  if (doc.getElementById(STYLE_ID)) {
    return;
  }
  const style = document.createElement('style');
  style.id = STYLE_ID;
  style.textContent = viewCss;
  target.append(style);
}

type Listener = (message: unknown) => void;

/**
 * The widget model as the relay sees it, across renders. anywidget gives each
 * render its own proxy of the model and, when that render goes away, drops the
 * listeners added through it; a view that outlives the render that built it
 * moves its listeners to the newest render's proxy.
 */
class SharedModel implements IRelayModel {
  private readonly listeners = new Set<Listener>();

  constructor(private proxy: AnyModel<ITaskWidgetModel>) {}

  attach(proxy: AnyModel<ITaskWidgetModel>): void {
    if (proxy === this.proxy) {
      return;
    }
    for (const listener of this.listeners) {
      this.proxy.off('msg:custom', listener);
      proxy.on('msg:custom', listener);
    }
    this.proxy = proxy;
  }

  send(content: unknown): void {
    this.proxy.send(content);
  }

  on(event: 'msg:custom', callback: Listener): void {
    this.listeners.add(callback);
    this.proxy.on(event, callback);
  }

  off(event: 'msg:custom', callback: Listener): void {
    this.listeners.delete(callback);
    this.proxy.off(event, callback);
  }
}

/** A task's live view, shared by the renders that show it one after the other. */
interface ISharedView {
  view: TaskView;
  model: SharedModel;
  renders: number;
}

/** Per widget manager (one per kernel connection), per task id. */
const views = new WeakMap<object, Map<string, ISharedView>>();

/** A `CompareWidget`: the comparison, shown again when the trait changes. */
function renderComparison({ model, el }: RenderProps<ITaskWidgetModel>): () => void {
  const view = new CompareView(model.get('comparison'));
  const update = (): void => view.update(model.get('comparison'));
  model.on('change:comparison', update);
  el.classList.add('agentkit-widget');
  el.append(view.node);
  return () => {
    model.off('change:comparison', update);
    view.node.remove();
  };
}

function render(props: RenderProps<ITaskWidgetModel>): () => void {
  const { model, el } = props;
  injectStyle(el);
  if (model.get('kind') === 'compare') {
    return renderComparison(props);
  }
  const taskId = model.get('task_id');
  const managerKey: object = (model as { widget_manager?: object }).widget_manager ?? render;
  let byTask = views.get(managerKey);
  if (!byTask) {
    byTask = new Map();
    views.set(managerKey, byTask);
  }
  // The kernel updates the output in place when the task ends (`update_display`,
  // for the static HTML copy). Front ends then render the widget again, into a
  // new element, the old one being already out of the page: move the live view
  // over instead of building it again from the server, so nothing re-renders,
  // reconnects, or loses what the user expanded. A second display of the same
  // task, still in the page, gets a view of its own.
  let shared = byTask.get(taskId);
  if (shared && !shared.view.isDisposed && !shared.view.node.isConnected) {
    shared.model.attach(model);
  } else {
    const relayModel = new SharedModel(model);
    const preference = model.get('transport') || 'auto';
    const backend = new AutoBackend(PageTransport.fromPage(), relayModel, preference);
    const view = new TaskView({ taskId, agent: model.get('agent'), backend });
    shared = { view, model: relayModel, renders: 0 };
    byTask.set(taskId, shared);
    view.start();
  }
  const entry = shared;
  entry.renders += 1;
  el.classList.add('agentkit-widget');
  // The view, and below it the views of the forks made from it.
  entry.view.mount(el);
  return () => {
    entry.renders -= 1;
    if (entry.renders > 0) {
      return;
    }
    entry.view.dispose();
    if (byTask.get(taskId) === entry) {
      byTask.delete(taskId);
    }
  };
}

export default { render };
