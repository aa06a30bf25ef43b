// The service as an operator runs it (`node dist/cli.js serve`): the shutdown drain, builds resumed
// after a graceful stop, and clients that half-close their connection after the request.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SHUTDOWN_DRAIN_MS } from '../../src/service.js';
import { api, haveBaseArtifacts, tinyRequest, waitForBuild } from '../support/service.js';
import { BASE_ARTIFACTS, serviceTempDir, startService, stopAllServices, type ServiceProcess } from '../support/service-process.mjs';

const ready = haveBaseArtifacts();

afterAll(() => stopAllServices());

/** A self-signed certificate for 127.0.0.1 and its key, as PEM files. */
function selfSignedCert(): { cert: string; key: string } {
  const dir = serviceTempDir('tls');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

function tlsFlags(listen = '127.0.0.1:0'): string[] {
  const { cert, key } = selfSignedCert();
  return ['--tls-listen', listen, '--tls-cert', cert, '--tls-key', key];
}

interface RawResponse {
  statusLine: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * Writes one request and half-closes the connection at once (as `nc` without -q does), then reads
 * until the service closes its side.
 */
async function halfClosedRequest(url: string, method: string, target: string, json: unknown): Promise<RawResponse> {
  const { protocol, hostname, port } = new URL(url);
  const body = JSON.stringify(json);
  const request = `${method} ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const socket = protocol === 'https:'
    ? tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false })
    : net.connect({ host: hostname, port: Number(port) });
  await once(socket, protocol === 'https:' ? 'secureConnect' : 'connect');
  socket.end(request);
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  await once(socket, 'close');
  const text = Buffer.concat(chunks).toString('utf8');
  const split = text.indexOf('\r\n\r\n');
  const [statusLine = '', ...headerLines] = text.slice(0, split < 0 ? text.length : split).split('\r\n');
  const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { statusLine, headers, body: split < 0 ? '' : text.slice(split + 4) };
}

/** The service's JSON log lines. */
function logLines(svc: { logs(): string }): Array<Record<string, unknown>> {
  return svc.logs().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Resolves with the error code of a fresh connection attempt, or "connected". */
function connectOutcome(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** A base-artifacts directory holding links to the named files of base-artifacts/out only. */
function baseDirWith(...names: string[]): string {
  const dir = serviceTempDir('base');
  for (const name of names) fs.symlinkSync(path.join(BASE_ARTIFACTS, name), path.join(dir, name));
  return dir;
}

async function submit(url: string, request: Record<string, unknown>): Promise<string> {
  const res = await api(`${url}/api/v1/builds`, { method: 'POST', json: request });
  expect(res.status, res.text).toBe(202);
  return res.body.id as string;
}

/**
 * A GET whose body stays in the socket until the test calls `res.resume()`; `ended` tells whether all
 * of it arrived, how many bytes did and their sha256.
 */
async function pausedDownload(url: string, agent: http.Agent) {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, { agent }, resolve).once('error', reject));
  const hash = createHash('sha256');
  let bytes = 0;
  res.on('data', (d: Buffer) => {
    hash.update(d);
    bytes += d.length;
  });
  res.pause();
  const ended = new Promise<{ complete: boolean; bytes: number; sha256: string }>((resolve) =>
    res.once('close', () => resolve({ complete: res.complete, bytes, sha256: hash.digest('hex') })));
  return { res, ended, bytes: () => bytes };
}

describe.skipIf(!ready)('shutdown drain', () => {
  // Large enough that the ISO cannot sit in the socket buffers when the signal arrives.
  const base = () => baseDirWith('vmlinuz-amd64', 'initramfs-amd64.img');
  const big = (cmdline: string) => tinyRequest({ initramfs: 'initramfs-amd64.img', cmdline });

  test('an artifact download in flight at SIGTERM completes (no new connections meanwhile), then the process exits 0', async () => {
    const svc = await startService({ args: ['--base-artifacts', base(), '--uki-writer', 'direct'] });
    const done = await waitForBuild(svc.url, await submit(svc.url, big('console=ttyS0 drain')));
    const agent = new http.Agent({ keepAlive: true });
    const download = await pausedDownload(done.artifacts.isoUrl, agent);
    const length = Number(download.res.headers['content-length']);
    const etag = download.res.headers.etag;
    expect(length).toBeGreaterThan(60 * 1024 * 1024);

    const stopped = svc.stop('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    expect(svc.proc.exitCode).toBeNull();
    expect(await connectOutcome(svc.url)).toBe('ECONNREFUSED');
    expect(download.bytes()).toBeLessThan(length);

    download.res.resume();
    const got = await download.ended;
    const finished = Date.now();
    expect(got).toEqual({ complete: true, bytes: length, sha256: etag?.replaceAll('"', '') });
    expect(await stopped).toBe(0);
    // The kept-alive connection is closed once its response is done, not after its keep-alive timeout.
    expect(Date.now() - finished).toBeLessThan(2000);
    expect(logLines(svc).at(-1)?.msg).toBe('stopped');
    agent.destroy();
  });

  test(`a download still running ${SHUTDOWN_DRAIN_MS} ms after SIGTERM is cut, and the process exits 0`, async () => {
    const svc = await startService({ args: ['--base-artifacts', base(), '--uki-writer', 'direct'] });
    const done = await waitForBuild(svc.url, await submit(svc.url, big('console=ttyS0 drain-cut')));
    const download = await pausedDownload(done.artifacts.isoUrl, new http.Agent({ keepAlive: false }));
    download.res.on('error', () => {});
    const length = Number(download.res.headers['content-length']);

    const signalled = Date.now();
    expect(await svc.stop('SIGTERM')).toBe(0);
    const took = Date.now() - signalled;
    expect(took).toBeGreaterThanOrEqual(SHUTDOWN_DRAIN_MS - 100);
    expect(took).toBeLessThan(SHUTDOWN_DRAIN_MS + 5000);
    download.res.resume();
    const got = await download.ended;
    expect(got.complete).toBe(false);
    expect(got.bytes).toBeLessThan(length);
  }, 60_000);

  test('a build running at SIGTERM is stopped, and resumed and completed at the next start', async () => {
    const args = ['--base-artifacts', base()];
    const first = await startService({ args });
    const id = await submit(first.url, big('console=ttyS0 resumed'));
    let state = '';
    for (let i = 0; i < 500 && state !== 'running'; i++) {
      state = (await api(`${first.url}/api/v1/builds/${id}`)).body.state;
      if (state !== 'running') await new Promise((r) => setTimeout(r, 10));
    }
    expect(state).toBe('running');
    expect(await first.stop('SIGTERM')).toBe(0);
    const events = logLines(first).filter((l) => l.buildId === id).map((l) => l.msg);
    expect(events).toContain('build stopped: service stopping');
    expect(events).not.toContain('build completed');
    const record = JSON.parse(fs.readFileSync(path.join(first.dataDir as string, 'builds', id, 'build.json'), 'utf8'));
    expect(record.state).toBe('running');

    const second = await startService({ dataDir: first.dataDir, args });
    const done = await waitForBuild(second.url, id);
    expect(done.state).toBe('completed');
    const head = await api(done.artifacts.ukiUrl, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers['content-length'])).toBe(fs.statSync(path.join(first.dataDir as string, 'builds', id, 'uki.efi')).size);
    expect(await second.stop()).toBe(0);
  }, 120_000);
});

describe.skipIf(!ready)('a client that half-closes after its request still gets the answer', () => {
  let svc: ServiceProcess;
  beforeAll(async () => {
    svc = await startService({ args: tlsFlags() });
  });

  test.each(['plain', 'TLS'])('checkin PUT over %s', async (listener) => {
    const url = listener === 'TLS' ? (svc.tlsUrl as string) : svc.url;
    const id = `half-closed-${listener}`;
    const registered = await halfClosedRequest(url, 'POST', `/api/v1/checkins/${id}`, { addresses: [] });
    expect(registered.statusLine).toBe('HTTP/1.1 204 No Content');
    const put = await halfClosedRequest(url, 'PUT', `/api/v1/checkins/${id}`, { addresses: ['192.0.2.61'] });
    expect(put.statusLine).toBe('HTTP/1.1 204 No Content');
    const got = await fetch(`${svc.url}/api/v1/checkins/${id}`);
    expect((await got.json()).addresses).toEqual(['192.0.2.61']);
  });

  test('build POST: the whole JSON answer arrives', async () => {
    const res = await halfClosedRequest(svc.url, 'POST', '/api/v1/builds', tinyRequest({ cmdline: 'console=ttyS0 half-closed' }));
    expect(res.statusLine).toBe('HTTP/1.1 202 Accepted');
    expect(Buffer.byteLength(res.body)).toBe(Number(res.headers['content-length']));
    const { id, statusUrl } = JSON.parse(res.body) as { id: string; statusUrl: string };
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(statusUrl).toBe(`${svc.url}/api/v1/builds/${id}`);
    expect(res.headers.location).toBe(statusUrl);
  });
});
