import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assembleArtifacts } from '../../src/image/artifacts.js';
import { writeInitramfs } from '../../src/image/initramfs.js';
import { assembleIso, freshTemplate, grubScript, isoVolumeId, markerPath, templateFor } from '../../src/image/iso.js';
import { buildOverlay } from '../../src/image/overlay.js';
import { assembleUki, UKI_WRITERS } from '../../src/image/uki.js';
import { IsoLayoutError, planSplice } from '../../src/image/iso-splice.js';
import { readPe } from '../../src/image/pe.js';
import { archTools, missingTools } from '../../src/image/tools.js';
import type { Architecture } from '../../src/image/architecture.js';

const STAND_IN_UKI: Record<Architecture, string> = {
  amd64: '/usr/lib/systemd/boot/efi/systemd-bootx64.efi',
  arm64: '/usr/lib/systemd/boot/efi/systemd-bootaa64.efi',
};

async function xorrisoReport(iso: string, ...commands: string[]): Promise<string> {
  const { stdout } = await execa('xorriso', ['-indev', iso, ...commands]);
  return stdout;
}

async function listFiles(iso: string): Promise<string[]> {
  const out = await xorrisoReport(iso, '-find', '/', '-type', 'f');
  return out
    .split('\n')
    .filter((l) => l.startsWith("'"))
    .map((l) => l.slice(1, -1))
    .sort();
}

async function extract(iso: string, path: string, to: string): Promise<Buffer> {
  await rm(to, { force: true });
  await execa('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', path, to]);
  return readFile(to);
}

describe('missingTools', () => {
  it('finds everything on a host set up from packages.apt', async () => {
    expect(await missingTools('amd64')).toEqual([]);
    expect(await missingTools('arm64')).toEqual([]);
  });

  it('names the programs it cannot find on PATH, with their packages', async () => {
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const missing = await missingTools('amd64');
      expect(missing.some((m) => m.startsWith('xorriso'))).toBe(true);
      expect(missing.some((m) => m.includes('grub-mkimage') && m.includes('grub-common'))).toBe(true);
      expect(missing.some((m) => m.includes('mtools'))).toBe(true);
    } finally {
      process.env.PATH = saved;
    }
  });
});

describe('ISO naming', () => {
  it('turns volume ids into ISO9660 d-characters, at most 32', () => {
    expect(isoVolumeId('UOD_0123456789ABCDEF')).toBe('UOD_0123456789ABCDEF');
    expect(isoVolumeId('uod-abc.def')).toBe('UOD_ABC_DEF');
    expect(isoVolumeId('X'.repeat(40))).toHaveLength(32);
    expect(() => isoVolumeId('')).toThrow(/usable/);
    expect(() => isoVolumeId('--')).toThrow(/usable/);
  });

  it('makes GRUB find the image by its own marker, then chainload the UKI', () => {
    expect(markerPath('uod_1')).toBe('/EFI/uki-on-demand/marker/UOD_1');
    expect(grubScript('uod_1')).toBe(
      'search --no-floppy --set=root --file /EFI/uki-on-demand/marker/UOD_1\nchainloader /EFI/Linux/uki.efi\nboot\n',
    );
  });
});

