// The build endpoints against a real listener: status codes, dedup, failures, cancellation, queue limits,
// a base file replaced under an accepted build.
import { createHash } from 'node:crypto';
import { systemdMeasure } from '../support/pcr11.js';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import pino from 'pino';
import { ImagePipeline, type BuildPipeline, type PipelineJob } from '../../src/builds/pipeline.js';
import { loadConfig } from '../../src/config.js';
import { startService, type RunningService } from '../../src/service.js';
import { assertMatchesSpec } from '../support/openapi.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { api, b64, BASE_ARTIFACTS, tempDir, tinyRequest, waitForBuild } from '../support/service.js';
import { checkEveryResponse } from '../support/openapi.js';

// Every response this file receives must be described by openapi.yaml.
checkEveryResponse();

requireBaseArtifacts();

/**
 * The real pipeline, counted; `failNext` makes the next run fail the way a tool failure would, and
 * `holdNext` makes the next run wait for the promise before it starts.
 */
class CountingPipeline implements BuildPipeline {
  runs = 0;
  failNext = false;
  holdNext: Promise<void> | null = null;
  private readonly real = new ImagePipeline();
  async run(job: PipelineJob) {
    this.runs++;
    if (this.failNext) {
      this.failNext = false;
      throw new Error('objcopy: simulated tool failure');
    }
    const hold = this.holdNext;
    this.holdNext = null;
    await hold;
    return this.real.run(job);
  }
}

/** A base-artifacts directory with the real kernel and tiny initramfs plus a large, slow-to-build initramfs. */
function baseDirWithLargeInitramfs(megabytes: number): string {
  const dir = tempDir('base');
  fs.symlinkSync(path.join(BASE_ARTIFACTS, 'vmlinuz-amd64'), path.join(dir, 'vmlinuz-amd64'));
  fs.symlinkSync(path.join(BASE_ARTIFACTS, 'initramfs-tiny-amd64.img'), path.join(dir, 'initramfs-tiny-amd64.img'));
  const fd = fs.openSync(path.join(dir, 'initramfs-large.img'), 'w');
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < megabytes; i++) {
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, j);
    fs.writeSync(fd, chunk);
  }
  fs.closeSync(fd);
  return dir;
}

async function start(args: string[], pipeline?: BuildPipeline): Promise<{ url: string; service: RunningService; dataDir: string }> {
  const dataDir = tempDir('data');
  const config = loadConfig(['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--base-artifacts', BASE_ARTIFACTS, ...args], {});
  const service = await startService(config, { logger: pino({ level: 'silent' }), pipeline });
  return { url: `http://${service.addresses.http}`, service, dataDir };
}

