// Runs the real service for tests: either in-process (fast, for API tests) or as a child process of the
// built CLI (for restarts, SIGKILL and start-up behaviour; service-process.mjs). Both listen on real sockets.
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';
import pino from 'pino';
import { request as undiciRequest, Agent } from 'undici';
import { loadConfig } from '../../src/config.js';
import { startService as startInProcessService, type RunningService } from '../../src/service.js';
import { BASE_ARTIFACTS, serviceTempDir, startService, type ServiceProcess } from './service-process.mjs';

export { BASE_ARTIFACTS, CLI, REPO } from './service-process.mjs';


/** A fresh directory under the OS temp dir, removed when the test process exits. */
export function tempDir(prefix: string): string {
  return serviceTempDir(prefix);
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
  const service = await startInProcessService(config, { logger });
  const url = `http://${service.addresses.http}`;
  const tlsUrl = service.addresses.https ? `https://${service.addresses.https}` : null;
  return { url, tlsUrl, service, dataDir, close: () => service.close() };
}

/** The service as a child process (`node dist/cli.js serve`); see service-process.mjs. */
export type ChildService = ServiceProcess & { dataDir: string };

/**
 * Starts `node dist/cli.js serve` on 127.0.0.1 (port 0 unless given) and resolves once it listens. A data
 * directory not given is made and removed at exit.
 */
export async function startChild(opts: { dataDir?: string; args?: string[]; env?: Record<string, string | undefined>; port?: number } = {}): Promise<ChildService> {
  const dataDir = opts.dataDir ?? tempDir('data');
  const child = await startService({ dataDir, args: opts.args, env: opts.env, listen: `127.0.0.1:${opts.port ?? 0}` });
  return { ...child, dataDir };
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

/**
 * Streams an artifact from its URL (as a BMC or firmware would fetch it) to a file of the same name in
 * a fresh directory named after `name`; fails unless the answer is 200.
 */
export async function downloadArtifact(url: string, name: string): Promise<string> {
  const res = await fetch(url);
  if (res.status !== 200 || !res.body) throw new Error(`${url}: expected 200, got ${res.status}`);
  const file = path.join(tempDir(name), path.basename(new URL(url).pathname));
  await pipeline(Readable.fromWeb(res.body as ReadableStream<Uint8Array>), fs.createWriteStream(file));
  return file;
}

/** A tiny request whose NoCloud seed names a server (meta-data local-hostname) and a checkin URL, as the orchestrator's inspection builds do. */
export function seededTinyRequest(cmdline: string, hostname: string, checkinId: string): Record<string, unknown> {
  return tinyRequest({
    cmdline,
    files: [
      { path: '/var/lib/cloud/seed/nocloud/meta-data', contentBase64: b64(`instance-id: ${checkinId}\nlocal-hostname: ${hostname}\n`) },
      { path: '/var/lib/cloud/seed/nocloud/checkin-url', contentBase64: b64(`http://192.0.2.1:8080/api/v1/checkins/${checkinId}`) },
    ],
  });
}
