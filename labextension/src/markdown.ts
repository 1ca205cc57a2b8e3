/**
 * Markdown for the anywidget bundle: `marked` renders, DOMPurify sanitizes
 * (HTML profile only: no SVG or MathML, no `<style>`, forms, frames or inline
 * styles; links open in a new tab without an opener), and highlight.js colours
 * fenced code in a few common languages. The JupyterLab plugin uses
 * JupyterLab's own rendermime and sanitizer instead (`lab-markdown.ts`).
 */

import DOMPurify from 'dompurify';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import python from 'highlight.js/lib/languages/python';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import { Marked } from 'marked';

import type { IMarkdownRenderer } from './view';

hljs.registerLanguage('python', python);
hljs.registerLanguage('javascript', javascript);
hljs.registerLanguage('typescript', typescript);
hljs.registerLanguage('json', json);
hljs.registerLanguage('bash', bash);
hljs.registerLanguage('sql', sql);
hljs.registerLanguage('xml', xml);
hljs.registerAliases(['py'], { languageName: 'python' });
hljs.registerAliases(['js'], { languageName: 'javascript' });
hljs.registerAliases(['ts'], { languageName: 'typescript' });
hljs.registerAliases(['sh', 'shell', 'console'], { languageName: 'bash' });
hljs.registerAliases(['html'], { languageName: 'xml' });

const marked = new Marked({ gfm: true, breaks: false, async: false });

const purify = DOMPurify(window);
purify.addHook('afterSanitizeAttributes', node => {
  if (node instanceof HTMLAnchorElement && node.hasAttribute('href')) {
    node.target = '_blank';
    node.rel = 'noopener noreferrer nofollow';
  }
});

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'frame', 'object', 'embed'],
  FORBID_ATTR: ['style', 'srcset']
};

function highlight(root: ParentNode): void {
  for (const code of Array.from(root.querySelectorAll('pre > code'))) {
    const match = /(?:^|\s)language-([\w+-]+)/.exec(code.className);
    const language = match ? match[1].toLowerCase() : '';
    if (!language || !hljs.getLanguage(language)) {
      continue;
    }
    // highlight.js escapes the code it is given: its output holds only its own spans.
    const result = hljs.highlight(code.textContent ?? '', { language, ignoreIllegals: true });
    code.innerHTML = result.value;
    code.classList.add('hljs');
  }
}

/** Untrusted markdown to sanitized DOM. */
export const purifiedMarkdown: IMarkdownRenderer = {
  render(source: string, host: HTMLElement): void {
    const html = marked.parse(source, { async: false });
    const fragment = purify.sanitize(html, { ...PURIFY_CONFIG, RETURN_DOM_FRAGMENT: true });
    highlight(fragment);
    host.replaceChildren(fragment);
  }
};