describe('assembleIso', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'iso-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A PE program padded with random bytes to an odd size stands in for a UKI. */
  async function standInUki(arch: Architecture, extra: number): Promise<string> {
    const path = join(dir, `uki-${arch}-${extra}.efi`);
    await writeFile(path, Buffer.concat([await readFile(STAND_IN_UKI[arch]), randomBytes(extra)]));
    return path;
  }

  for (const arch of ['amd64', 'arm64'] as const) {
    it(`builds a ${arch} ISO with the UKI, the marker and a UEFI El Torito image holding GRUB`, async () => {
      const ukiPath = await standInUki(arch, 3 * 1024 * 1024 + 7);
      const outPath = join(dir, `boot-${arch}.iso`);
      const volumeId = `UOD_TEST_${arch.toUpperCase()}`;
      const fallbacks: Error[] = [];
      await assembleIso({ arch, ukiPath, outPath, workDir: dir, volumeId, onFallback: (e) => fallbacks.push(e) });
      expect(fallbacks).toEqual([]);

      expect(await listFiles(outPath)).toEqual([
        '/EFI/Linux/uki.efi',
        '/EFI/uki-on-demand/efiboot.img',
        `/EFI/uki-on-demand/marker/${volumeId}`,
      ]);
      expect(await xorrisoReport(outPath, '-pvd_info')).toMatch(new RegExp(`Volume Id\\s*:\\s*${volumeId}`));
      expect((await extract(outPath, '/EFI/Linux/uki.efi', join(dir, 'x-uki'))).equals(await readFile(ukiPath))).toBe(true);

      const elTorito = await xorrisoReport(outPath, '-report_el_torito', 'plain');
      expect(elTorito).toMatch(/El Torito boot img :\s+1\s+UEFI\s+y\s+none/);
      expect(elTorito).toMatch(/El Torito img path :\s+1\s+\/EFI\/uki-on-demand\/efiboot\.img/);
      // As a disk: a GPT whose EFI system partition is the same FAT image.
      const systemArea = await xorrisoReport(outPath, '-report_system_area', 'plain');
      expect(systemArea).toMatch(/GPT type GUID\s*:\s*(\d+)\s+28732ac11ff8d211ba4b00a0c93ec93b/);
      expect(systemArea).toMatch(/GPT partition path :\s+\d+\s+\/EFI\/uki-on-demand\/efiboot\.img/);

      // Inside the FAT image: GRUB for this architecture, with the script that finds this image.
      const fat = join(dir, `efiboot-${arch}.img`);
      await extract(outPath, '/EFI/uki-on-demand/efiboot.img', fat);
      const loader = join(dir, `loader-${arch}.efi`);
      await rm(loader, { force: true });
      await execa('mcopy', ['-i', fat, `::/EFI/BOOT/${archTools(arch).efiBootName}`, loader]);
      expect((await readPe(loader)).arch).toBe(arch);
      expect((await readFile(loader)).includes(grubScript(volumeId))).toBe(true);
      // Nothing else in the FAT image: the firmware's default path and the loader.
      const { stdout: listing } = await execa('mdir', ['-i', fat, '-/', '-b', '::/']);
      expect(listing.split('\n').filter(Boolean).sort()).toEqual([
        '::/EFI/',
        '::/EFI/BOOT/',
        `::/EFI/BOOT/${archTools(arch).efiBootName}`,
      ]);
    });
  }

  it('reuses templates with the same bytes as xorriso makes for each volume id', async () => {
    // Build ids as the service makes them, and the shortest and longest ids.
    const ids = [['amd64', 'UOD_0123456789ABCDEF'], ['amd64', 'UOD_FEDCBA9876543210'], ['arm64', 'A'], ['amd64', '9_'.repeat(16)]] as const;
    for (const [arch, volumeId] of ids) {
      const reused = await templateFor(arch, volumeId, dir);
      const fresh = await freshTemplate(arch, volumeId, dir);
      expect(reused.equals(fresh), `${arch} ${volumeId}`).toBe(true);
    }
  });

  it('gives byte for byte what xorriso gives when it copies the UKI itself', async () => {
    for (const [arch, extra] of [['amd64', 0], ['amd64', 2048 - 1], ['arm64', 1], ['amd64', 1024 * 1024 + 2048]] as const) {
      const ukiPath = await standInUki(arch, extra);
      const spliced = join(dir, 'spliced.iso');
      const direct = join(dir, 'direct.iso');
      const common = { arch, ukiPath, workDir: dir, volumeId: 'UOD_SAME' };
      await assembleIso({ ...common, outPath: spliced, method: 'splice', onFallback: (e) => { throw e; } });
      await assembleIso({ ...common, outPath: direct, method: 'xorriso' });
      const [a, b] = [await readFile(spliced), await readFile(direct)];
      expect(a.length, `${arch} +${extra}`).toBe(b.length);
      expect(a.equals(b), `${arch} +${extra}`).toBe(true);
    }
  });

  it('gives identical images for identical input', async () => {
    const ukiPath = await standInUki('amd64', 100);
    const common = { arch: 'amd64' as const, ukiPath, workDir: dir, volumeId: 'UOD_REPEAT' };
    await assembleIso({ ...common, outPath: join(dir, 'r1.iso') });
    await assembleIso({ ...common, outPath: join(dir, 'r2.iso') });
    expect((await readFile(join(dir, 'r1.iso'))).equals(await readFile(join(dir, 'r2.iso')))).toBe(true);
  });

  it('stops when cancelled and leaves no output behind', async () => {
    const outPath = join(dir, 'cancelled.iso');
    const controller = new AbortController();
    controller.abort(new Error('cancelled by test'));
    await expect(
      assembleIso({ arch: 'amd64', ukiPath: STAND_IN_UKI.amd64, outPath, workDir: dir, volumeId: 'UOD_X', signal: controller.signal }),
    ).rejects.toThrow('cancelled by test');
    expect(existsSync(outPath)).toBe(false);
  });
});

