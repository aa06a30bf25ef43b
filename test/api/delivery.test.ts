// Delivery progress as a client sees it: after reads whose bytes this test counts itself (overlapping
// Range reads of the ISO from two addresses, a full GET of the UKI, a HEAD and a 304 that carry no
// body), the build's delivery and /metrics give exactly those counts, the covered share is the union
// of the ranges, and it reaches 100% once the gaps are read.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Agent, request } from 'undici';
import { assertMatchesSpec } from '../support/openapi.js';
import { api, startInProcess, tinyRequest, waitForBuild, type InProcessService } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

requireBaseArtifacts();

describe('delivery progress of a build', () => {
  let svc: InProcessService;
  let id: string;
  let ukiUrl: string;
  let isoUrl: string;
  const second = new Agent({ localAddress: '127.0.0.2' });

  beforeAll(async () => {
    svc = await startInProcess();
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ cmdline: 'console=ttyS0 delivery' }) });
    id = res.body.id;
    ({ ukiUrl, isoUrl } = (await waitForBuild(svc.url, id)).artifacts);
  });
  afterAll(async () => {
    await second.close();
    await svc?.close();
  });

  /** Reads and returns the body length the client received. */
  async function read(url: string, headers: Record<string, string> = {}, method = 'GET', dispatcher?: Agent): Promise<number> {
    const res = await request(url, { method: method as 'GET', headers, dispatcher });
    return Buffer.from(await res.body.arrayBuffer()).length;
  }

  const status = async () => {
    const res = await api(`${svc.url}/api/v1/builds/${id}`);
    assertMatchesSpec('/api/v1/builds/{id}', 'get', 200, res.body);
    return res.body.delivery;
  };

  test('counts exactly what the readers received, the union of their ranges, and who they were', async () => {
    const before = await status();
    const isoSize: number = before.iso.size;
    const ukiSize: number = before.uki.size;
    expect(before.iso).toMatchObject({ bytesServed: 0, coveredBytes: 0, coveredPercent: 0, firstReadAt: null, readers: [], readerCount: 0 });
    const started = Date.now();

    const MiB = 1024 * 1024;
    const ranges: Array<[number, number, Agent | undefined]> = [
      [0, MiB - 1, undefined],
      [MiB / 2, 3 * MiB - 1, undefined], // overlaps the first by 512 KiB
      [isoSize - 4096, isoSize - 1, second], // the tail, from the other address
      [0, 100, second], // inside what was read already
    ];
    let isoBytes = 0;
    for (const [from, to, agent] of ranges) isoBytes += await read(isoUrl, { range: `bytes=${from}-${to}` }, 'GET', agent);
    expect(isoBytes).toBe(MiB + 2.5 * MiB + 4096 + 101);
    expect(await read(isoUrl, {}, 'HEAD')).toBe(0);
    const ukiBytes = await read(ukiUrl);
    expect(ukiBytes).toBe(ukiSize);
    const etag = (await request(ukiUrl, { method: 'HEAD' })).headers.etag as string;
    expect(await read(ukiUrl, { 'if-none-match': etag })).toBe(0);

    const after = await status();
    const covered = 3 * MiB + 4096; // [0, 3 MiB) ∪ [size-4096, size)
    expect(after.iso).toMatchObject({
      size: isoSize,
      bytesServed: isoBytes,
      coveredBytes: covered,
      coveredPercent: Math.floor((covered / isoSize) * 10_000) / 100,
      readers: ['127.0.0.1', '127.0.0.2'],
      readerCount: 2,
    });
    expect(after.uki).toMatchObject({ size: ukiSize, bytesServed: ukiSize, coveredBytes: ukiSize, coveredPercent: 100, readers: ['127.0.0.1'], readerCount: 1 });
    for (const file of [after.iso, after.uki]) {
      expect(Date.parse(file.firstReadAt)).toBeGreaterThanOrEqual(Math.floor(started / 1000) * 1000 - 1000);
      expect(Date.parse(file.lastReadAt)).toBeGreaterThanOrEqual(Date.parse(file.firstReadAt));
      expect(file.lastReadAt <= new Date().toISOString()).toBe(true);
      expect(file.rateBytesPerSecond).toBeGreaterThan(0); // read within the last five seconds
    }

    // /metrics: the same figures, per build and file.
    const metrics = (await api(`${svc.url}/metrics`)).text;
    const sample = (name: string, file: string) => Number(new RegExp(`^${name}\\{build="${id}",file="${file}"\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(sample('uod_delivery_bytes_served', 'iso')).toBe(isoBytes);
    expect(sample('uod_delivery_covered_ratio', 'iso')).toBeCloseTo(covered / isoSize, 12);
    expect(sample('uod_delivery_covered_ratio', 'uki')).toBe(1);
    expect(sample('uod_delivery_last_read_timestamp_seconds', 'iso') * 1000).toBe(Date.parse(after.iso.lastReadAt));

    // The gap read: every byte of the ISO has been delivered.
    const gap = await read(isoUrl, { range: `bytes=${3 * MiB}-${isoSize - 4097}` });
    const done = (await status()).iso;
    expect(done).toMatchObject({ coveredBytes: isoSize, coveredPercent: 100, bytesServed: isoBytes + gap });
  });

  test('a deleted build takes its delivery series out of /metrics', async () => {
    expect((await api(`${svc.url}/metrics`)).text).toContain(`build="${id}"`);
    expect((await api(`${svc.url}/api/v1/builds/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await api(`${svc.url}/metrics`)).text).not.toContain(`build="${id}"`);
  });
});
