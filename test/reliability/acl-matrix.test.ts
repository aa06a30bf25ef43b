// Every route against every kind of client: trusted, untrusted, IPv4-mapped IPv6 (both), IPv6 ::1, a
// spoofed X-Forwarded-For in both directions, on the plain and the TLS listener. Open routes must really
// work for untrusted clients (bytes served, checkin stored); closed ones must answer 403 and change nothing.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isAddressIn, parseCidrList } from '../../src/net/cidr.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { tinyRequest } from '../support/service.js';
import { makeBaseDir, removeTempRoots, tempRoot } from './fixtures.js';
import { until } from '../support/until.js';
import { stopAllServices, startService, type ServiceProcess } from '../support/service-process.mjs';

requireBaseArtifacts();

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json?: any;
}

async function call(url: string, method: string, opts: { dispatcher?: Agent; json?: unknown; headers?: Record<string, string> } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...opts.headers };
  let body: string | undefined;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['content-type'] = 'application/json';
  }
  const res = await request(url, { method: method as 'GET', headers, body, dispatcher: opts.dispatcher });
  const buf = Buffer.from(await res.body.arrayBuffer());
  const reply: Reply = { status: res.statusCode, headers: res.headers, body: buf };
  if (String(res.headers['content-type'] ?? '').includes('json') && buf.length) reply.json = JSON.parse(buf.toString());
  return reply;
}

interface Ctx {
  /** A completed build on this service. */
  id: string;
  isoSize: number;
  ukiSize: number;
  /** A column-unique suffix, so one column's writes are told apart from another's. */
  tag: string;
}

interface Route {
  method: string;
  path: (c: Ctx) => string;
  json?: (c: Ctx) => unknown;
  headers?: Record<string, string>;
  /** Untrusted clients may call it. */
  open: boolean;
  /** Status for a client allowed to call it. */
  status: number;
  /** Extra checks on an allowed answer. */
  check?: (r: Reply, c: Ctx) => string | null;
  /** Changes state that later routes rely on: run last in a column. */
  destructive?: boolean;
}

const ROUTES: Route[] = [
  { method: 'GET', path: () => '/healthz', open: true, status: 200, check: (r) => (r.body.toString() === 'ok' ? null : 'body is not "ok"') },
  { method: 'HEAD', path: () => '/healthz', open: true, status: 200 },
  { method: 'GET', path: () => '/metrics', open: false, status: 200 },
  { method: 'GET', path: () => '/api/v1/builds', open: false, status: 200 },
  { method: 'HEAD', path: () => '/api/v1/builds', open: false, status: 200 },
  { method: 'POST', path: () => '/api/v1/builds', json: () => tinyRequest({ cmdline: 'console=ttyS0 acl' }), open: false, status: 202 },
  { method: 'GET', path: (c) => `/api/v1/builds/${c.id}`, open: false, status: 200 },
  { method: 'DELETE', path: () => `/api/v1/builds/${'e'.repeat(64)}`, open: false, status: 404 },
  { method: 'POST', path: (c) => `/api/v1/checkins/acl-new-${c.tag}`, json: () => ({ addresses: [] }), open: false, status: 204 },
  { method: 'PUT', path: () => '/api/v1/checkins/acl-open', json: (c) => ({ addresses: [`192.0.2.${c.tag.length}`] }), open: true, status: 204 },
  { method: 'PUT', path: () => '/api/v1/checkins/acl-unregistered', json: () => ({ addresses: ['192.0.2.99'] }), open: true, status: 404 },
  { method: 'GET', path: () => '/api/v1/checkins/acl-open', open: false, status: 200 },
  { method: 'GET', path: () => '/api/v1/checkins', open: false, status: 404 },
  { method: 'DELETE', path: () => '/api/v1/checkins/acl-never-registered', open: false, status: 404 },
  {
    method: 'GET', path: (c) => `/artifacts/${c.id}/boot.iso`, open: true, status: 200,
    check: (r, c) => (r.body.length === c.isoSize ? null : `got ${r.body.length} of ${c.isoSize} bytes`),
  },
  {
    method: 'GET', path: (c) => `/artifacts/${c.id}/uki.efi`, headers: { range: 'bytes=0-1' }, open: true, status: 206,
    check: (r) => (r.body.toString('latin1') === 'MZ' ? null : 'the UKI does not start with MZ'),
  },
  {
    method: 'HEAD', path: (c) => `/artifacts/${c.id}/uki.efi`, open: true, status: 200,
    check: (r, c) => (r.headers['content-length'] === String(c.ukiSize) ? null : `Content-Length ${String(r.headers['content-length'])}`),
  },
  { method: 'GET', path: (c) => `/artifacts/${c.id}/build.json`, open: true, status: 404 },
  { method: 'DELETE', path: (c) => `/artifacts/${c.id}/uki.efi`, open: false, status: 405 },
  { method: 'PUT', path: (c) => `/artifacts/${c.id}/boot.iso`, open: false, status: 405 },
  { method: 'GET', path: () => '/no/such/route', open: false, status: 404 },
  { method: 'PATCH', path: () => '/api/v1/builds', open: false, status: 404 },
  { method: 'OPTIONS', path: () => '/api/v1/checkins/acl-open', open: false, status: 404 },
  { method: 'DELETE', path: () => '/api/v1/checkins', open: false, status: 204, destructive: true },
  { method: 'DELETE', path: () => '/api/v1/builds', open: false, status: 204, destructive: true },
];

