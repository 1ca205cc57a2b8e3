import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { CompareView } from './compare';
import { COMPARE_MIMETYPE, ITaskReference, TASK_MIMETYPE, isRecord } from './protocol';
import { DirectBackend } from './stream';
import { ITransport } from './transport';
import { TaskView } from './view';

/** Open a task where the host shows tasks (a main-area tab): a fork's parent, a compared run. */
export type OpenTask = (taskId: string) => void;

/**
 * Renders an `application/vnd.agentkit.task+json` output: the task view,
 * attached by task id straight to the server. It works without the kernel
 * (a reopened notebook, a busy kernel) because it never goes through it.
 */
export class TaskRenderer extends Widget implements IRenderMime.IRenderer {
  private view: TaskView | null = null;

  constructor(
    private readonly transport: ITransport,
    private readonly openTask?: OpenTask
  ) {
    super();
    this.addClass('agentkit-renderer');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[TASK_MIMETYPE];
    const reference: ITaskReference | null =
      isRecord(data) && typeof data.task_id === 'string'
        ? { task_id: data.task_id, agent: typeof data.agent === 'string' ? data.agent : undefined }
        : null;
    if (!reference) {
      this.node.textContent = 'Invalid agentkit task output.';
      return Promise.resolve();
    }
    // An output updated in place (update_display) keeps its live view.
    if (this.view && this.view.taskId === reference.task_id) {
      return Promise.resolve();
    }
    this.view?.dispose();
    this.view = new TaskView({
      taskId: reference.task_id,
      agent: reference.agent,
      backend: new DirectBackend(this.transport),
      openTask: this.openTask
    });
    // The view, and below it the views of the forks made from it.
    this.node.replaceChildren();
    this.view.mount(this.node);
    this.view.start();
    return Promise.resolve();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.view?.dispose();
    this.view = null;
    super.dispose();
  }
}

/** The mime renderer factory; registered at a rank that beats the widget view's. */
export function createRendererFactory(
  transport: ITransport,
  openTask?: OpenTask
): IRenderMime.IRendererFactory {
  return {
    // Safe: the view shows text, and markdown only through JupyterLab's renderer
    // with the model untrusted (sanitized, no script); it talks only to the
    // page's own server with the page's credentials.
    safe: true,
    mimeTypes: [TASK_MIMETYPE],
    createRenderer: () => new TaskRenderer(transport, openTask)
  };
}

/**
 * Renders an `application/vnd.agentkit.compare+json` output (`compare(a, b)` in a
 * notebook): the comparison it carries, as it was when it was made.
 */
export class CompareRenderer extends Widget implements IRenderMime.IRenderer {
  private view: CompareView | null = null;

  constructor(private readonly openTask?: OpenTask) {
    super();
    this.addClass('agentkit-renderer');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[COMPARE_MIMETYPE];
    if (this.view) {
      this.view.update(data);
    } else {
      this.view = new CompareView(data, { openTask: this.openTask });
      this.node.replaceChildren(this.view.node);
    }
    return Promise.resolve();
  }
}

/** The compare mimetype's renderer factory (text only: safe). */
export function createCompareRendererFactory(openTask?: OpenTask): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [COMPARE_MIMETYPE],
    createRenderer: () => new CompareRenderer(openTask)
  };
}
