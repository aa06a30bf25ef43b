// The data directory on a 40 MiB tmpfs: a build that cannot fit must fail saying why and leave nothing
// behind, while artifact serving and small builds carry on; a full disk must refuse new records with a
// 507 and lose nothing that was acknowledged.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { assertMatchesSpec } from '../support/openapi.js';
import { requireBaseArtifacts, requireRoot } from '../support/prerequisites.js';
import { api, tinyRequest, waitForBuild } from '../support/service.js';
import { takeTurn } from './exclusive.js';
import { makeBaseDir, removeTempRoots, seededRandom, sha256, tempRoot } from './fixtures.js';
import { until } from '../support/until.js';
import { stopAllServices, startService, type ServiceProcess } from '../support/service-process.mjs';
import { exerciseMount } from './virtual-bmc.js';

requireBaseArtifacts();
requireRoot('the disk-full tests mount a tmpfs');

const NO_SPACE = /ENOSPC|no space left on device/i;
const SIZE = 40 * 1024 * 1024;

/** Builds small enough that several fit: the small stand-in kernel and the tiny initramfs (about 5 MB each). */
const small = (tag: string) => tinyRequest({ kernel: 'vmlinuz-small', cmdline: `console=ttyS0 disk-full ${tag}` });
/** The real kernel and a 30 MiB initramfs: the initramfs fits, the UKI (about 38 MB) cannot. */
const big = tinyRequest({ initramfs: 'initramfs-30m.img', cmdline: 'console=ttyS0 disk-full big' });