interface Column {
  name: string;
  /** Which service (see SERVICES) and how to reach it. */
  service: 'v4' | 'dual' | 'dual-v4-only';
  origin: (svc: ServiceProcess) => string;
  dispatcher: Agent;
  headers?: Record<string, string>;
  trusted: boolean;
  /** The address a 403 must name (the normalized client address). */
  shownAs: string;
}

const plain = new Agent();
const from2 = new Agent({ localAddress: '127.0.0.2' });
const tls = new Agent({ connect: { rejectUnauthorized: false } });
const tlsFrom2 = new Agent({ localAddress: '127.0.0.2', connect: { rejectUnauthorized: false } });
const port = (url: string) => new URL(url).port;
const SPOOF = { 'x-forwarded-for': '127.0.0.1', forwarded: 'for=127.0.0.1', 'x-real-ip': '127.0.0.1', 'x-client-ip': '127.0.0.1' };
const ANTI_SPOOF = { 'x-forwarded-for': '203.0.113.9', forwarded: 'for=203.0.113.9', 'x-real-ip': '203.0.113.9' };

const COLUMNS: Column[] = [
  { name: 'trusted IPv4 127.0.0.1', service: 'v4', origin: (s) => s.url, dispatcher: plain, trusted: true, shownAs: '127.0.0.1' },
  { name: 'untrusted IPv4 127.0.0.2', service: 'v4', origin: (s) => s.url, dispatcher: from2, trusted: false, shownAs: '127.0.0.2' },
  { name: 'untrusted 127.0.0.2 spoofing X-Forwarded-For: 127.0.0.1', service: 'v4', origin: (s) => s.url, dispatcher: from2, headers: SPOOF, trusted: false, shownAs: '127.0.0.2' },
  { name: 'trusted 127.0.0.1 with X-Forwarded-For naming an outsider', service: 'v4', origin: (s) => s.url, dispatcher: plain, headers: ANTI_SPOOF, trusted: true, shownAs: '127.0.0.1' },
  { name: 'trusted over TLS', service: 'v4', origin: (s) => s.tlsUrl as string, dispatcher: tls, trusted: true, shownAs: '127.0.0.1' },
  { name: 'untrusted over TLS', service: 'v4', origin: (s) => s.tlsUrl as string, dispatcher: tlsFrom2, trusted: false, shownAs: '127.0.0.2' },
  { name: 'untrusted over TLS spoofing X-Forwarded-For', service: 'v4', origin: (s) => s.tlsUrl as string, dispatcher: tlsFrom2, headers: SPOOF, trusted: false, shownAs: '127.0.0.2' },
  { name: 'IPv4-mapped ::ffff:127.0.0.1 (trusted)', service: 'dual', origin: (s) => `http://127.0.0.1:${port(s.url)}`, dispatcher: plain, trusted: true, shownAs: '127.0.0.1' },
  { name: 'IPv4-mapped ::ffff:127.0.0.2 (untrusted)', service: 'dual', origin: (s) => `http://127.0.0.1:${port(s.url)}`, dispatcher: from2, trusted: false, shownAs: '127.0.0.2' },
  { name: 'IPv4-mapped ::ffff:127.0.0.2 spoofing X-Forwarded-For', service: 'dual', origin: (s) => `http://127.0.0.1:${port(s.url)}`, dispatcher: from2, headers: SPOOF, trusted: false, shownAs: '127.0.0.2' },
  { name: 'IPv6 ::1 listed in ::1/128 (trusted)', service: 'dual', origin: (s) => `http://[::1]:${port(s.url)}`, dispatcher: plain, trusted: true, shownAs: '::1' },
  { name: 'IPv6 ::1 under an IPv4-only list (untrusted)', service: 'dual-v4-only', origin: (s) => `http://[::1]:${port(s.url)}`, dispatcher: plain, trusted: false, shownAs: '::1' },
  { name: 'IPv6 ::1 spoofing X-Forwarded-For under an IPv4-only list', service: 'dual-v4-only', origin: (s) => `http://[::1]:${port(s.url)}`, dispatcher: plain, headers: SPOOF, trusted: false, shownAs: '::1' },
];

