// The service as an operator runs it (`node dist/cli.js serve`): explicit and default public URLs,
// every option's environment variable, SIGINT and SIGTERM, the shutdown drain, builds resumed after a
// graceful stop, and clients that half-close their connection after the request.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { OPTIONS, type OptionKey } from '../../src/config.js';
import { SHUTDOWN_DRAIN_MS } from '../../src/service.js';
import { api, tinyRequest, waitForBuild } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { BASE_ARTIFACTS, serviceTempDir, spawnService, startService, stopAllServices, type ServiceProcess } from '../support/service-process.mjs';
import { checkEveryResponse } from '../support/openapi.js';
import { secureBootKeyPair } from '../support/secure-boot.js';

// Every response this file receives must be described by openapi.yaml.
checkEveryResponse();

requireBaseArtifacts();

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

const insecure = new Agent({ connect: { rejectUnauthorized: false } });

/** The service's JSON log lines. */
function logLines(svc: { logs(): string }): Array<Record<string, unknown>> {
  return svc.logs().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

function logLine(svc: { logs(): string }, msg: string): Record<string, unknown> {
  const line = logLines(svc).find((l) => l.msg === msg);
  if (!line) throw new Error(`no "${msg}" line in the log:\n${svc.logs()}`);
  return line;
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

describe('public URLs', () => {
  test('--public-url and --public-tls-url are the bases of statusUrl, Location and the artifact URLs', async () => {
    const svc = await startService({
      args: [...tlsFlags(), '--uki-writer', 'direct', '--public-url', 'http://uod.example:8080/prefix/', '--public-tls-url', 'https://uod-tls.example'],
    });
    expect(logLine(svc, 'listening')).toMatchObject({ publicUrl: 'http://uod.example:8080/prefix', publicTlsUrl: 'https://uod-tls.example' });

    const post = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ cmdline: 'console=ttyS0 explicit-urls' }) });
    const id = post.body.id as string;
    expect(post.status).toBe(202);
    expect(post.body.statusUrl).toBe(`http://uod.example:8080/prefix/api/v1/builds/${id}`);
    expect(post.headers.location).toBe(`http://uod.example:8080/prefix/api/v1/builds/${id}`);
    const tlsId = await submit(svc.url, tinyRequest({ cmdline: 'console=ttyS0 explicit-urls', tlsArtifacts: true }));

    expect((await waitForBuild(svc.url, id)).artifacts).toEqual({
      ukiUrl: `http://uod.example:8080/prefix/artifacts/${id}/uki.efi`,
      isoUrl: `http://uod.example:8080/prefix/artifacts/${id}/boot.iso`,
    });
    expect((await waitForBuild(svc.url, tlsId)).artifacts).toEqual({
      ukiUrl: `https://uod-tls.example/artifacts/${tlsId}/uki.efi`,
      isoUrl: `https://uod-tls.example/artifacts/${tlsId}/boot.iso`,
    });
    const list = (await api(`${svc.url}/api/v1/builds`)).body as Array<{ id: string; artifacts: { isoUrl: string } }>;
    expect(list.map((b) => [b.id, b.artifacts.isoUrl]).sort()).toEqual(
      [[id, `http://uod.example:8080/prefix/artifacts/${id}/boot.iso`], [tlsId, `https://uod-tls.example/artifacts/${tlsId}/boot.iso`]].sort(),
    );
  });

  test('without them, the URLs name the ports the port-0 listeners bound, and reach the service', async () => {
    const svc = await startService({ args: [...tlsFlags('127.0.0.1:0'), '--uki-writer', 'direct'] });
    const tlsUrl = svc.tlsUrl as string;
    expect(svc.url).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    expect(tlsUrl).toMatch(/^https:\/\/127\.0\.0\.1:[1-9]\d*$/);
    expect(logLine(svc, 'listening')).toMatchObject({ publicUrl: svc.url, publicTlsUrl: tlsUrl });

    const post = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ cmdline: 'console=ttyS0 default-urls', tlsArtifacts: true }) });
    expect(post.body.statusUrl).toBe(`${svc.url}/api/v1/builds/${post.body.id}`);
    const done = await waitForBuild(svc.url, post.body.id);
    expect((await api(post.body.statusUrl)).body).toEqual(done);
    expect(done.artifacts.isoUrl).toBe(`${tlsUrl}/artifacts/${post.body.id}/boot.iso`);
    const head = await api(done.artifacts.isoUrl, { method: 'HEAD', dispatcher: insecure });
    expect(head.status).toBe(200);
  });
});