/** Fills the file system with one file until it refuses more; returns the file. */
function fillUp(dir: string): string {
  const ballast = path.join(dir, 'ballast');
  const fd = fs.openSync(ballast, 'w');
  const chunk = Buffer.alloc(256 * 1024, 0xaa);
  try {
    for (let i = 0; i < 1024; i++) fs.writeSync(fd, chunk);
    throw new Error('the tmpfs never filled up');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    // the last partial page may still take a few bytes
    for (let i = 0; i < 4096; i++) {
      try {
        if (fs.writeSync(fd, Buffer.alloc(1)) === 0) break;
      } catch {
        break;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return ballast;
}

/** Bytes allocated on the file system that no file accounts for (space held by deleted-but-open files, say). */
function unaccounted(mount: string): number {
  const st = fs.statfsSync(mount);
  const used = (st.blocks - st.bfree) * st.bsize;
  let files = 0;
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else files += Math.ceil(fs.lstatSync(p).size / 4096) * 4096;
    }
  };
  walk(mount);
  return used - files;
}

describe('disk full: the data directory on a 40 MiB tmpfs', () => {
  let release: () => void = () => {};
  let root: string;
  let mount: string;
  let mounted = false;
  let base: string;
  let dataDir: string;
  let svc: ServiceProcess;
  let smallA: { id: string; isoUrl: string; iso: Buffer };
  let bigFailure: { createdAt: string; completedAt: string } | undefined;
  const buildDir = (id: string) => path.join(dataDir, 'builds', id);

  beforeAll(async () => {
    release = await takeTurn(900_000);
    root = tempRoot('disk-full');
    mount = path.join(root, 'mnt');
    fs.mkdirSync(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${SIZE}`, 'tmpfs', mount]);
    mounted = true;
    base = makeBaseDir(path.join(root, 'base'), { fillers: { 'initramfs-30m.img': 30 }, smallKernel: true });
    dataDir = path.join(mount, 'data');
    svc = await startService({ dataDir, baseArtifacts: base });
  }, 900_000);

  afterAll(async () => {
    await stopAllServices();
    if (mounted) {
      try {
        execFileSync('umount', [mount]);
      } catch {
        execFileSync('umount', ['-l', mount]);
      }
    }
    removeTempRoots();
    release();
  });

  test('small builds complete on the small disk', async () => {
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: small('A') });
    const status = await waitForBuild(svc.url, res.body.id);
    expect(status.state, status.error).toBe('completed');
    smallA = { id: res.body.id, isoUrl: status.artifacts.isoUrl, iso: fs.readFileSync(path.join(buildDir(res.body.id), 'boot.iso')) };
    expect(fs.statfsSync(mount).bavail * fs.statfsSync(mount).bsize).toBeGreaterThan(30 * 1024 * 1024);
  });

  test('a build that cannot fit fails naming ENOSPC and leaves nothing, while serving and small builds carry on', async () => {
    expect(smallA, 'the first small build completed').toBeDefined();
    const deadline = Date.now() + 120_000;
    const reader = exerciseMount(smallA.isoUrl, smallA.iso, { reads: 600, sizes: [64 * 1024, 256 * 1024], random: seededRandom(7), deadline });
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: big });
    expect(res.status).toBe(202);
    const failed = await waitForBuild(svc.url, res.body.id);
    expect(failed.state).toBe('failed');
    expect(failed.error).toMatch(NO_SPACE);
    expect(failed.artifacts).toBeUndefined();
    bigFailure = failed;
    expect((await reader).errors).toEqual([]);

    // nothing partial: the record alone, an empty scratch directory, no space held by deleted files
    expect(fs.readdirSync(buildDir(res.body.id))).toEqual(['build.json']);
    await until('tmp/ to be empty', 10_000, async () => (fs.readdirSync(path.join(dataDir, 'tmp')).length === 0 ? true : undefined), 50);
    expect(unaccounted(mount)).toBeLessThan(1024 * 1024);
    for (const file of ['uki.efi', 'boot.iso']) {
      expect((await api(`${svc.url}/artifacts/${res.body.id}/${file}`, { method: 'HEAD' })).status).toBe(404);
    }

    // the next small build still works, and so does serving the first one
    const b = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: small('B') });
    expect((await waitForBuild(svc.url, b.body.id)).state).toBe('completed');
    const whole = await fetch(smallA.isoUrl);
    expect(sha256(Buffer.from(await whole.arrayBuffer()))).toBe(sha256(smallA.iso));
  }, 300_000);

  test('the failed build is tried again on resubmission and fails the same clean way', async () => {
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: big });
    expect(res.status).toBe(202);
    const first = bigFailure;
    expect(first, 'the first attempt failed').toBeDefined();
    const failed = await waitForBuild(svc.url, res.body.id);
    expect(failed.state).toBe('failed');
    // a new attempt, not the old failure served from a cache
    expect(Date.parse(failed.createdAt)).toBeGreaterThanOrEqual(Date.parse(first!.completedAt));
    expect(failed.error).toMatch(NO_SPACE);
    expect(fs.readdirSync(buildDir(res.body.id))).toEqual(['build.json']);
    await until('tmp/ to be empty', 10_000, async () => (fs.readdirSync(path.join(dataDir, 'tmp')).length === 0 ? true : undefined), 50);
    expect(unaccounted(mount)).toBeLessThan(1024 * 1024);
  }, 300_000);

  let refusedLeftovers: string[] | undefined;

  test('on a full disk a new build is refused with 507 naming the cause and leaves no record; space back, it builds', async () => {
    const ballast = fillUp(mount);
    try {
      const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: small('C') });
      expect(res.status, res.text).toBe(507);
      assertMatchesSpec('/api/v1/builds', 'post', 507, res.body);
      expect(res.body.message).toMatch(NO_SPACE);
      const listed = (await api(`${svc.url}/api/v1/builds`)).body as Array<{ id: string }>;
      expect(listed).toHaveLength(3); // A, B and the failed big build
      refusedLeftovers = fs.readdirSync(path.join(dataDir, 'builds'))
        .filter((id) => !listed.some((b) => b.id === id))
        .map((id) => `builds/${id}/ holding [${fs.readdirSync(buildDir(id)).join(', ')}]`);
      // serving needs no space
      const head = await api(smallA.isoUrl, { method: 'HEAD' });
      expect(head.status).toBe(200);
      const range = await api(smallA.isoUrl, { headers: { range: 'bytes=2048-4095' } });
      expect(range.status).toBe(206);
      expect((await api(`${svc.url}/healthz`)).text).toBe('ok');
    } finally {
      fs.rmSync(ballast);
    }
    const again = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: small('C') });
    expect(again.status).toBe(202);
    expect((await waitForBuild(svc.url, again.body.id)).state).toBe('completed');
  }, 300_000);

  test('a build refused for lack of space leaves no directory behind', () => {
    expect(refusedLeftovers, 'the 507 test ran').toBeDefined();
    // load() discards such a directory at the next start, but until then it is an orphan that no
    // DELETE or purge can reach.
    expect(refusedLeftovers).toEqual([]);
  });

  /** Checkin writes made while the disk fills up: what was acknowledged, and the first refusal. */
  const acknowledged = new Map<string, string[]>();
  let refusal: { id: string; status: number; body: any; visible: number } | undefined;

  test('a checkin write that cannot be stored is refused with 507 naming the cause and leaves no trace', async () => {
    const register = async (id: string, addresses: string[]) => {
      const res = await api(`${svc.url}/api/v1/checkins/${id}`, { method: 'POST', json: { addresses } });
      if (res.status === 204) acknowledged.set(id, addresses);
      return res;
    };
    expect((await register('before-full', ['192.0.2.1'])).status).toBe(204);
    const ballast = fillUp(mount);
    try {
      // Each record is ~125 bytes: within 64 writes the journal's last page is full for sure.
      for (let i = 0; i < 64 && !refusal; i++) {
        const id = `while-full-${i}`;
        const res = await register(id, ['198.51.100.1', '198.51.100.2', '198.51.100.3']);
        if (res.status !== 204) refusal = { id, status: res.status, body: res.body, visible: (await api(`${svc.url}/api/v1/checkins/${id}`)).status };
      }
    } finally {
      fs.rmSync(ballast);
    }
    expect((await register('after-full', ['192.0.2.2'])).status).toBe(204);
    expect(refusal, 'a full disk never refused a checkin write').toBeDefined();
    expect(refusal!.body.message, JSON.stringify(refusal)).toMatch(NO_SPACE);
    expect(refusal!.status, JSON.stringify(refusal)).toBe(507);
    expect(refusal!.visible, 'the refused checkin is visible anyway').toBe(404);
  }, 120_000);

  test('every checkin write acknowledged around the full disk survives a restart', async () => {
    expect(acknowledged.size, 'checkin writes were made').toBeGreaterThan(2);
    expect(await svc.stop()).toBe(0);
    svc = await startService({ dataDir, baseArtifacts: base });
    const lost: string[] = [];
    for (const [id, addresses] of acknowledged) {
      const res = await api(`${svc.url}/api/v1/checkins/${id}`);
      if (res.status !== 200 || JSON.stringify(res.body.addresses) !== JSON.stringify(addresses)) lost.push(`${id} (${res.status})`);
    }
    expect(lost, `${lost.length} of ${acknowledged.size} acknowledged checkins lost`).toEqual([]);
    // and the builds are all still there
    expect(((await api(`${svc.url}/api/v1/builds`)).body as unknown[]).length).toBe(4);
  }, 120_000);
});
