// Access control by source network, on the plain and the TLS listener, including IPv4-mapped IPv6
// clients and spoofed X-Forwarded-For headers. Every response is checked against openapi.yaml.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Agent } from 'undici';
import { api, startInProcess, tempDir, tinyRequest, waitForBuild, type InProcessService } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { checkEveryResponse } from '../support/openapi.js';

requireBaseArtifacts();
// undici binds the client side with the Client option localAddress (not a connect option).
const untrustedV4 = new Agent({ localAddress: '127.0.0.2' });
const id64 = 'f'.repeat(64);
checkEveryResponse();

/**
 * Every route the service has, in the order the matrix calls them, with the exact status a trusted
 * client gets; `open` is the status an untrusted client gets where the route is open to it (else 403).
 */
const ROUTES: Array<{ method: string; path: string; json?: unknown; status: number; open?: number }> = [
  { method: 'GET', path: '/healthz', status: 200, open: 200 },
  { method: 'GET', path: '/metrics', status: 200 },
  { method: 'GET', path: '/api/v1/builds', status: 200 },
  { method: 'POST', path: '/api/v1/builds', json: tinyRequest(), status: 202 },
  { method: 'DELETE', path: '/api/v1/builds', status: 204 },
  { method: 'GET', path: `/api/v1/builds/${id64}`, status: 404 },
  { method: 'DELETE', path: `/api/v1/builds/${id64}`, status: 404 },
  { method: 'POST', path: '/api/v1/checkins/acl-probe', json: { addresses: [] }, status: 204 },
  // registered by a trusted client's POST just before; an untrusted client's POST was refused
  { method: 'PUT', path: '/api/v1/checkins/acl-probe', json: { addresses: ['192.0.2.1'] }, status: 204, open: 404 },
  { method: 'GET', path: '/api/v1/checkins/acl-probe', status: 200 },
  { method: 'DELETE', path: '/api/v1/checkins/acl-probe', status: 204 },
  { method: 'DELETE', path: '/api/v1/checkins', status: 204 },
  { method: 'GET', path: `/artifacts/${id64}/boot.iso`, status: 404, open: 404 },
  { method: 'HEAD', path: `/artifacts/${id64}/uki.efi`, status: 404, open: 404 },
  { method: 'DELETE', path: `/artifacts/${id64}/uki.efi`, status: 405 },
  { method: 'GET', path: '/no/such/route', status: 404 },
];

async function matrix(url: string, dispatcher: Agent | undefined, trusted: boolean, headers: Record<string, string> = {}) {
  for (const r of ROUTES) {
    const res = await api(`${url}${r.path}`, { method: r.method, json: r.json, dispatcher, headers });
    const label = `${r.method} ${r.path} (${trusted ? 'trusted' : 'untrusted'})`;
    expect(res.status, label).toBe(trusted ? r.status : (r.open ?? 403));
    if (!trusted && r.open === undefined) expect(res.body.message, label).toMatch(/^forbidden: .* is not in a trusted network/);
  }
}

describe('ACL on an IPv4 listener (--trusted-cidrs 127.0.0.1/32)', () => {
  let svc: InProcessService;
  beforeAll(async () => {
    svc = await startInProcess(['--trusted-cidrs', '127.0.0.1/32']);
  });
  afterAll(() => svc?.close());

  test('a trusted client may call every route', () => matrix(svc.url, undefined, true));
  test('an untrusted client (127.0.0.2) may only fetch artifacts, PUT checkins and GET /healthz', () => matrix(svc.url, untrustedV4, false));
  test('X-Forwarded-For naming a trusted address changes nothing', () =>
    matrix(svc.url, untrustedV4, false, { 'x-forwarded-for': '127.0.0.1', forwarded: 'for=127.0.0.1', 'x-real-ip': '127.0.0.1' }));
  test('a 403 names the client and every route open to it', async () => {
    const res = await api(`${svc.url}/api/v1/builds`, { dispatcher: untrustedV4 });
    expect(res.body).toEqual({
      message: 'forbidden: 127.0.0.2 is not in a trusted network; only GET|HEAD /healthz, GET|HEAD /artifacts/:id/:file and PUT /api/v1/checkins/:id are open to it',
    });
  });
  test('the untrusted PUT really updates a registered checkin', async () => {
    await api(`${svc.url}/api/v1/checkins/booted`, { method: 'POST', json: { addresses: [] } });
    expect((await api(`${svc.url}/api/v1/checkins/booted`, { method: 'PUT', json: { addresses: ['198.51.100.7'] }, dispatcher: untrustedV4 })).status).toBe(204);
    expect((await api(`${svc.url}/api/v1/checkins/booted`)).body.addresses).toEqual(['198.51.100.7']);
  });
});

describe('ACL on a dual-stack listener: IPv4-mapped clients are IPv4, IPv6 never matches an IPv4 network', () => {
  let svc: InProcessService;
  beforeAll(async () => {
    svc = await startInProcess(['--trusted-cidrs', '127.0.0.1/32', '--listen', '[::]:0']);
  });
  afterAll(() => svc?.close());

  const port = () => new URL(svc.url.replace('[::]', 'localhost')).port;

  test('127.0.0.1 arriving as ::ffff:127.0.0.1 is trusted', () => matrix(`http://127.0.0.1:${port()}`, undefined, true));
  test('127.0.0.2 arriving as ::ffff:127.0.0.2 is not', () => matrix(`http://127.0.0.1:${port()}`, untrustedV4, false));
  test('::1 is not trusted by an IPv4-only list', () => matrix(`http://[::1]:${port()}`, undefined, false));
});

describe('TLS listener', () => {
  let svc: InProcessService;
  const insecure = new Agent({ connect: { rejectUnauthorized: false } });
  const insecureUntrusted = new Agent({ localAddress: '127.0.0.2', connect: { rejectUnauthorized: false } });

  beforeAll(async () => {
    const dir = tempDir('tls');
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    svc = await startInProcess(['--trusted-cidrs', '127.0.0.1/32', '--tls-listen', '127.0.0.1:0', '--tls-cert', cert, '--tls-key', key]);
  });
  afterAll(() => svc?.close());

  test('serves the same routes under the same ACL', async () => {
    expect(svc.tlsUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const health = await api(`${svc.tlsUrl}/healthz`, { dispatcher: insecure });
    expect([health.status, health.text]).toEqual([200, 'ok']);
    await matrix(svc.tlsUrl as string, insecure, true);
    await matrix(svc.tlsUrl as string, insecureUntrusted, false);
  });

  test('tlsArtifacts: true hands out HTTPS artifact URLs that serve the file', async () => {
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ tlsArtifacts: true }) });
    expect(res.status).toBe(202);
    expect(res.body.statusUrl.startsWith(svc.url)).toBe(true);
    const status = await waitForBuild(svc.url, res.body.id);
    expect(status.artifacts.ukiUrl).toBe(`${svc.tlsUrl}/artifacts/${res.body.id}/uki.efi`);
    expect(status.artifacts.isoUrl).toBe(`${svc.tlsUrl}/artifacts/${res.body.id}/boot.iso`);
    const head = await api(status.artifacts.isoUrl, { method: 'HEAD', dispatcher: insecureUntrusted });
    expect(head.status).toBe(200);
    expect(Number(head.headers['content-length'])).toBeGreaterThan(1_000_000);

    const plain = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ tlsArtifacts: false }) });
    expect(plain.body.id).not.toBe(res.body.id);
    expect((await waitForBuild(svc.url, plain.body.id)).artifacts.isoUrl.startsWith(`${svc.url}/`)).toBe(true);
  });
});
