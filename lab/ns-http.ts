// HTTP(S) requests from inside the lab's namespace (curl through `ip netns exec`): how the lab waits
// for its services, and how tests and operators talk to the BMCs and the service from the host.
import { execInNamespace } from './netns.js';

export interface NsResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  json<T = unknown>(): T;
}

export interface NsRequest {
  method?: string;
  /** user:password for basic auth */
  auth?: string;
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export async function nsFetch(ns: string, url: string, req: NsRequest = {}): Promise<NsResponse> {
  const timeoutS = Math.ceil((req.timeoutMs ?? 30_000) / 1000);
  const args = ['-sS', '-k', '-D', '-', '--max-time', String(timeoutS), '-X', req.method ?? 'GET'];
  if (req.method === 'HEAD') args.splice(args.indexOf('-X'), 2, '-I');
  if (req.auth) args.push('-u', req.auth);
  for (const [k, v] of Object.entries(req.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (req.body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', typeof req.body === 'string' ? req.body : JSON.stringify(req.body));
  args.push(url);
  const r = await execInNamespace(ns, 'curl', args, (timeoutS + 5) * 1000);
  if (r.code !== 0) throw new Error(`${req.method ?? 'GET'} ${url}: curl exit ${r.code}: ${r.stderr.trim()}`);
  // -D - writes every response head (a 100 Continue too); the last one is the answer.
  let rest = r.stdout;
  let head = '';
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    head = end >= 0 ? rest.slice(0, end) : rest;
    rest = end >= 0 ? rest.slice(end + 4) : '';
    if (!/^HTTP\/\S+ 1\d\d/.test(head)) break;
  }
  const [statusLine, ...lines] = head.split('\r\n');
  const status = Number(/^HTTP\/\S+ (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return {
    status,
    headers,
    text: rest,
    json<T>() {
      return JSON.parse(rest) as T;
    },
  };
}

/** Polls until the URL answers (any status below 500), or fails after timeoutMs naming what it waited for. */
export async function waitForHttp(ns: string, url: string, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const r = await nsFetch(ns, url, { timeoutMs: 3_000 });
      if (r.status > 0 && r.status < 500) return;
      last = `status ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not answer at ${url} within ${timeoutMs} ms (${last})`);
}