describe('builds API', () => {
  const pipeline = new CountingPipeline();
  let url: string;
  let service: RunningService;
  let dataDir: string;

  beforeAll(async () => {
    ({ url, service, dataDir } = await start([], pipeline));
  });
  afterAll(() => service?.close());

  test('POST answers 202 with an id and an absolute status URL; the build completes with artifact URLs', async () => {
    const res = await api(`${url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ files: [{ path: '/etc/hello', contentBase64: b64('hi\n') }] }) });
    expect(res.status).toBe(202);
    assertMatchesSpec('/api/v1/builds', 'post', 202, res.body);
    expect(res.body.id).toMatch(/^[0-9a-f]{64}$/);
    expect(res.body.statusUrl).toBe(`${url}/api/v1/builds/${res.body.id}`);
    expect(res.headers.location).toBe(res.body.statusUrl);

    const status = await waitForBuild(url, res.body.id);
    expect(status.state).toBe('completed');
    const got = await api(`${url}/api/v1/builds/${res.body.id}`);
    assertMatchesSpec('/api/v1/builds/{id}', 'get', 200, got.body);
    expect(got.body.artifacts).toEqual({
      ukiUrl: `${url}/artifacts/${res.body.id}/uki.efi`,
      isoUrl: `${url}/artifacts/${res.body.id}/boot.iso`,
    });
    expect(Date.parse(got.body.completedAt)).toBeGreaterThanOrEqual(Date.parse(got.body.createdAt));
    // the record describes exactly the bytes that are published
    const dir = path.join(dataDir, 'builds', res.body.id);
    expect(fs.readdirSync(dir).sort()).toEqual(['boot.iso', 'build.json', 'uki.efi']);
    const record = JSON.parse(fs.readFileSync(path.join(dir, 'build.json'), 'utf8'));
    expect(record.state).toBe('completed');
    for (const [kind, file] of [['uki', 'uki.efi'], ['iso', 'boot.iso']] as const) {
      const bytes = fs.readFileSync(path.join(dir, file));
      expect(record.artifacts[kind]).toEqual({ file, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
    expect(fs.readdirSync(path.join(dataDir, 'tmp'))).toEqual([]);
    // PCR 11 as systemd computes it from the published UKI, per phase; the record keeps the same.
    expect(got.body.measurements.pcr11).toEqual(await systemdMeasure(path.join(dir, 'uki.efi'), ['', 'sysinit', 'sysinit:ready']));
    expect(record.measurements).toEqual(got.body.measurements);
  });

  test('an identical request returns the same id and builds nothing', async () => {
    const body = tinyRequest({ cmdline: 'console=ttyS0 dedup-sequential' });
    const first = await api(`${url}/api/v1/builds`, { method: 'POST', json: body });
    await waitForBuild(url, first.body.id);
    const runs = pipeline.runs;
    const reordered = Object.fromEntries(Object.entries(body).reverse());
    const second = await api(`${url}/api/v1/builds`, { method: 'POST', json: reordered });
    expect(second.status).toBe(202);
    expect(second.body.id).toBe(first.body.id);
    expect(pipeline.runs).toBe(runs);
  });

  test('100 concurrent identical POSTs run exactly one build', async () => {
    const body = tinyRequest({ cmdline: 'console=ttyS0 dedup-concurrent' });
    const runs = pipeline.runs;
    const responses = await Promise.all(Array.from({ length: 100 }, () => api(`${url}/api/v1/builds`, { method: 'POST', json: body })));
    expect(new Set(responses.map((r) => r.status))).toEqual(new Set([202]));
    const ids = new Set(responses.map((r) => r.body.id));
    expect(ids.size).toBe(1);
    await waitForBuild(url, [...ids][0] as string);
    expect(pipeline.runs - runs).toBe(1);
  });

  test('a failed build reports its error and is built again when resubmitted', async () => {
    const body = tinyRequest({ cmdline: 'console=ttyS0 fail-once' });
    pipeline.failNext = true;
    const first = await api(`${url}/api/v1/builds`, { method: 'POST', json: body });
    const failed = await waitForBuild(url, first.body.id);
    expect(failed.state).toBe('failed');
    expect(failed.error).toBe('objcopy: simulated tool failure');
    expect(failed.artifacts).toBeUndefined();
    assertMatchesSpec('/api/v1/builds/{id}', 'get', 200, failed);
    expect((await api(`${url}/artifacts/${first.body.id}/uki.efi`)).status).toBe(404);

    const again = await api(`${url}/api/v1/builds`, { method: 'POST', json: body });
    expect(again.body.id).toBe(first.body.id);
    const done = await waitForBuild(url, again.body.id);
    expect(done.state).toBe('completed');
    expect(done.error).toBeUndefined();
  });

  test('list returns every build as BuildStatus', async () => {
    const res = await api(`${url}/api/v1/builds`);
    expect(res.status).toBe(200);
    assertMatchesSpec('/api/v1/builds', 'get', 200, res.body);
    // the four builds made above, the failed one built again
    expect(res.body.map((b: { state: string }) => b.state)).toEqual(['completed', 'completed', 'completed', 'completed']);
  });

  test.each([
    ['unknown kernel', tinyRequest({ kernel: 'vmlinuz-nope' }), 'kernel: no base artifact named "vmlinuz-nope" in the base artifacts directory'],
    ['unknown initramfs', tinyRequest({ initramfs: 'nope.img' }), 'initramfs: no base artifact named "nope.img" in the base artifacts directory'],
    ['kernel/architecture mismatch', tinyRequest({ architecture: 'arm64' }), 'kernel: "vmlinuz-amd64" is an amd64 kernel but architecture is "arm64"'],
    ['initramfs used as kernel', tinyRequest({ kernel: 'initramfs-tiny-amd64.img' }), 'kernel: "initramfs-tiny-amd64.img" is not an EFI-bootable kernel (no PE header)'],
    ['path traversal in kernel', tinyRequest({ kernel: '../../etc/passwd' }), 'kernel: must be a plain file name ([A-Za-z0-9][A-Za-z0-9._-]*)'],
    ['unknown field', tinyRequest({ extra: 1 }), 'unknown field "extra"'],
    ['tlsArtifacts without a TLS listener', tinyRequest({ tlsArtifacts: true }), 'tlsArtifacts: the service has no TLS listener (start it with --tls-listen, --tls-cert, --tls-key)'],
  ])('400: %s', async (_name, body, message) => {
    const res = await api(`${url}/api/v1/builds`, { method: 'POST', json: body });
    expect(res.status).toBe(400);
    assertMatchesSpec('/api/v1/builds', 'post', 400, res.body);
    expect(res.body.message).toBe(message);
  });

  test('malformed JSON, wrong content type and oversized bodies get 4xx with a message', async () => {
    const bad = await api(`${url}/api/v1/builds`, { method: 'POST', body: '{"kernel":', headers: { 'content-type': 'application/json' } });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toBe("body: Body is not valid JSON but content-type is set to 'application/json'");
    const type = await api(`${url}/api/v1/builds`, { method: 'POST', body: 'kernel=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(type.status).toBe(415);
    expect(type.body.message).toBe('Content-Type: Unsupported Media Type');
    const empty = await api(`${url}/api/v1/builds`, { method: 'POST', body: '', headers: { 'content-type': 'application/json' } });
    expect(empty.status).toBe(400);
    expect(empty.body.message).toBe("body: Body cannot be empty when content-type is set to 'application/json'");
    const big = await api(`${url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ files: [{ path: '/big', contentBase64: b64(Buffer.alloc(17 * 1024 * 1024)) }] }) });
    expect(big.status).toBe(413);
    expect(big.body.message).toBe('body: Request body is too large');
    assertMatchesSpec('/api/v1/builds', 'post', 413, big.body);
  });

  test('GET and DELETE of an unknown build are 404 with a message', async () => {
    for (const method of ['GET', 'DELETE']) {
      const res = await api(`${url}/api/v1/builds/${'0'.repeat(64)}`, { method });
      expect(res.status).toBe(404);
      assertMatchesSpec('/api/v1/builds/{id}', method, 404, res.body);
      expect(res.body.message).toBe(`build "${'0'.repeat(64)}" not found`);
    }
  });

  test('DELETE removes the build and its files; purge removes all', async () => {
    const res = await api(`${url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ cmdline: 'console=ttyS0 to-delete' }) });
    await waitForBuild(url, res.body.id);
    expect((await api(`${url}/artifacts/${res.body.id}/boot.iso`, { method: 'HEAD' })).status).toBe(200);
    expect((await api(`${url}/api/v1/builds/${res.body.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await api(`${url}/api/v1/builds/${res.body.id}`)).status).toBe(404);
    expect((await api(`${url}/artifacts/${res.body.id}/boot.iso`, { method: 'HEAD' })).status).toBe(404);
    expect(fs.existsSync(path.join(dataDir, 'builds', res.body.id))).toBe(false);

    expect((await api(`${url}/api/v1/builds`, { method: 'DELETE' })).status).toBe(204);
    expect((await api(`${url}/api/v1/builds`)).body).toEqual([]);
    expect(fs.readdirSync(path.join(dataDir, 'builds'))).toEqual([]);
  });
});

