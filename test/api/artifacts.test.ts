// Artifact serving as BMCs and UEFI HTTP Boot use it: HEAD, single Range reads, validators, and nothing
// reachable except the two files of a completed build. Every response is checked against openapi.yaml.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Client, request } from 'undici';
import { checkEveryResponse } from '../support/openapi.js';
import { api, startInProcess, tinyRequest, waitForBuild, type InProcessService } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

requireBaseArtifacts();

async function raw(url: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await request(url, { method: method as 'GET', headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

describe('artifact serving', () => {
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
  const spec = checkEveryResponse();

  // First, while no request has opened boot.iso yet: a failed open is not remembered.
  test('a completed build whose file cannot be opened answers 500, and serves it once it is back', async () => {
    const file = path.join(svc.dataDir, 'builds', id, 'boot.iso');
    fs.renameSync(file, `${file}.away`);
    try {
      const res = await raw(isoUrl, {}, 'HEAD');
      expect(res.status).toBe(500);
    } finally {
      fs.renameSync(`${file}.away`, file);
    }
    const back = await raw(isoUrl, {}, 'HEAD');
    expect(back.status).toBe(200);
    expect(back.headers['content-length']).toBe(String(iso.length));
  });

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
    ['bytes=999999999-', 'Range: range starts at 999999999, beyond the $size-byte file'],
    ['bytes=-0', 'Range: unsatisfiable suffix range for a $size-byte file'],
    ['bytes=0-1,5-6', 'Range: multiple ranges are not supported; request one range at a time'],
  ])('Range %s → 416 with a message', async (range, message) => {
    const res = await raw(ukiUrl, { range });
    expect(res.status).toBe(416);
    expect(res.headers['content-range']).toBe(`bytes */${uki.length}`);
    expect(JSON.parse(res.body.toString())).toEqual({ message: message.replace('$size', String(uki.length)) });
  });

  test.each(['bytes=5-1', 'bytes=abc', 'items=0-1', 'bytes=1-2-3'])('a malformed Range or another unit (%s) is ignored: 200 with the whole file', async (range) => {
    const res = await raw(ukiUrl, { range });
    expect(res.status).toBe(200);
    expect(res.headers['content-range']).toBeUndefined();
    expect(res.body.equals(uki)).toBe(true);
  });

  test('If-None-Match: the ETag (strong or weak) or * gives 304 with the validators; another tag the file', async () => {
    const head = await raw(ukiUrl, {}, 'HEAD');
    const etag = head.headers.etag as string;
    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const res = await raw(ukiUrl, { 'if-none-match': ifNoneMatch });
      expect(res.status, ifNoneMatch).toBe(304);
      expect(res.body.length).toBe(0);
      expect([res.headers.etag, res.headers['last-modified'], res.headers['cache-control']]).toEqual([etag, head.headers['last-modified'], 'public, max-age=31536000, immutable']);
    }
    const other = await raw(ukiUrl, { 'if-none-match': '"other"' });
    expect(other.status).toBe(200);
    expect(other.body.equals(uki)).toBe(true);
  });

  test('If-Modified-Since: 304 unless modified since; ignored next to If-None-Match or when not an HTTP-date', async () => {
    const lastModified = (await raw(ukiUrl, {}, 'HEAD')).headers['last-modified'] as string;
    const shifted = (seconds: number) => new Date(Date.parse(lastModified) + seconds * 1000).toUTCString();
    expect((await raw(ukiUrl, { 'if-modified-since': lastModified })).status).toBe(304);
    expect((await raw(ukiUrl, { 'if-modified-since': shifted(3600) }, 'HEAD')).status).toBe(304);
    const older = await raw(ukiUrl, { 'if-modified-since': shifted(-1) });
    expect(older.status).toBe(200);
    expect(older.body.equals(uki)).toBe(true);
    expect((await raw(ukiUrl, { 'if-modified-since': lastModified, 'if-none-match': '"other"' })).status).toBe(200);
    expect((await raw(ukiUrl, { 'if-modified-since': '99999' })).status).toBe(200);
  });

  test('If-Range: the ETag or the exact Last-Modified date keeps the Range; a stale one gets the whole file', async () => {
    const head = await raw(ukiUrl, {}, 'HEAD');
    const etag = head.headers.etag as string;
    const lastModified = head.headers['last-modified'] as string;
    const earlier = new Date(Date.parse(lastModified) - 1000).toUTCString();
    for (const ifRange of [etag, lastModified]) {
      const res = await raw(ukiUrl, { range: 'bytes=0-9', 'if-range': ifRange });
      expect(res.status, ifRange).toBe(206);
      expect(res.headers['content-range']).toBe(`bytes 0-9/${uki.length}`);
      expect(res.body.equals(uki.subarray(0, 10))).toBe(true);
    }
    for (const ifRange of ['"other"', `W/${etag}`, earlier]) {
      const res = await raw(ukiUrl, { range: 'bytes=0-9', 'if-range': ifRange });
      expect(res.status, ifRange).toBe(200);
      expect(res.headers['content-length']).toBe(String(uki.length));
      expect(res.body.equals(uki)).toBe(true);
    }
  });

  test('If-Match and If-Unmodified-Since: 412 when they do not hold', async () => {
    const head = await raw(ukiUrl, {}, 'HEAD');
    const earlier = new Date(Date.parse(head.headers['last-modified'] as string) - 1000).toUTCString();
    const failed = await raw(ukiUrl, { 'if-match': '"other"' });
    expect(failed.status).toBe(412);
    expect(JSON.parse(failed.body.toString())).toEqual({ message: 'If-Match: no listed entity tag is the current one' });
    expect((await raw(ukiUrl, { 'if-unmodified-since': earlier })).status).toBe(412);
    const held = await raw(ukiUrl, { 'if-match': head.headers.etag as string, range: 'bytes=0-1' });
    expect(held.status).toBe(206);
    expect(held.body.toString('latin1')).toBe('MZ');
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

  test('other methods on artifacts are refused with 405', async () => {
    for (const method of ['DELETE', 'PUT', 'POST', 'PATCH', 'OPTIONS']) {
      const res = await api(ukiUrl, { method });
      expect(res.status, method).toBe(405);
      expect(res.headers.allow).toBe('GET, HEAD');
      expect(res.body).toEqual({ message: `method ${method} not allowed on artifacts; use GET or HEAD` });
    }
  });

  test('bytes served are counted in /metrics', async () => {
    const text = (await api(`${svc.url}/metrics`)).text;
    // the ISO once in full (HEADs send no body); eight 206 answers: four Range reads, the clipped one,
    // two holding If-Range validators and a holding If-Match
    expect(text.split('\n')).toContain(`uod_artifact_bytes_served_total{file="boot.iso"} ${iso.length}`);
    expect(text.split('\n')).toContain('uod_http_requests_total{method="GET",route="/artifacts/:id/:file",status="206"} 8');
  });

  test('a kept-alive connection that idles 30 s still gets its next Range read answered on the same socket', async () => {
    // After the metrics test, which counts every byte served before it. As a BMC's virtual-media client: Range reads on one connection, a pause while the host is busy.
    const { origin, pathname } = new URL(isoUrl);
    const client = new Client(origin, { pipelining: 1 });
    let connects = 0;
    client.on('connect', () => connects++);
    try {
      const read = async (range: string) => {
        const res = await client.request({ path: pathname, method: 'GET', headers: { range } });
        return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
      };
      const first = await read('bytes=0-2047');
      expect(first.status).toBe(206);
      expect(first.headers['keep-alive']).toBe('timeout=75');
      await new Promise((r) => setTimeout(r, 30_000));
      const second = await read('bytes=32768-36863');
      expect(second.status).toBe(206);
      expect(second.body.equals(iso.subarray(32768, 36864))).toBe(true);
      expect(connects).toBe(1);
    } finally {
      await client.close();
    }
  }, 60_000);

  test('every kind of artifact response was checked against openapi.yaml', () => {
    const seen = new Set(spec.checked.filter((c) => c.includes('/artifacts/')));
    expect([...seen].sort()).toEqual([
      'DELETE /artifacts/{id}/{filename} (x-other-methods) 405',
      'GET /artifacts/{id}/{filename} 200',
      'GET /artifacts/{id}/{filename} 206',
      'GET /artifacts/{id}/{filename} 304',
      'GET /artifacts/{id}/{filename} 404',
      'GET /artifacts/{id}/{filename} 412',
      'GET /artifacts/{id}/{filename} 416',
      'HEAD /artifacts/{id}/{filename} 200',
      'HEAD /artifacts/{id}/{filename} 304',
      'HEAD /artifacts/{id}/{filename} 500',
      'OPTIONS /artifacts/{id}/{filename} (x-other-methods) 405',
      'PATCH /artifacts/{id}/{filename} (x-other-methods) 405',
      'POST /artifacts/{id}/{filename} (x-other-methods) 405',
      'PUT /artifacts/{id}/{filename} (x-other-methods) 405',
    ]);
  });

  // Last: it deletes the build.
  test("a deleted build answers 404 at once, also while its files are being removed; built again, it is served with the new build's Last-Modified", async () => {
    expect((await raw(isoUrl, { range: 'bytes=0-0' })).status).toBe(206);
    const deleting = api(`${svc.url}/api/v1/builds/${id}`, { method: 'DELETE' });
    let deleted = false;
    void deleting.then(() => (deleted = true));
    // Reads racing the deletion may be served until it starts, never reopen the files once it has.
    const during: number[] = [];
    while (!deleted) during.push((await raw(isoUrl, {}, 'HEAD')).status);
    expect((await deleting).status).toBe(204);
    expect(during.join(' ')).toMatch(/^(200 ?)*(404 ?)*$/);
    expect((await raw(isoUrl, {}, 'HEAD')).status).toBe(404);
    // Into the next second, so that a stale Last-Modified would show.
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 10));
    const again = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest() });
    expect(again.body.id).toBe(id);
    const rebuilt = await waitForBuild(svc.url, id);
    const res = await raw(isoUrl);
    expect(res.status).toBe(200);
    expect(res.headers['last-modified']).toBe(new Date(rebuilt.completedAt).toUTCString());
    expect(res.body.equals(iso)).toBe(true);
  });
});
