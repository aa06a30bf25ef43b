// Runs the real service for tests: either in-process (fast, for API tests) or as a child process of the
// built CLI (for restarts, SIGKILL and start-up behaviour). Both listen on real sockets.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { request as undiciRequest, Agent } from 'undici';
import { loadConfig } from '../../src/config.js';
import { startService, type RunningService } from '../../src/service.js';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const BASE_ARTIFACTS = path.join(REPO, 'base-artifacts/out');
export const CLI = path.join(REPO, 'dist/cli.js');

/**
 * True when the base artifacts a test needs have been made (`make base-artifacts`). Outside CI a
 * missing artifact skips the test; in CI (CI=true) it is an error, so a broken artifact build can
 * never turn the suite into a green run of skipped tests.
 */
export function haveBaseArtifacts(...names: string[]): boolean {
  const wanted = names.length ? names : ['vmlinuz-amd64', 'initramfs-tiny-amd64.img'];
  const missing = wanted.filter((n) => !fs.existsSync(path.join(BASE_ARTIFACTS, n)));
  if (missing.length && process.env.CI === 'true') {
    throw new Error(`base artifacts missing in CI: ${missing.join(', ')} (make base-artifacts)`);
  }
  return missing.length === 0;
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `uod-${prefix}-`));
}

export interface InProcessService {
  url: string;
  tlsUrl: string | null;
  service: RunningService;
  dataDir: string;
  close(): Promise<void>;
}

/** Starts the service inside the test process on an ephemeral port. `args` are CLI flags. */
export async function startInProcess(args: string[] = [], dataDir = tempDir('data')): Promise<InProcessService> {
  const config = loadConfig(['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--base-artifacts', BASE_ARTIFACTS, ...args], {});
  const logger = pino({ level: process.env.UOD_TEST_LOG ?? 'silent' });
  const service = await startService(config, { logger });
  const url = `http://${service.addresses.http}`;
  const tlsUrl = service.addresses.https ? `https://${service.addresses.https}` : null;
  return { url, tlsUrl, service, dataDir, close: () => service.close() };
}

export interface ChildService {
  url: string;
  proc: ChildProcess;
  dataDir: string;
  logs(): string;
  /** SIGTERM and wait. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait: a crash. */
  kill(): Promise<void>;
}

/**
 * Starts `node dist/cli.js serve` (run `npm run build` first). Resolves once the service logs that it
 * listens; the bound address is read from that log line, so port 0 works.
 */
export async function startChild(opts: { dataDir?: string; args?: string[]; env?: Record<string, string>; port?: number } = {}): Promise<ChildService> {
  const dataDir = opts.dataDir ?? tempDir('data');
  const args = [CLI, 'serve', '--listen', `127.0.0.1:${opts.port ?? 0}`, '--data-dir', dataDir, '--base-artifacts', BASE_ARTIFACTS, ...(opts.args ?? [])];
  const proc = spawn(process.execPath, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout!.on('data', (d) => (output += d));
  proc.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not start:\n${output}`)), 20_000);
    const onData = () => {
      for (const line of output.split('\n')) {
        if (!line.includes('"listening"')) continue;
        const parsed = JSON.parse(line) as { http: string };
        clearTimeout(timer);
        proc.stdout!.off('data', onData);
        resolve(`http://${parsed.http}`);
        return;
      }
    };
    proc.stdout!.on('data', onData);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`service exited with ${code} before listening:\n${output}`));
    });
  });

  return {
    url,
    proc,
    dataDir,
    logs: () => output,
    stop: async () => {
      proc.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

export interface JsonResponse<T = any> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
  text: string;
}

/** One HTTP request with a JSON body (if given); the response body is parsed when it is JSON. */
export async function api<T = any>(
  url: string,
  init: { method?: string; json?: unknown; body?: string; headers?: Record<string, string>; dispatcher?: Agent } = {},
): Promise<JsonResponse<T>> {
  const headers: Record<string, string> = { ...init.headers };
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers['content-type'] ??= 'application/json';
  }
  const res = await undiciRequest(url, { method: (init.method ?? 'GET') as any, headers, body, dispatcher: init.dispatcher });
  const text = await res.body.text();
  let parsed: any = text;
  if (String(res.headers['content-type'] ?? '').includes('json') && text) parsed = JSON.parse(text);
  return { status: res.statusCode, headers: res.headers, body: parsed as T, text };
}

/** Polls a build until it is completed or failed. */
export async function waitForBuild(baseUrl: string, id: string, timeoutMs = 120_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await api(`${baseUrl}/api/v1/builds/${id}`);
    if (res.status === 200 && (res.body.state === 'completed' || res.body.state === 'failed')) return res.body;
    if (Date.now() > deadline) throw new Error(`build ${id} still ${res.body?.state ?? res.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function b64(text: string | Buffer): string {
  return Buffer.from(text).toString('base64');
}

/** A minimal valid request for the tiny amd64 image; override fields as needed. */
export function tinyRequest(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    kernel: 'vmlinuz-amd64',
    initramfs: 'initramfs-tiny-amd64.img',
    cmdline: 'console=ttyS0 quiet',
    architecture: 'amd64',
    ...overrides,
  };
}
