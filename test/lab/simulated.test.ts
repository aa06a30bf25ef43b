// The pieces of a simulated server's power-on against a real service (in process, tiny base image):
// its BMC's reads of the ISO (HEAD, then Range reads paced to the link) as the service's delivery
// record sees them, the UKI's initrd and command line found inside the ISO and the UKI alike (checked
// against objcopy's own dump of the UKI), the overlay unpacked on the shared base, and the refusals:
// another base, a non-ISO. Also the BMC configuration's rules for the nspawn driver and the lab plan.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadBmcConfig } from '../../lab/bmc/config.js';
import { locateBootImage } from '../../lab/bmc/simulated/boot-image.js';
import { downloadBootFile, readMedia } from '../../lab/bmc/simulated/fetch.js';
import { unpackBase, unpackOverlay } from '../../lab/bmc/simulated/rootfs.js';
import { defaultLabOptions, serverPlan } from '../../lab/plan.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { api, BASE_ARTIFACTS, REPO, seededTinyRequest, startInProcess, tempDir, waitForBuild, type InProcessService } from '../support/service.js';

requireBaseArtifacts();

describe('a simulated server boots what its BMC read', () => {
  let svc: InProcessService;
  let id: string;
  const dir = tempDir('simulated');
  const HOSTNAME = 'rack4-node17';

  beforeAll(async () => {
    svc = await startInProcess();
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: seededTinyRequest('console=ttyS0 uod.simulated=1', HOSTNAME, 'sim-check-01') });
    id = res.body.id;
    await waitForBuild(svc.url, id);
  }, 120_000);
  afterAll(async () => {
    await svc?.close();
  });

  test('virtual media: HEAD, then paced Range reads of every byte once, as the service records them', async () => {
    const iso = path.join(dir, 'boot.iso');
    const mbps = 40;
    const started = Date.now();
    const size = await readMedia(`${svc.url}/artifacts/${id}/boot.iso`, iso, { mbps, chunkBytes: 256 * 1024 });
    const seconds = (Date.now() - started) / 1000;
    expect(fs.statSync(iso).size).toBe(size);
    // A link of 40 Mbit/s cannot carry it faster (slower is allowed: the machine may be busy).
    expect(seconds).toBeGreaterThanOrEqual((size * 8) / (mbps * 1e6) * 0.95);
    const { body } = await api(`${svc.url}/api/v1/builds/${id}`);
    expect(body.delivery.iso).toMatchObject({ size, bytesServed: size, coveredBytes: size, coveredPercent: 100 });
    // The same bytes as one plain GET.
    const whole = path.join(dir, 'boot-get.iso');
    await downloadBootFile(`${svc.url}/artifacts/${id}/boot.iso`, whole, { mbps: 0 });
    expect(execFileSync('cmp', [iso, whole]).length).toBe(0);
  }, 60_000);

  test('the initrd and command line are found in the ISO and in the UKI, and are the UKI\'s own', async () => {
    const uki = path.join(dir, 'uki.efi');
    await downloadBootFile(`${svc.url}/artifacts/${id}/uki.efi`, uki, { mbps: 0 });
    const dumped = path.join(dir, 'initrd.objcopy');
    execFileSync('objcopy', [`--dump-section=.initrd=${dumped}`, uki, path.join(dir, 'scratch.efi')]);
    const want = fs.readFileSync(dumped);
    for (const file of [uki, path.join(dir, 'boot.iso')]) {
      const found = await locateBootImage(file);
      expect(found.cmdline).toBe('console=ttyS0 uod.simulated=1');
      const fd = fs.openSync(file, 'r');
      const got = Buffer.alloc(found.initrd.size);
      fs.readSync(fd, got, 0, got.length, found.initrd.offset);
      fs.closeSync(fd);
      expect(got.equals(want), file).toBe(true);
    }
    fs.writeFileSync(path.join(dir, 'not-an-iso'), Buffer.alloc(64 * 1024));
    await expect(locateBootImage(path.join(dir, 'not-an-iso'))).rejects.toThrow('not an ISO 9660 image');
  }, 60_000);

  test('only the overlay after the base is unpacked, and only on the base it was built on', async () => {
    const iso = path.join(dir, 'boot.iso');
    const { initrd } = await locateBootImage(iso);
    const base = await unpackBase(path.join(BASE_ARTIFACTS, 'initramfs-tiny-amd64.img'), path.join(dir, 'lower'));
    expect(fs.existsSync(path.join(dir, 'lower/init'))).toBe(true);
    const upper = path.join(dir, 'upper');
    await unpackOverlay(iso, initrd, base, upper);
    expect(fs.readFileSync(path.join(upper, 'var/lib/cloud/seed/nocloud/meta-data'), 'utf8')).toContain(`local-hostname: ${HOSTNAME}`);
    expect(fs.existsSync(path.join(upper, 'init'))).toBe(false);
    const other = { ...base, sha256: '0'.repeat(64) };
    await expect(unpackOverlay(iso, initrd, other, path.join(dir, 'upper2'))).rejects.toThrow('does not start with the base initramfs');
  }, 60_000);
});

describe('simulated servers in the lab plan and the BMC configuration', () => {
  test('the last N servers are simulated', () => {
    const opts = defaultLabOptions('/repo', { servers: 4, simulated: 3 });
    expect([0, 1, 2, 3].map((i) => serverPlan(opts, i).kind)).toEqual(['qemu', 'simulated', 'simulated', 'simulated']);
  });

  test('driver nspawn needs its simulated block, and has no firmware', () => {
    const dir = tempDir('bmc-config');
    const base = JSON.parse(fs.readFileSync(path.join(REPO, 'test/lab/fixtures/bmc-nspawn.json'), 'utf8'));
    const write = (cfg: unknown) => {
      const file = path.join(dir, `bmc-${Math.random().toString(36).slice(2)}.json`);
      fs.writeFileSync(file, JSON.stringify(cfg));
      return file;
    };
    expect(loadBmcConfig(write(base)).hardware.simulated?.netns).toBe('uod-lab.server5');
    const { simulated, ...withoutBlock } = base.hardware;
    void simulated;
    expect(() => loadBmcConfig(write({ ...base, hardware: withoutBlock }))).toThrow('hardware.simulated: required with driver nspawn');
    expect(() => loadBmcConfig(write({ ...base, hardware: { ...base.hardware, driver: 'qemu' } }))).toThrow('hardware.simulated: only with driver nspawn');
    expect(() => loadBmcConfig(write({ ...base, hardware: { ...base.hardware, tpm: true } }))).toThrow('no firmware: no secureBoot, no tpm');
    expect(() => loadBmcConfig(write({ ...base, hardware: { ...base.hardware, simulated: { ...base.hardware.simulated, linkMbps: -1 } } }))).toThrow('hardware.simulated.linkMbps');
  });
});
