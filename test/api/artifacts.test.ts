// Artifact serving as BMCs and UEFI HTTP Boot use it: HEAD, single Range reads, validators, and nothing
// reachable except the two files of a completed build.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { request } from 'undici';
import { assertMatchesSpec } from '../support/openapi.js';
import { api, haveBaseArtifacts, startInProcess, tinyRequest, waitForBuild, type InProcessService } from '../support/service.js';

const ready = haveBaseArtifacts();

async function raw(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await request(url, { method: method as 'GET', headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

describe.skipIf(!ready)('artifact serving', () => {
  let svc: InProcessService;
  let id: string;
  let uki: Buffer;
  let iso: Buffer;
  let ukiUrl: string;
  let isoUrl: string;

  beforeAll(async () => {
    svc = await startInProcess();
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest() });
    id = res.body.id;
    const status = await waitForBuild(svc.url, id);
    ({ ukiUrl, isoUrl } = status.artifacts);
    uki = fs.readFileSync(path.join(svc.dataDir, 'builds', id, 'uki.efi'));
    iso = fs.readFileSync(path.join(svc.dataDir, 'builds', id, 'boot.iso'));
  });
  afterAll(() => svc?.close());

  test('HEAD answers 200 with the exact length and no body', async () => {
    for (const [url, file, type] of [[ukiUrl, uki, 'application/efi'], [isoUrl, iso, 'application/x-iso9660-image']] as const) {
      const res = await raw(url, {}, 'HEAD');
      expect(res.status).toBe(200);
      expect(res.headers['content-length']).toBe(String(file.length));
      expect(res.headers['content-type']).toBe(type);
      expect(res.headers['accept-ranges']).toBe('bytes');
      expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      expect(res.headers.etag).toBe(`"${createHash('sha256').update(file).digest('hex')}"`);
      expect(Date.parse(res.headers['last-modified'] as string)).not.toBeNaN();
      expect(res.body.length).toBe(0);
    }
  });

  test('GET returns the file byte for byte', async () => {
    const res = await raw(isoUrl);
    expect(res.status).toBe(200);
    expect(res.body.equals(iso)).toBe(true);
  });

  test.each([
    ['bytes=0-99', 0, 99],
    ['bytes=1000-1999', 1000, 1999],
    ['bytes=-512', -512, -1],
    ['bytes=4096-', 4096, -1],
  ])('Range %s → 206 with the right bytes', async (range, start, end) => {
    const res = await raw(ukiUrl, { range });
    const s = start < 0 ? uki.length + start : start;
    const e = end < 0 ? uki.length - 1 : end;
    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes ${s}-${e}/${uki.length}`);
    expect(res.headers['content-length']).toBe(String(e - s + 1));
    expect(res.body.equals(uki.subarray(s, e + 1))).toBe(true);
  });

  test('a range running past the end is clipped to the file', async () => {
    const res = await raw(ukiUrl, { range: `bytes=${uki.length - 10}-${uki.length + 5000}` });
    expect(res.status).toBe(206);
    expect(res.body.equals(uki.subarray(uki.length - 10))).toBe(true);
  });

  test.each([
    [`bytes=999999999-`, /beyond/],
    ['bytes=5-1', /end before start/],
    ['bytes=abc', /malformed/],
    ['items=0-1', /unit/],
    ['bytes=0-1,5-6', /multiple ranges/],
    ['bytes=-0', /unsatisfiable/],
  ])('Range %s → 416 with a message', async (range, re) => {
    const res = await raw(ukiUrl, { range });
    expect(res.status).toBe(416);
    expect(res.headers['content-range']).toBe(`bytes */${uki.length}`);
    const body = JSON.parse(res.body.toString());
    assertMatchesSpec('/artifacts/{id}/{filename}', 'get', 416, body);
    expect(body.message).toMatch(re);
  });

  test('validators: If-None-Match gives 304, a stale If-Range gives the whole file', async () => {
    const head = await raw(ukiUrl, {}, 'HEAD');
    const etag = head.headers.etag as string;
    expect((await raw(ukiUrl, { 'if-none-match': etag })).status).toBe(304);
    expect((await raw(ukiUrl, { 'if-none-match': '"other"' })).status).toBe(200);
    const stale = await raw(ukiUrl, { range: 'bytes=0-9', 'if-range': '"other"' });
    expect(stale.status).toBe(200);
    expect(stale.body.length).toBe(uki.length);
    const fresh = await raw(ukiUrl, { range: 'bytes=0-9', 'if-range': etag });
    expect(fresh.status).toBe(206);
  });

  test('nothing but the two artifacts of a completed build is reachable', async () => {
    const paths = [
      `/artifacts/${id}/build.json`,
      `/artifacts/${id}/../../checkins.jsonl`,
      `/artifacts/${id}/%2e%2e/%2e%2e/checkins.jsonl`,
      `/artifacts/${id}/uki.efi/`,
      `/artifacts/${id.toUpperCase()}/uki.efi`,
      `/artifacts/${'0'.repeat(64)}/uki.efi`,
      '/artifacts/',
      '/artifacts/../builds',
    ];
    for (const p of paths) {
      const res = await request(`${svc.url}${p}`);
      const text = await res.body.text();
      expect(res.statusCode, p).toBe(404);
      expect(JSON.parse(text).message).toBeTruthy();
    }
    // a query string is ignored, so BMCs that append one still get the file
    expect((await raw(`${isoUrl}?x=1`, {}, 'HEAD')).status).toBe(200);
  });

  test('other methods on artifacts are refused', async () => {
    const res = await api(ukiUrl, { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD');
  });

  test('bytes served are counted in /metrics', async () => {
    const text = (await api(`${svc.url}/metrics`)).text;
    expect(text).toMatch(/^uod_artifact_bytes_served_total\{file="boot.iso"\} \d+$/m);
    expect(text).toMatch(/^uod_http_requests_total\{method="GET",route="\/artifacts\/:id\/:file",status="206"\} \d+$/m);
  });
});
