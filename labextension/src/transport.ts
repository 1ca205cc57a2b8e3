/**
 * How the view reaches the server: REST requests and the WebSocket URL.
 *
 * The JupyterLab plugin implements it with `ServerConnection` (lab-transport.ts);
 * the standalone anywidget module with the page's own configuration
 * (page-transport.ts), so that bundle stays free of JupyterLab packages.
 */

import { ErrorCode } from './protocol';

export interface IRequestInit {
  method?: 'GET' | 'POST' | 'DELETE';
  body?: unknown;
  signal?: AbortSignal;
}

export interface ITransport {
  /** A request under `{base_url}agentkit/api/`, answering the parsed JSON body. */
  request<T>(path: string, init?: IRequestInit): Promise<T>;
  /** The WebSocket URL of a task's stream, replaying the events after `after`. */
  websocketUrl(taskId: string, after: number): string;
}

/** A failed REST call, with the server's stable error code when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Read the body of a response, raising `ApiError` for a non-2xx one. */
export async function readResponse<T>(response: Response): Promise<T> {
  const text = await response.text();
  let body: unknown = undefined;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
  }
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = `${response.status} ${response.statusText}`.trim();
    if (typeof body === 'object' && body !== null && 'error' in body) {
      const error = (body as { error: unknown }).error;
      if (typeof error === 'object' && error !== null) {
        const fields = error as { code?: unknown; message?: unknown };
        code = typeof fields.code === 'string' ? fields.code : code;
        message = typeof fields.message === 'string' ? fields.message : message;
      }
    }
    throw new ApiError(response.status, code, message);
  }
  if (body === undefined && text) {
    throw new ApiError(response.status, ErrorCode.INVALID_JSON, 'The server did not answer JSON.');
  }
  return body as T;
}

/** Join URL parts with single slashes (like `URLExt.join` for our simple cases). */
export function joinUrl(base: string, ...parts: string[]): string {
  let url = base;
  for (const part of parts) {
    if (!part) {
      continue;
    }
    url = url.replace(/\/+$/, '') + '/' + part.replace(/^\/+/, '');
  }
  return url;
}