describe('builds API: cancellation and queue limits', () => {
  let base: string;
  beforeAll(() => {
    base = baseDirWithLargeInitramfs(150);
  });

  test('DELETE of a running build cancels it and leaves no files', async () => {
    const { url, service, dataDir } = await start(['--base-artifacts', base]);
    try {
      const res = await api(`${url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ initramfs: 'initramfs-large.img' }) });
      expect(res.status).toBe(202);
      for (let i = 0; i < 100 && (await api(`${url}/api/v1/builds/${res.body.id}`)).body.state !== 'running'; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect((await api(`${url}/api/v1/builds/${res.body.id}`)).body.state).toBe('running');
      expect((await api(`${url}/api/v1/builds/${res.body.id}`, { method: 'DELETE' })).status).toBe(204);
      expect((await api(`${url}/api/v1/builds/${res.body.id}`)).status).toBe(404);
      expect(fs.readdirSync(path.join(dataDir, 'builds'))).toEqual([]);
      expect(fs.readdirSync(path.join(dataDir, 'tmp'))).toEqual([]);
      // and it can be submitted again from scratch
      const again = await api(`${url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ initramfs: 'initramfs-large.img' }) });
      expect(again.body.id).toBe(res.body.id);
      expect((await waitForBuild(url, again.body.id)).state).toBe('completed');
    } finally {
      await service.close();
    }
  });

  test('503 with Retry-After when the queue is full', async () => {
    const { url, service } = await start(['--base-artifacts', base, '--build-concurrency', '1', '--queue-size', '1']);
    try {
      const submit = (n: number) => api(`${url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ initramfs: 'initramfs-large.img', cmdline: `console=ttyS0 n=${n}` }) });
      const a = await submit(1);
      const b = await submit(2);
      const c = await submit(3);
      expect([a.status, b.status]).toEqual([202, 202]);
      expect(c.status).toBe(503);
      assertMatchesSpec('/api/v1/builds', 'post', 503, c.body);
      expect(c.body.message).toBe('build queue is full (1 waiting); retry later');
      expect(c.headers['retry-after']).toBe('5');
      // an identical request to an accepted one is still answered while the queue is full
      expect((await submit(2)).status).toBe(202);
      const metrics = await api(`${url}/metrics`);
      expect(metrics.text).toMatch(/^uod_build_queue_depth 1$/m);
    } finally {
      await service.close();
    }
  });
});

describe('builds API: a base file replaced after a build was accepted', () => {
  test('the accepted build fails asking for a resubmission, which gets a new id and builds from the new bytes', async () => {
    const base = tempDir('base');
    fs.symlinkSync(path.join(BASE_ARTIFACTS, 'vmlinuz-amd64'), path.join(base, 'vmlinuz-amd64'));
    const original = fs.readFileSync(path.join(BASE_ARTIFACTS, 'initramfs-tiny-amd64.img'));
    fs.writeFileSync(path.join(base, 'initramfs-tiny-amd64.img'), original);
    const pipeline = new CountingPipeline();
    let release!: () => void;
    pipeline.holdNext = new Promise((resolve) => (release = resolve));
    const { url, service } = await start(['--base-artifacts', base, '--build-concurrency', '1'], pipeline);
    try {
      // one build holds the only slot, so the next one is accepted and waits in the queue
      const holding = await api(`${url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ cmdline: 'console=ttyS0 holds-the-slot' }) });
      for (let i = 0; i < 200 && pipeline.runs === 0; i++) await new Promise((r) => setTimeout(r, 10));
      const body = tinyRequest({ cmdline: 'console=ttyS0 base-replaced' });
      const accepted = await api(`${url}/api/v1/builds`, { method: 'POST', json: body });
      expect(accepted.status).toBe(202);
      expect((await api(`${url}/api/v1/builds/${accepted.body.id}`)).body.state).toBe('pending');

      // replaced the documented way: a new file renamed over the old one
      const next = path.join(base, '.initramfs.new');
      fs.writeFileSync(next, Buffer.concat([original, Buffer.alloc(512)]));
      fs.renameSync(next, path.join(base, 'initramfs-tiny-amd64.img'));
      release();

      expect((await waitForBuild(url, holding.body.id)).state).toBe('completed');
      const failed = await waitForBuild(url, accepted.body.id);
      expect(failed.state).toBe('failed');
      expect(failed.error).toBe('a base artifact changed since this build was requested; submit the request again for a new build');
      expect(pipeline.runs).toBe(1);
      expect((await api(`${url}/artifacts/${accepted.body.id}/uki.efi`, { method: 'HEAD' })).status).toBe(404);

      const resubmitted = await api(`${url}/api/v1/builds`, { method: 'POST', json: body });
      expect(resubmitted.status).toBe(202);
      expect(resubmitted.body.id).not.toBe(accepted.body.id);
      expect((await waitForBuild(url, resubmitted.body.id)).state).toBe('completed');
      expect((await api(`${url}/api/v1/builds/${accepted.body.id}`)).body.state).toBe('failed');
    } finally {
      release();
      await service.close();
    }
  });
});
