import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { API_PREFIX, TASK_WS_PREFIX } from './protocol';
import { IRequestInit, ITransport, readResponse } from './transport';

/**
 * The transport inside JupyterLab and Notebook 7: `ServerConnection` adds the
 * page's credentials (cookie and `_xsrf`, or the token) to every request.
 */
export class LabTransport implements ITransport {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  async request<T>(path: string, init: IRequestInit = {}): Promise<T> {
    const url = URLExt.join(this.settings.baseUrl, API_PREFIX, path);
    const request: RequestInit = { method: init.method ?? 'GET', signal: init.signal };
    if (init.body !== undefined) {
      request.body = JSON.stringify(init.body);
      request.headers = { 'Content-Type': 'application/json' };
    }
    const response = await ServerConnection.makeRequest(url, request, this.settings);
    return readResponse<T>(response);
  }

  websocketUrl(taskId: string, after: number): string {
    const url = URLExt.join(this.settings.wsUrl, TASK_WS_PREFIX, encodeURIComponent(taskId));
    const query: { [key: string]: string } = { after: String(after) };
    if (this.settings.appendToken && this.settings.token) {
      query.token = this.settings.token;
    }
    return url + URLExt.objectToQueryString(query);
  }
}
