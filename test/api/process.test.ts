// The service as an operator runs it (`node dist/cli.js serve`): clients that half-close their
// connection after the request.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { haveBaseArtifacts, tinyRequest } from '../support/service.js';
import { serviceTempDir, startService, stopAllServices, type ServiceProcess } from '../support/service-process.mjs';

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