describe('every option is read from its environment variable', () => {
  test('a service started without flags takes each value from the environment', async () => {
    const { cert, key } = selfSignedCert();
    const dataDir = serviceTempDir('env-data');
    const baseArtifacts = baseDirWith('vmlinuz-amd64', 'initramfs-tiny-amd64.img');
    const sb = secureBootKeyPair(serviceTempDir('sb'), 'env');
    const values: Record<OptionKey, string> = {
      listen: '127.0.0.3:0',
      tlsListen: '127.0.0.1:0',
      tlsCert: cert,
      tlsKey: key,
      publicUrl: 'http://uod-env.example:8080/env',
      publicTlsUrl: 'https://uod-env.example:8443',
      dataDir,
      baseArtifacts,
      trustedCidrs: '127.0.0.1/32,192.0.2.0/24',
      buildConcurrency: '1',
      queueSize: '1',
      maxBodyBytes: '4096',
      maxFiles: '2',
      ukiWriter: 'objcopy',
      secureBootKey: sb.key,
      secureBootCert: sb.cert,
      logLevel: 'debug',
    };
    const env = Object.fromEntries(Object.entries(values).map(([k, v]) => [OPTIONS[k as OptionKey].env, v]));
    const svc = await startService({ listen: null, dataDir: null, baseArtifacts: null, env });

    // The start-up line names every option's effective value: each is the variable's.
    expect(logLine(svc, 'starting').config).toEqual(values);

    // ...and each takes effect.
    expect(svc.url).toMatch(/^http:\/\/127\.0\.0\.3:[1-9]\d*$/);
    const health = await api(`${svc.tlsUrl}/healthz`, { dispatcher: insecure });
    expect([health.status, health.text]).toEqual([200, 'ok']);
    expect((await api(`${svc.url}/api/v1/builds`)).status).toBe(200);
    expect((await api(`${svc.url}/api/v1/builds`, { dispatcher: new Agent({ localAddress: '127.0.0.2' }) })).status).toBe(403);
    expect(logLines(svc).some((l) => l.level === 20 && l.msg === 'request')).toBe(true);

    const tooBig = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ cmdline: 'x'.repeat(4096) }) });
    expect(tooBig.status).toBe(413);
    const file = (n: number) => ({ path: `/etc/f${n}`, contentBase64: '' });
    const tooMany = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ files: [file(1), file(2), file(3)] }) });
    expect([tooMany.status, tooMany.body.message]).toEqual([400, 'files: must have at most 2 entries']);
    const notInBase = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ initramfs: 'initramfs-amd64.img' }) });
    expect([notInBase.status, notInBase.body.message]).toEqual([400, 'initramfs: no base artifact named "initramfs-amd64.img" in the base artifacts directory']);

    // One build runs and one waits; the third finds the queue full.
    const posts = await Promise.all([1, 2, 3].map((n) =>
      api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ cmdline: `console=ttyS0 env-${n}`, tlsArtifacts: true }) })));
    expect(posts.map((p) => p.status).sort()).toEqual([202, 202, 503]);
    const accepted = posts.find((p) => p.status === 202)!;
    const id = accepted.body.id as string;
    expect(accepted.body.statusUrl).toBe(`http://uod-env.example:8080/env/api/v1/builds/${id}`);
    expect((await waitForBuild(svc.url, id)).artifacts.isoUrl).toBe(`https://uod-env.example:8443/artifacts/${id}/boot.iso`);
    expect(fs.readdirSync(path.join(dataDir, 'builds', id)).sort()).toEqual(['boot.iso', 'build.json', 'uki.efi']);
  });
});

describe('signals', () => {
  test.each(['SIGINT', 'SIGTERM'] as const)('%s stops the service cleanly: exit code 0, listeners closed, an idle keep-alive connection does not hold it', async (signal) => {
    const svc = await startService();
    expect((await api(`${svc.url}/healthz`)).status).toBe(200);
    const started = Date.now();
    expect(await svc.stop(signal)).toBe(0);
    expect(Date.now() - started).toBeLessThan(SHUTDOWN_DRAIN_MS / 2);
    expect(await svc.exited).toEqual({ code: 0, signal: null });
    expect(logLines(svc).at(-1)?.msg).toBe('stopped');
    expect(await connectOutcome(svc.url)).toBe('ECONNREFUSED');
  });

  test('SIGTERM during start-up also ends in a graceful stop (exit code 0)', async () => {
    const spawned = spawnService();
    for (let i = 0; i < 2000 && !spawned.logs().includes('"msg":"starting"'); i++) await new Promise((r) => setTimeout(r, 5));
    expect(spawned.logs()).not.toContain('"msg":"listening"');
    spawned.proc.kill('SIGTERM');
    expect(await spawned.exited).toEqual({ code: 0, signal: null });
    // The harness gives the pipes 2 s after the exit; on a loaded machine the last line may come later.
    for (let i = 0; i < 100 && !spawned.logs().includes('"msg":"stopped"'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(logLines(spawned).map((l) => l.msg).slice(-2)).toEqual(['listening', 'stopped']);
  });
});

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

describe('shutdown drain', () => {
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

describe('a client that half-closes after its request still gets the answer', () => {
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
