// openapi.yaml against the service: the responses no other API test produces (/healthz, /metrics,
// HEAD on GET routes, unlisted routes, 405, 431 on every kind of path) checked like every other one;
// the 403s the document lists are exactly the routes the access policy closes; and the check itself
// fails on a response the document does not describe.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AccessPolicy } from '../../src/api/acl.js';
import { ARTIFACT_ROUTE } from '../../src/api/artifacts.js';
import { assertResponseMatchesSpec, checkEveryResponse, openapiDocument, type ObservedResponse } from '../support/openapi.js';
import { api, startInProcess, type InProcessService } from '../support/service.js';

const id64 = 'f'.repeat(64);
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Sends `head` (a request line and header lines) on a fresh connection and reads the answer until the server closes it. */
async function exchange(url: string, head: string): Promise<ObservedResponse> {
  const { hostname, port } = new URL(url);
  const data = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(Number(port), hostname, () => socket.write(`${head}\r\n\r\n`));
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
  const split = data.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = data.subarray(0, split).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine?.split(' ')[1]), headers, body: data.subarray(split + 4) };
}

describe('responses against openapi.yaml', () => {
  let svc: InProcessService;
  beforeAll(async () => {
    svc = await startInProcess();
  });
  afterAll(() => svc?.close());
  const spec = checkEveryResponse();

  test('GET and HEAD /healthz', async () => {
    const get = await api(`${svc.url}/healthz`);
    expect([get.status, get.headers['content-type'], get.text]).toEqual([200, 'text/plain; charset=utf-8', 'ok']);
    const head = await api(`${svc.url}/healthz`, { method: 'HEAD' });
    expect([head.status, head.headers['content-length'], head.text]).toEqual([200, '2', '']);
  });

  test('GET /metrics', async () => {
    const res = await api(`${svc.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  test('HEAD on the API GET routes answers what GET would, without a body', async () => {
    await api(`${svc.url}/api/v1/checkins/probe`, { method: 'POST', json: { addresses: [] } });
    for (const [path, status] of [['/api/v1/builds', 200], [`/api/v1/builds/${id64}`, 404], ['/api/v1/checkins/probe', 200], ['/api/v1/checkins/none', 404]] as const) {
      const res = await api(`${svc.url}${path}`, { method: 'HEAD' });
      expect([res.status, res.headers['content-type'], res.text], path).toEqual([status, 'application/json; charset=utf-8', '']);
    }
  });

  test('a path or method the document does not list answers 404', async () => {
    for (const [method, path] of [['GET', '/no/such/route'], ['PATCH', '/api/v1/builds'], ['OPTIONS', '/api/v1/checkins/probe'], ['GET', '/api/v1/checkins']]) {
      const res = await api(`${svc.url}${path}`, { method });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body).toEqual({ message: `no route for ${method} ${path}` });
    }
  });

  test('a method other than GET or HEAD on an artifact answers 405 with Allow', async () => {
    const res = await api(`${svc.url}/artifacts/${id64}/boot.iso`, { method: 'POST' });
    expect([res.status, res.headers.allow]).toEqual([405, 'GET, HEAD']);
  });

  test.each([
    ['GET', '/healthz'],
    ['GET', '/metrics'],
    ['POST', '/api/v1/builds'],
    ['PUT', '/api/v1/checkins/probe'],
    ['GET', `/artifacts/${id64}/uki.efi`],
    ['DELETE', `/artifacts/${id64}/boot.iso`],
    ['GET', '/no/such/route'],
  ])('%s %s with a header section over 16 KiB answers 431', async (method, path) => {
    const res = await exchange(svc.url, `${method} ${path} HTTP/1.1\r\nHost: x\r\nX-Padding: ${'a'.repeat(17 * 1024)}`);
    expect(res.status).toBe(431);
    expect(JSON.parse(res.body.toString()).message).toBe('Exceeded maximum allowed HTTP header size');
    spec.checked.push(assertResponseMatchesSpec(method, path, res));
  });

  test('each of these responses was checked against the document', () => {
    expect(new Set(spec.checked)).toEqual(new Set([
      'GET /healthz 200',
      'HEAD /healthz (as GET) 200',
      'GET /metrics 200',
      'POST /api/v1/checkins/{id} 204',
      'HEAD /api/v1/builds (as GET) 200',
      'HEAD /api/v1/builds/{id} (as GET) 404',
      'HEAD /api/v1/checkins/{id} (as GET) 200',
      'HEAD /api/v1/checkins/{id} (as GET) 404',
      'GET unlisted path (x-unlisted-routes) 404',
      'GET /api/v1/checkins (x-unlisted-routes) 404',
      'PATCH /api/v1/builds (x-unlisted-routes) 404',
      'OPTIONS /api/v1/checkins/{id} (x-unlisted-routes) 404',
      'POST /artifacts/{id}/{filename} (x-other-methods) 405',
      'GET /healthz 431',
      'GET /metrics 431',
      'POST /api/v1/builds 431',
      'PUT /api/v1/checkins/{id} 431',
      'GET /artifacts/{id}/{filename} 431',
      'DELETE /artifacts/{id}/{filename} (x-other-methods) 431',
      'GET unlisted path (x-unlisted-routes) 431',
    ]));
  });
});

describe('openapi.yaml itself', () => {
  const operations = Object.entries<Record<string, any>>(openapiDocument.paths).flatMap(([template, item]) =>
    METHODS.filter((m) => item[m]).map((m) => ({ template, method: m.toUpperCase(), responses: item[m].responses as Record<string, unknown> })),
  );

  test('documents 403 exactly where the access policy refuses an untrusted client', () => {
    const policy = new AccessPolicy([]);
    const routeOf = (template: string) => (template.startsWith('/artifacts/') ? ARTIFACT_ROUTE : template.replace(/\{(\w+)\}/g, ':$1'));
    const wrong = operations
      .filter((op) => ('403' in op.responses) !== (policy.refusal('192.0.2.1', op.method, routeOf(op.template)) !== null))
      .map((op) => `${op.method} ${op.template}`);
    expect(wrong).toEqual([]);
    expect(operations.length).toBe(18);
  });

  test('every operation documents 431, which any request can get', () => {
    expect(operations.filter((op) => !('431' in op.responses)).map((op) => `${op.method} ${op.template}`)).toEqual([]);
  });
});

describe('the check against the document fails on what it does not describe', () => {
  const json = (body: unknown, headers: Record<string, string> = {}): ObservedResponse => ({
    status: 0,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
    body: Buffer.from(JSON.stringify(body)),
  });
  const artifactHeaders = {
    'content-type': 'application/efi',
    'content-length': '3',
    'accept-ranges': 'bytes',
    etag: `"${'a'.repeat(64)}"`,
    'last-modified': 'Mon, 15 Jan 2024 10:30:00 GMT',
    'cache-control': 'public, max-age=31536000, immutable',
  };
  const artifact = `/artifacts/${id64}/uki.efi`;

  test('a described response passes', () => {
    expect(assertResponseMatchesSpec('GET', artifact, { status: 200, headers: artifactHeaders, body: Buffer.from('MZ!') })).toBe('GET /artifacts/{id}/{filename} 200');
    expect(assertResponseMatchesSpec('GET', '/api/v1/checkins/x', { ...json({ id: 'x', addresses: [], timestamp: '2024-01-15T10:30:00Z' }), status: 200 })).toBe('GET /api/v1/checkins/{id} 200');
  });

  test.each<[string, string, string, ObservedResponse, RegExp]>([
    ['an undocumented status', 'GET', '/api/v1/builds', { ...json([]), status: 418 }, /does not document 418 for GET \/api\/v1\/builds/],
    ['an undocumented Content-Type', 'GET', '/healthz', { status: 200, headers: { 'content-type': 'text/html' }, body: Buffer.from('ok') }, /Content-Type text\/html is not one of text\/plain/],
    ['a body that breaks its schema', 'GET', '/api/v1/checkins/x', { ...json({ id: 'x' }), status: 200 }, /body must have required property 'addresses'/],
    ['a body that is not JSON', 'GET', '/api/v1/builds', { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('[') }, /body is not JSON/],
    ['a text body outside its enum', 'GET', '/healthz', { status: 200, headers: { 'content-type': 'text/plain' }, body: Buffer.from('fine') }, /body must be equal to one of the allowed values/],
    ['metrics that are not the exposition format', 'GET', '/metrics', { status: 200, headers: { 'content-type': 'text/plain' }, body: Buffer.from('<html>\n') }, /body must match pattern/],
    ['a missing required header', 'GET', artifact, { status: 206, headers: artifactHeaders, body: Buffer.from('MZ!') }, /required header Content-Range is missing/],
    ['a header outside its schema', 'GET', artifact, { status: 200, headers: { ...artifactHeaders, 'accept-ranges': 'none' }, body: Buffer.from('MZ!') }, /header Accept-Ranges: "none": value must be equal to one of the allowed values/],
    ['a length that is not the body', 'GET', artifact, { status: 200, headers: artifactHeaders, body: Buffer.from('MZ') }, /Content-Length 3, but 2 bytes arrived/],
    ['a body where none is documented', 'DELETE', '/api/v1/checkins', { ...json({ message: 'x' }), status: 204 }, /documents no content/],
    ['a HEAD answered with a body', 'HEAD', '/healthz', { status: 200, headers: { 'content-type': 'text/plain' }, body: Buffer.from('ok') }, /HEAD answered with a 2-byte body/],
    ['an unlisted route answering 200', 'GET', '/no/such/route', { ...json({}), status: 200 }, /does not document 200 for GET unlisted path/],
  ])('%s', (_name, method, path, res, message) => {
    expect(() => assertResponseMatchesSpec(method, path, res)).toThrow(message);
  });
});
