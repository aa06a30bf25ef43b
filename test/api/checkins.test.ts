// The checkin endpoints: registration, updates from booted servers, strict validation, and the journal
// compacted at start.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { assertMatchesSpec } from '../support/openapi.js';
import { api, startInProcess, tempDir, type InProcessService } from '../support/service.js';
import { checkEveryResponse } from '../support/openapi.js';

// Every response this file receives must be described by openapi.yaml.
checkEveryResponse();

const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('checkins API', () => {
  let svc: InProcessService;
  let base: string;
  beforeAll(async () => {
    svc = await startInProcess();
    base = `${svc.url}/api/v1/checkins`;
  });
  afterAll(() => svc?.close());

  test('lifecycle: PUT before POST is 404; POST registers empty; PUT fills; GET shows; DELETE removes', async () => {
    const id = 'c0ffee00-1111-4222-8333-444455556666';
    const early = await api(`${base}/${id}`, { method: 'PUT', json: { addresses: ['192.0.2.10'] } });
    expect(early.status).toBe(404);
    assertMatchesSpec('/api/v1/checkins/{id}', 'put', 404, early.body);
    expect(early.body.message).toBe(`checkin "${id}" is not registered; the orchestrator must POST it first`);

    expect((await api(`${base}/${id}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);
    const empty = await api(`${base}/${id}`);
    expect(empty.status).toBe(200);
    assertMatchesSpec('/api/v1/checkins/{id}', 'get', 200, empty.body);
    expect(empty.body).toEqual({ id, addresses: [], timestamp: empty.body.timestamp });
    expect(empty.body.timestamp).toMatch(ISO_TIME);

    expect((await api(`${base}/${id}`, { method: 'PUT', json: { addresses: ['192.0.2.10', '2001:db8::5', '192.0.2.10'] } })).status).toBe(204);
    const filled = await api(`${base}/${id}`);
    expect(filled.body).toEqual({ id, addresses: ['192.0.2.10', '2001:db8::5'], timestamp: filled.body.timestamp });
    expect(Date.parse(filled.body.timestamp)).toBeGreaterThanOrEqual(Date.parse(empty.body.timestamp));

    // POST again resets the record
    expect((await api(`${base}/${id}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);
    expect((await api(`${base}/${id}`)).body.addresses).toEqual([]);

    expect((await api(`${base}/${id}`, { method: 'DELETE' })).status).toBe(204);
    const gone = await api(`${base}/${id}`);
    expect(gone.status).toBe(404);
    assertMatchesSpec('/api/v1/checkins/{id}', 'get', 404, gone.body);
    expect(gone.body.message).toBe(`checkin "${id}" not found`);
    const again = await api(`${base}/${id}`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    assertMatchesSpec('/api/v1/checkins/{id}', 'delete', 404, again.body);
  });

  test('purge removes every record', async () => {
    for (const id of ['a', 'b', 'c']) await api(`${base}/${id}`, { method: 'POST', json: { addresses: [] } });
    expect((await api(base, { method: 'DELETE' })).status).toBe(204);
    for (const id of ['a', 'b', 'c']) expect((await api(`${base}/${id}`)).status).toBe(404);
  });

  test.each([
    ['address not an IP', { addresses: ['not-an-ip'] }, 'addresses[0]: must be an IPv4 or IPv6 address'],
    ['address with prefix', { addresses: ['10.0.0.1/24'] }, 'addresses[0]: must be an IPv4 or IPv6 address'],
    ['addresses missing', {}, 'addresses: Invalid input: expected array, received undefined'],
    ['addresses not an array', { addresses: '10.0.0.1' }, 'addresses: Invalid input: expected array, received string'],
    ['number in addresses', { addresses: [1] }, 'addresses[0]: Invalid input: expected string, received number'],
    ['unknown field', { addresses: [], hostname: 'x' }, 'unknown field "hostname"'],
    ['body an array', ['10.0.0.1'], 'body: must be a JSON object like {"addresses": ["192.0.2.10"]}'],
    ['too many addresses', { addresses: Array.from({ length: 257 }, (_, i) => `10.0.${i >> 8}.${i & 255}`) }, 'addresses: must have at most 256 entries'],
  ])('400 on POST and PUT: %s', async (_name, body, message) => {
    await api(`${base}/valid-id`, { method: 'POST', json: { addresses: [] } });
    for (const method of ['POST', 'PUT']) {
      const res = await api(`${base}/valid-id`, { method, json: body });
      expect(res.status, method).toBe(400);
      assertMatchesSpec('/api/v1/checkins/{id}', method, 400, res.body);
      expect(res.body.message).toBe(message);
    }
  });

  test.each([['a'.repeat(129)], ['bad%20id'], ['semi;colon'], ['a%2Fb']])('400 for a malformed id %s', async (id) => {
    const res = await api(`${base}/${id}`, { method: 'POST', json: { addresses: [] } });
    expect(res.status).toBe(400);
    expect(res.body.message).toBe('id: must be 1 to 128 characters from [A-Za-z0-9._-]');
  });

  test('malformed JSON and a non-JSON body are refused with a message', async () => {
    const bad = await api(`${base}/x`, { method: 'POST', body: '{"addresses": [', headers: { 'content-type': 'application/json' } });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toBe("body: Body is not valid JSON but content-type is set to 'application/json'");
    const text = await api(`${base}/x`, { method: 'PUT', body: 'addresses=1', headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
    expect(text.body.message).toBe('Content-Type: Unsupported Media Type');
  });
});

describe('checkin journal', () => {
  const journalLines = (dataDir: string) =>
    fs.readFileSync(path.join(dataDir, 'checkins.jsonl'), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));

  test('every change is one line; a start compacts it to one line per live checkin', async () => {
    const dataDir = tempDir('data');
    const first = await startInProcess([], dataDir);
    let second: InProcessService | undefined;
    try {
      const at = (id: string) => `${first.url}/api/v1/checkins/${id}`;
      for (const [method, id, addresses] of [
        ['POST', 'a', []],
        ['PUT', 'a', ['192.0.2.1']],
        ['PUT', 'a', ['192.0.2.2']],
        ['POST', 'b', []],
        ['DELETE', 'b', null],
        ['POST', 'c', []],
        ['PUT', 'c', ['2001:db8::3']],
      ] as const) {
        const res = await api(at(id), addresses === null ? { method } : { method, json: { addresses } });
        expect(res.status, `${method} ${id}`).toBe(204);
      }
      const a = (await api(at('a'))).body;
      const c = (await api(at('c'))).body;
      await first.close();
      expect(journalLines(dataDir).map((l) => l.op)).toEqual(['set', 'set', 'set', 'set', 'delete', 'set', 'set']);

      second = await startInProcess([], dataDir);
      expect(journalLines(dataDir)).toEqual([
        { op: 'set', record: { id: 'a', addresses: ['192.0.2.2'], timestamp: a.timestamp } },
        { op: 'set', record: { id: 'c', addresses: ['2001:db8::3'], timestamp: c.timestamp } },
      ]);
      expect((await api(`${second.url}/api/v1/checkins/a`)).body).toEqual(a);
      expect((await api(`${second.url}/api/v1/checkins/c`)).body).toEqual(c);
      expect((await api(`${second.url}/api/v1/checkins/b`)).status).toBe(404);
      // and appends again from there
      expect((await api(`${second.url}/api/v1/checkins/a`, { method: 'PUT', json: { addresses: ['192.0.2.9'] } })).status).toBe(204);
      expect(journalLines(dataDir)).toHaveLength(3);
    } finally {
      await second?.close();
      await first.close();
    }
  });
});
