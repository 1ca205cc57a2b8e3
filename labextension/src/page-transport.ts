import { API_PREFIX, TASK_WS_PREFIX } from './protocol';
import { IRequestInit, ITransport, joinUrl, readResponse } from './transport';

interface IPageConfig {
  baseUrl?: unknown;
  wsUrl?: unknown;
  token?: unknown;
}

/**
 * The transport of the standalone anywidget module: built from the
 * `jupyter-config-data` block a Jupyter server puts in its pages. `null` where
 * the page was not served by a Jupyter server (VS Code, Colab, ...).
 */
export class PageTransport implements ITransport {
  private constructor(
    readonly baseUrl: string,
    readonly wsUrl: string,
    private readonly token: string
  ) {}

  static fromPage(doc: Document = document): PageTransport | null {
    const element = doc.getElementById('jupyter-config-data');
    if (!element || !element.textContent) {
      return null;
    }
    let config: IPageConfig;
    try {
      config = JSON.parse(element.textContent) as IPageConfig;
    } catch {
      return null;
    }
    const location = doc.defaultView?.location;
    if (!location || !location.protocol.startsWith('http')) {
      return null;
    }
    const base = new URL(typeof config.baseUrl === 'string' ? config.baseUrl : '/', location.href);
    const baseUrl = base.href.endsWith('/') ? base.href : base.href + '/';
    let wsUrl: string;
    if (typeof config.wsUrl === 'string' && config.wsUrl) {
      wsUrl = new URL(config.wsUrl, location.href).href;
    } else {
      wsUrl = 'ws' + baseUrl.slice(4);
    }
    const token = typeof config.token === 'string' ? config.token : '';
    return new PageTransport(baseUrl, wsUrl, token);
  }

  async request<T>(path: string, init: IRequestInit = {}): Promise<T> {
    const method = init.method ?? 'GET';
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.token) {
      headers.Authorization = `token ${this.token}`;
    }
    if (method !== 'GET') {
      const xsrf = readCookie('_xsrf');
      if (xsrf) {
        headers['X-XSRFToken'] = xsrf;
      }
    }
    let body: string | undefined;
    if (init.body !== undefined) {
      body = JSON.stringify(init.body);
      headers['Content-Type'] = 'application/json';
    }
    const response = await fetch(joinUrl(this.baseUrl, API_PREFIX, path), {
      method,
      headers,
      body,
      credentials: 'same-origin',
      cache: 'no-store',
      signal: init.signal
    });
    return readResponse<T>(response);
  }

  websocketUrl(taskId: string, after: number): string {
    const url = new URL(joinUrl(this.wsUrl, TASK_WS_PREFIX, encodeURIComponent(taskId)));
    url.searchParams.set('after', String(after));
    // As ServerConnection's `appendToken`: the same host sends its cookie, so the
    // token goes into the URL (and the logs) only for another host.
    if (this.token && url.hostname !== window.location.hostname) {
      url.searchParams.set('token', this.token);
    }
    return url.href;
  }
}

function readCookie(name: string): string {
  const match = document.cookie.match('\\b' + name + '=([^;]*)\\b');
  return match ? decodeURIComponent(match[1]) : '';
}
