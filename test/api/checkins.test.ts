// The checkin endpoints: registration, updates from booted servers, and strict validation.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { assertMatchesSpec } from '../support/openapi.js';
import { api, startInProcess, type InProcessService } from '../support/service.js';

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

    expect((await api(`${base}/${id}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);
    const empty = await api(`${base}/${id}`);
    expect(empty.status).toBe(200);
    assertMatchesSpec('/api/v1/checkins/{id}', 'get', 200, empty.body);
    expect(empty.body).toMatchObject({ id, addresses: [] });

    expect((await api(`${base}/${id}`, { method: 'PUT', json: { addresses: ['192.0.2.10', '2001:db8::5', '192.0.2.10'] } })).status).toBe(204);
    const filled = await api(`${base}/${id}`);
    expect(filled.body.addresses).toEqual(['192.0.2.10', '2001:db8::5']);
    expect(Date.parse(filled.body.timestamp)).toBeGreaterThanOrEqual(Date.parse(empty.body.timestamp));

    // POST again resets the record
    expect((await api(`${base}/${id}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);
    expect((await api(`${base}/${id}`)).body.addresses).toEqual([]);

    expect((await api(`${base}/${id}`, { method: 'DELETE' })).status).toBe(204);
    const gone = await api(`${base}/${id}`);
    expect(gone.status).toBe(404);
    assertMatchesSpec('/api/v1/checkins/{id}', 'get', 404, gone.body);
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
    ['address not an IP', { addresses: ['not-an-ip'] }, /^addresses\[0\]: must be an IPv4 or IPv6 address/],
    ['address with prefix', { addresses: ['10.0.0.1/24'] }, /^addresses\[0\]/],
    ['addresses missing', {}, /^addresses: /],
    ['addresses not an array', { addresses: '10.0.0.1' }, /^addresses: /],
    ['number in addresses', { addresses: [1] }, /^addresses\[0\]: /],
    ['unknown field', { addresses: [], hostname: 'x' }, /unknown field "hostname"/],
    ['body an array', ['10.0.0.1'], /^body: must be a JSON object/],
    ['too many addresses', { addresses: Array.from({ length: 257 }, (_, i) => `10.0.${i >> 8}.${i & 255}`) }, /^addresses: must have at most 256/],
  ])('400 on POST and PUT: %s', async (_name, body, re) => {
    await api(`${base}/valid-id`, { method: 'POST', json: { addresses: [] } });
    for (const method of ['POST', 'PUT']) {
      const res = await api(`${base}/valid-id`, { method, json: body });
      expect(res.status, method).toBe(400);
      assertMatchesSpec('/api/v1/checkins/{id}', method, 400, res.body);
      expect(res.body.message).toMatch(re);
    }
  });

  test.each([['a'.repeat(129)], ['bad%20id'], ['semi;colon'], ['a%2Fb']])('400 for a malformed id %s', async (id) => {
    const res = await api(`${base}/${id}`, { method: 'POST', json: { addresses: [] } });
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/^id: /);
  });

  test('malformed JSON and a non-JSON body are refused with a message', async () => {
    const bad = await api(`${base}/x`, { method: 'POST', body: '{"addresses": [', headers: { 'content-type': 'application/json' } });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^body: /);
    const text = await api(`${base}/x`, { method: 'PUT', body: 'addresses=1', headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
    expect(text.body.message).toBeTruthy();
  });
});
