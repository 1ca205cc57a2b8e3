/**
 * Markdown in the JupyterLab plugin: JupyterLab's own markdown renderer, with
 * the registry's sanitizer (the model is untrusted, so the HTML is sanitized
 * and no script runs) and its code highlighting.
 */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import type { IMarkdownRenderer } from './view';

const MARKDOWN = 'text/markdown';

export class LabMarkdown implements IMarkdownRenderer {
  constructor(private readonly rendermime: IRenderMimeRegistry) {}

  async render(source: string, host: HTMLElement): Promise<void> {
    const renderer = this.rendermime.createRenderer(MARKDOWN);
    const model = this.rendermime.createModel({ data: { [MARKDOWN]: source }, trusted: false });
    await renderer.renderModel(model);
    host.replaceChildren(...Array.from(renderer.node.childNodes));
    renderer.dispose();
  }
}