describe('ACL: every route x every kind of client', () => {
  const services = new Map<Column['service'], { svc: ServiceProcess; admin: string }>();
  let base: string;

  beforeAll(async () => {
    const root = tempRoot('acl');
    base = makeBaseDir(path.join(root, 'base'));
    const cert = path.join(root, 'cert.pem');
    const key = path.join(root, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const start = async (name: Column['service'], args: string[], listen: string) => {
      const svc = await startService({ dataDir: path.join(root, `data-${name}`), baseArtifacts: base, listen, args });
      services.set(name, { svc, admin: `http://127.0.0.1:${port(svc.url)}` });
    };
    await Promise.all([
      start('v4', ['--trusted-cidrs', '127.0.0.1/32', '--tls-listen', '127.0.0.1:0', '--tls-cert', cert, '--tls-key', key], '127.0.0.1:0'),
      start('dual', ['--trusted-cidrs', '127.0.0.1/32,::1/128'], '[::]:0'),
      start('dual-v4-only', ['--trusted-cidrs', '127.0.0.0/8'], '[::]:0'),
    ]);
  }, 120_000);

  afterAll(async () => {
    await stopAllServices();
    removeTempRoots();
  });

  /** Through a trusted client: a completed build and a registered checkin, as every column expects. */
  async function prepare(admin: string, tag: string): Promise<Ctx> {
    const res = await call(`${admin}/api/v1/builds`, 'POST', { json: tinyRequest({ cmdline: 'console=ttyS0 acl' }) });
    expect(res.status).toBe(202);
    const id = res.json.id as string;
    const done = await until('the ACL build', 120_000, async () => {
      const s = (await call(`${admin}/api/v1/builds/${id}`, 'GET')).json;
      return s.state === 'completed' || s.state === 'failed' ? s : undefined;
    }, 100);
    expect(done.state).toBe('completed');
    expect((await call(`${admin}/api/v1/checkins/acl-open`, 'POST', { json: { addresses: [] } })).status).toBe(204);
    const head = async (file: string) => Number((await call(`${admin}/artifacts/${id}/${file}`, 'HEAD')).headers['content-length']);
    return { id, isoSize: await head('boot.iso'), ukiSize: await head('uki.efi'), tag };
  }

  test.each(COLUMNS.map((c, i) => [c.name, c, i] as const))('%s', async (_name, column, index) => {
    const { svc, admin } = services.get(column.service)!;
    const ctx = await prepare(admin, `c${index}`);
    const origin = column.origin(svc);
    const wrong: string[] = [];
    const ordered = [...ROUTES.filter((r) => !r.destructive), ...ROUTES.filter((r) => r.destructive)];
    for (const route of ordered) {
      const label = `${route.method} ${route.path(ctx)}`;
      const res = await call(`${origin}${route.path(ctx)}`, route.method, {
        dispatcher: column.dispatcher, json: route.json?.(ctx), headers: { ...column.headers, ...route.headers },
      });
      if (column.trusted || route.open) {
        if (res.status !== route.status) wrong.push(`${label}: ${res.status}, expected ${route.status} ${res.body.toString().slice(0, 120)}`);
        else if (route.check) {
          const problem = route.check(res, ctx);
          if (problem) wrong.push(`${label}: ${problem}`);
        }
      } else {
        const message = res.json?.message as string | undefined;
        if (res.status !== 403) wrong.push(`${label}: ${res.status}, expected 403`);
        // a HEAD answer has no body to carry the message
        else if (route.method !== 'HEAD' && !message?.startsWith(`forbidden: ${column.shownAs} is not in a trusted network`)) wrong.push(`${label}: 403 message ${JSON.stringify(message)}`);
      }
    }
    expect(wrong).toEqual([]);

    // What the column did, seen by a trusted client.
    const builds = (await call(`${admin}/api/v1/builds`, 'GET')).json as unknown[];
    const registered = (await call(`${admin}/api/v1/checkins/acl-new-${ctx.tag}`, 'GET')).status;
    const open = await call(`${admin}/api/v1/checkins/acl-open`, 'GET');
    if (column.trusted) {
      expect(builds).toEqual([]); // purged last
      expect(registered).toBe(404); // registered, then purged
    } else {
      expect(builds.map((b) => (b as { id: string }).id), 'an untrusted client removed or added builds').toEqual([ctx.id]);
      expect(registered, 'an untrusted client registered a checkin').toBe(404);
      // the one write open to untrusted clients did land
      expect(open.json.addresses).toEqual([`192.0.2.${ctx.tag.length}`]);
    }
  }, 180_000);

  test('an IPv4-mapped CIDR in --trusted-cidrs trusts the IPv4 clients it names, never IPv4-compatible IPv6 ones', () => {
    // "::ffff:10.0.0.0/104" can only mean 10.0.0.0/8 reached over a dual-stack socket. Refusing the
    // option would be acceptable; trusting a different set of addresses is not.
    let list;
    try {
      list = parseCidrList('::ffff:10.0.0.0/104');
    } catch {
      return;
    }
    expect(isAddressIn('::a01:203', list), '::10.1.2.3 (IPv4-compatible, not mapped) must not be trusted').toBe(false);
    expect(isAddressIn('::ffff:10.1.2.3', list)).toBe(true);
    expect(isAddressIn('10.1.2.3', list)).toBe(true);
    expect(isAddressIn('11.1.2.3', list)).toBe(false);
  });
});