describe('planSplice', () => {
  let template: Buffer;
  const placeholder = Buffer.alloc(2048, 'p');
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'splice-test-'));
    const uki = join(dir, 'placeholder');
    await writeFile(uki, placeholder);
    // The template as xorriso makes it for a UKI that is exactly the placeholder.
    await assembleIso({ arch: 'amd64', ukiPath: uki, outPath: join(dir, 't.iso'), workDir: dir, volumeId: 'UOD_T', method: 'xorriso' });
    template = await readFile(join(dir, 't.iso'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('grows the image by the whole blocks the file needs beyond the placeholder', () => {
    const plan = planSplice(template, placeholder, 3 * 2048 + 1);
    expect(plan.totalSize).toBe(template.length + 3 * 2048);
    expect(plan.tailOffset - plan.dataOffset).toBe(4 * 2048);
    expect(plan.head.length + plan.tail.length + 2048).toBe(template.length);
  });

  it('refuses templates it does not understand instead of writing a broken image', () => {
    const expectLayoutError = (t: Buffer, p: Buffer = placeholder, size = 10_000) => {
      expect(() => planSplice(t, p, size)).toThrow(IsoLayoutError);
    };
    expectLayoutError(template, Buffer.alloc(2048, 'q')); // no placeholder
    const badGpt = Buffer.from(template);
    badGpt.writeUInt8(badGpt.readUInt8(512 + 60) ^ 0xff, 512 + 60); // primary GPT header checksum no longer matches
    expectLayoutError(badGpt);
    const badPvd = Buffer.from(template);
    badPvd.writeUInt32LE(badPvd.readUInt32LE(16 * 2048 + 80) + 1, 16 * 2048 + 80);
    expectLayoutError(badPvd);
    expectLayoutError(template.subarray(0, template.length - 2048));
    expectLayoutError(template, placeholder, 2 ** 32); // one ISO9660 extent holds at most 4 GiB - 1
  });

  it('leaves the template untouched', async () => {
    const copy = Buffer.from(template);
    planSplice(template, placeholder, 1_000_000);
    expect(template.equals(copy)).toBe(true);
  });
});


describe('assembleArtifacts', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'artifacts-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

  it.each(UKI_WRITERS)('writes the same UKI and ISO as the step-by-step path, with their digests (%s writer)', async (writer) => {
    const base = join(dir, `base-${writer}.cpio.gz`);
    await writeFile(base, randomBytes(3 * 1024 * 1024 + 3)); // more than one copy chunk, unaligned
    const overlay = await buildOverlay([{ path: '/etc/hello', content: Buffer.from('hi') }], []);
    const common = { arch: 'amd64' as const, kernelPath: STAND_IN_UKI.amd64, cmdline: 'console=ttyS0', osRelease: 'ID=x\n' };
    const oneGo = join(dir, `one-go-${writer}`);
    const steps = join(dir, `steps-${writer}`);
    await mkdir(oneGo);
    await mkdir(steps);

    const fallbacks: Error[] = [];
    const result = await assembleArtifacts({
      ...common,
      baseInitramfsPath: base,
      overlay,
      volumeId: 'UOD_ARTIFACTS',
      ukiPath: join(oneGo, 'uki.efi'),
      isoPath: join(oneGo, 'boot.iso'),
      workDir: oneGo,
      digest: true,
      ukiWriter: writer,
      onIsoFallback: (e) => fallbacks.push(e),
    });
    expect(fallbacks).toEqual([]);

    await writeInitramfs(base, overlay, join(steps, 'initrd'));
    await assembleUki({ ...common, initrdPath: join(steps, 'initrd'), outPath: join(steps, 'uki.efi'), workDir: steps, writer });
    await assembleIso({ arch: 'amd64', ukiPath: join(steps, 'uki.efi'), outPath: join(steps, 'boot.iso'), workDir: steps, volumeId: 'UOD_ARTIFACTS', method: 'xorriso' });

    const [uki, iso] = [await readFile(join(oneGo, 'uki.efi')), await readFile(join(oneGo, 'boot.iso'))];
    expect(uki.equals(await readFile(join(steps, "uki.efi"))), "uki").toBe(true);
    expect(iso.equals(await readFile(join(steps, "boot.iso"))), "iso").toBe(true);
    expect(result).toEqual({ uki: { bytes: uki.length, sha256: sha256(uki) }, iso: { bytes: iso.length, sha256: sha256(iso) } });
    // No work files left behind: only the two artifacts.
    expect((await readdir(oneGo)).sort()).toEqual(['boot.iso', 'uki.efi']);
  });

  it('stops when cancelled, leaving neither artifacts nor work files', async () => {
    const work = join(dir, 'cancelled');
    await mkdir(work);
    const base = join(dir, 'small-base');
    await writeFile(base, randomBytes(1000));
    const controller = new AbortController();
    const run = assembleArtifacts({
      arch: 'amd64',
      kernelPath: STAND_IN_UKI.amd64,
      baseInitramfsPath: base,
      overlay: null,
      cmdline: '',
      osRelease: '',
      volumeId: 'UOD_CANCEL',
      ukiPath: join(work, 'uki.efi'),
      isoPath: join(work, 'boot.iso'),
      workDir: work,
      signal: controller.signal,
    });
    controller.abort(new Error('cancelled by test'));
    await expect(run).rejects.toThrow('cancelled by test');
    expect(await readdir(work)).toEqual([]);
  });
});
