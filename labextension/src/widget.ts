/**
 * The anywidget front end of `agentkit_jupyter.TaskWidget`: one self-contained
 * ES module (bundled by esbuild, stylesheet included) that renders the same
 * TaskView as the JupyterLab plugin, in any front end that runs ipywidgets.
 */

import type { AnyModel, RenderProps } from '@anywidget/types';

import viewCss from '../style/view.css';
import { PageTransport } from './page-transport';
import { AutoBackend, IRelayModel } from './stream';
import { TaskView } from './view';

/** The synced traits of the Python `TaskWidget`. */
interface ITaskWidgetModel {
  task_id: string;
  agent: string;
  transport: 'auto' | 'direct' | 'relay';
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

function render({ model, el }: RenderProps<ITaskWidgetModel>): () => void {
  injectStyle(el);
  const relayModel: IRelayModel = {
    send: content => (model as AnyModel<ITaskWidgetModel>).send(content),
    on: (event, callback) => model.on(event, callback),
    off: (event, callback) => model.off(event, callback)
  };
  const preference = model.get('transport') || 'auto';
  const backend = new AutoBackend(PageTransport.fromPage(), relayModel, preference);
  const view = new TaskView({
    taskId: model.get('task_id'),
    agent: model.get('agent'),
    backend
  });
  el.classList.add('agentkit-widget');
  el.append(view.node);
  view.start();
  return () => view.dispose();
}

export default { render };
