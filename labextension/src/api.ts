/**
 * The openshell REST API as the extension uses it. Every call goes through Jupyter's ServerConnection
 * (its token / XSRF handling and base URL); the extension holds no key of its own. The server decides
 * what a user may see (own sandboxes only) and answers errors as {message, issues?}.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { Issue } from './diagnostics';
import type { Flow, FlowPage } from './stream';
import type { Variant } from './suggest';

export const API = 'openshell/api';

export interface Sandbox {
  name: string;
  state?: string;
  backend?: string;
  /** Per layer ({network, filesystem, syscalls, user, resources}: what makes each wall); a string from older
   * servers ("cgroup v2"). */
  enforcement?: string | Record<string, unknown> | null;
  image?: string | null;
  /** The policy version the proxy enforces now (null when the proxy does not run or has not loaded it). */
  policy_version?: string | null;
  created?: number | string | null;
  gpu?: boolean;
  owner?: string | null;
  workspace?: string | null;
  details?: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface PolicyText {
  name: string;
  version: string;
  yaml: string;
}

export interface Applied {
  name: string;
  version: string;
  warnings: string[];
  in_force: boolean;
  diff: string;
}

export interface HistoryEntry {
  version: string;
  ts_ms: number;
  applied: string;
  yaml: string;
}

export interface Validation {
  valid: boolean;
  version: string | null;
  issues: Issue[];
}

export interface Preset {
  name: string;
  description: string;
  yaml: string;
}

export interface GpuStatus {
  available: boolean;
  reason: string;
  driver: string | null;
  gpus: Array<Record<string, unknown>>;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly issues: Issue[] = []
  ) {
    super(message);
  }
}

export async function request<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API, path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (err) {
    throw new ApiError(0, `the Jupyter server cannot be reached: ${err}`);
  }
  const text = await response.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text };
    }
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      (data && data.message) || `${response.status} ${response.statusText}`,
      (data && data.issues) || []
    );
  }
  return data as T;
}

const q = encodeURIComponent;

function post(body: unknown, method = 'POST'): RequestInit {
  return { method, body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } };
}

export const api = {
  sandboxes: () => request<{ sandboxes: Sandbox[] }>('sandboxes').then(r => r.sandboxes),
  sandbox: (name: string) => request<Sandbox>(`sandboxes/${q(name)}`),
  stop: (name: string) => request<Sandbox>(`sandboxes/${q(name)}/stop`, { method: 'POST' }),
  remove: (name: string) => request<null>(`sandboxes/${q(name)}`, { method: 'DELETE' }),
  logs: (name: string) =>
    request<{ name: string; logs: string; truncated: boolean }>(`sandboxes/${q(name)}/logs`),
  policy: (name: string) => request<PolicyText>(`policies/${q(name)}`),
  apply: (name: string, yaml: string) => request<Applied>(`policies/${q(name)}`, post({ yaml }, 'PUT')),
  history: (name: string) =>
    request<{ name: string; history: HistoryEntry[] }>(`policies/${q(name)}/history`).then(r => r.history),
  validate: (yaml: string) => request<Validation>('policy/validate', post({ yaml })),
  presets: () => request<{ presets: Preset[] }>('policy/presets').then(r => r.presets),
  insertPreset: (name: string, yaml: string) =>
    request<{ policy: string }>('policy/presets', post({ name, yaml })),
  variants: (method: string, url: string, sandbox: string) =>
    request<{ variants: Variant[] }>('policy/variants', post({ method, url, sandbox })).then(r => r.variants),
  kernelSandbox: (kernelId: string) =>
    request<{ kernel_id: string; sandbox: Sandbox }>(`kernels/${q(kernelId)}`),
  flows: (after: number | null, limit = 200) =>
    request<FlowPage & { limit: number }>(
      `flows?limit=${limit}${after === null ? '' : `&after=${after}`}`
    ),
  gpu: () => request<GpuStatus>('gpu'),
  docs: (page: string) => request<{ name: string; markdown: string }>(`docs/${q(page)}`)
};

/** The websocket URL of the flow stream, resuming after `after` (with the token where Jupyter uses one). */
export function streamUrl(after: number | null): string {
  const settings = ServerConnection.makeSettings();
  const params = new URLSearchParams();
  if (after !== null) {
    params.set('after', String(after));
  }
  if (settings.appendToken && settings.token) {
    params.set('token', settings.token);
  }
  const query = params.toString();
  return URLExt.join(settings.wsUrl, API, 'flows/stream') + (query ? `?${query}` : '');
}

export function openSocket(url: string): WebSocket {
  const settings = ServerConnection.makeSettings();
  return new settings.WebSocket(url);
}

export type { Flow };
