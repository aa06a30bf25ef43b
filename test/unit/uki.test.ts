import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPe, type PeImage } from '../../src/image/pe.js';
import { archTools } from '../../src/image/tools.js';
import type { Architecture } from '../../src/image/architecture.js';
import { mergeSbat, SBAT_LINE, STUB_SBAT_RENAMED } from '../../src/image/sbat.js';
import { assembleUki, DEFAULT_UKI_WRITER, planUkiSections, UKI_WRITERS, type UkiSectionPlan, type UkiWriter } from '../../src/image/uki.js';

const OBJDUMP: Record<Architecture, string> = { amd64: 'x86_64-linux-gnu-objdump', arm64: 'aarch64-linux-gnu-objdump' };
// Any PE program of the right architecture stands in for a kernel when none has been fetched.
const STAND_IN_KERNEL: Record<Architecture, string> = {
  amd64: '/usr/lib/systemd/boot/efi/systemd-bootx64.efi',
  arm64: '/usr/lib/systemd/boot/efi/systemd-bootaa64.efi',
};
const realKernel = (arch: Architecture) => new URL(`../../base-artifacts/out/vmlinuz-${arch}`, import.meta.url).pathname;

function expectSoundPlan(stub: PeImage, plan: UkiSectionPlan[], linuxSizeOfImage: number) {
  expect(plan.map((s) => s.name)).toEqual(['.sbat', '.osrel', '.cmdline', '.initrd', '.linux']);
  const linux = plan.at(-1)!;
  expect(linux.virtualSize).toBe(linuxSizeOfImage);
  const stubEnd = Math.max(stub.sizeOfImage, ...stub.sections.map((s) => s.virtualAddress + s.virtualSize));
  let previousEnd = stubEnd;
  for (const s of plan) {
    expect(s.vma % stub.sectionAlignment, s.name).toBe(0);
    expect(s.vma, `${s.name} starts after what comes before it`).toBeGreaterThanOrEqual(previousEnd);
    if (s.name !== '.linux') expect(s.virtualSize).toBe(s.size);
    previousEnd = s.vma + Math.max(s.virtualSize, 1);
  }
}

describe('planUkiSections', () => {
  for (const arch of ['amd64', 'arm64'] as const) {
    it(`lays out sections after the ${arch} stub, aligned, in order, .linux last with the kernel's SizeOfImage`, async () => {
      const stub = await readPe(archTools(arch).stub);
      const inputs = { sbat: 300, osrel: 100, cmdline: 37, initrd: 30 * 1024 * 1024 + 3, linux: 8_247_232, linuxSizeOfImage: 0x822000 };
      const plan = planUkiSections(stub, inputs);
      expectSoundPlan(stub, plan, inputs.linuxSizeOfImage);
      expect(plan.map((s) => s.size)).toEqual([300, 100, 37, inputs.initrd, inputs.linux]);
    });
  }

  it('never overlaps or misaligns, whatever the stub and sizes', () => {
    const section = fc.record({
      virtualAddress: fc.integer({ min: 0x1000, max: 0x100000 }),
      virtualSize: fc.integer({ min: 0, max: 0x10000 }),
      rawSize: fc.integer({ min: 0, max: 0x10000 }),
    });
    fc.assert(
      fc.property(
        fc.array(section, { minLength: 1, maxLength: 8 }),
        fc.constantFrom(0x200, 0x1000, 0x10000),
        fc.array(fc.integer({ min: 0, max: 50_000_000 }), { minLength: 5, maxLength: 5 }),
        fc.integer({ min: 0, max: 80_000_000 }),
        (sections, sectionAlignment, [sbat, osrel, cmdline, initrd, linux], linuxSizeOfImage) => {
          const stub = {
            machine: 0x8664,
            arch: 'amd64',
            sectionAlignment,
            fileAlignment: 0x200,
            sizeOfImage: Math.max(...sections.map((s) => s.virtualAddress + s.virtualSize)),
            sections: sections.map((s, i) => ({ name: `.s${i}`, rawPointer: 0x400, characteristics: 0, ...s })),
          } as unknown as PeImage;
          const plan = planUkiSections(stub, { sbat: sbat!, osrel: osrel!, cmdline: cmdline!, initrd: initrd!, linux: linux!, linuxSizeOfImage });
          expectSoundPlan(stub, plan, Math.max(linuxSizeOfImage, 1));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('assembleUki', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'uki-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function dumpSection(arch: Architecture, uki: string, name: string): Promise<Buffer> {
    const out = join(dir, `dump${name}`);
    await execa(archTools(arch).objcopy, ['--dump-section', `${name}=${out}`, uki, join(dir, 'dump-discard')]);
    return readFile(out);
  }

  async function stubSbat(arch: Architecture, stub: PeImage): Promise<Buffer | null> {
    return stub.sections.some((s) => s.name === '.sbat') ? dumpSection(arch, archTools(arch).stub, '.sbat') : null;
  }

  async function build(arch: Architecture, kernelPath: string, writer: UkiWriter, tag: string) {
    // An initrd size that is not a multiple of any alignment, and more than one copy chunk.
    const initrd = Buffer.alloc(2 * 1024 * 1024 + 5, tag);
    const initrdPath = join(dir, `initrd-${tag}`);
    await writeFile(initrdPath, initrd);
    // Same content for every writer, so that their layouts can be compared.
    const cmdline = `console=ttyS0 uod.arch=${arch} ünïcode`;
    const osRelease = `ID=uki-on-demand-test\nVERSION_ID="${arch}"\n`;
    const outPath = join(dir, `uki-${tag}.efi`);
    await assembleUki({ arch, kernelPath, initrdPath, cmdline, osRelease, outPath, workDir: dir, writer });
    const stub = await readPe(archTools(arch).stub);
    const kernel = await readPe(kernelPath);
    const sbat = mergeSbat(await stubSbat(arch, stub));
    const plan = planUkiSections(stub, {
      sbat: sbat.length,
      osrel: Buffer.byteLength(osRelease),
      cmdline: Buffer.byteLength(cmdline),
      initrd: initrd.length,
      linux: kernel.layout.fileSize,
      linuxSizeOfImage: kernel.sizeOfImage,
    });
    return { outPath, stub, kernel, plan, initrd, cmdline, osRelease, sbat };
  }

  async function expectUki(arch: Architecture, kernelPath: string, writer: UkiWriter, dumpContents = true) {
    const tag = `${arch}-${writer}-${kernelPath.includes('vmlinuz') ? 'kernel' : 'standin'}`;
    const { outPath, stub, kernel, plan, initrd, cmdline, osRelease, sbat } = await build(arch, kernelPath, writer, tag);

    // Our reader: the stub's sections where they were (its .sbat renamed), then exactly the planned ones.
    const uki = await readPe(outPath);
    expect(uki.arch).toBe(arch);
    expect(uki.sections.slice(0, stub.sections.length).map((s) => [s.name, s.virtualAddress, s.virtualSize])).toEqual(
      stub.sections.map((s) => [s.name === '.sbat' ? STUB_SBAT_RENAMED : s.name, s.virtualAddress, s.virtualSize]),
    );
    // shim refuses an image with two .sbat sections.
    expect(uki.sections.filter((s) => s.name === '.sbat')).toHaveLength(1);
    const added = uki.sections.slice(stub.sections.length);
    expect(added.map((s) => ({ name: s.name, vma: s.virtualAddress, virtualSize: s.virtualSize }))).toEqual(
      plan.map((s) => ({ name: s.name, vma: s.vma, virtualSize: s.virtualSize })),
    );
    const linux = plan.at(-1)!;
    expect(added.at(-1)!.virtualSize).toBe(kernel.sizeOfImage);
    expect(uki.sizeOfImage).toBe(Math.ceil((linux.vma + linux.virtualSize) / stub.sectionAlignment) * stub.sectionAlignment);
    for (const s of added) {
      expect(s.rawPointer % uki.fileAlignment).toBe(0);
      expect(s.rawPointer + s.rawSize).toBeLessThanOrEqual((await stat(outPath)).size);
    }

    // binutils' view: same VMAs, read-only data, .linux as code, same SizeOfImage.
    const { stdout: headers } = await execa(OBJDUMP[arch], ['-h', outPath]);
    for (const s of plan) {
      const vma = (uki.layout.imageBase + s.vma).toString(16).padStart(16, '0');
      const kind = s.name === '.linux' ? 'CODE' : 'DATA';
      expect(headers).toMatch(new RegExp(`\\${s.name}\\s+[0-9a-f]+\\s+${vma}\\s+[\\s\\S]*?READONLY, ${kind}`));
    }
    const { stdout: privateHeaders } = await execa(OBJDUMP[arch], ['-p', outPath]);
    expect(privateHeaders).toMatch(new RegExp(`SizeOfImage\\s+0*${uki.sizeOfImage.toString(16)}\\b`));

    // The merged .sbat: the stub's entries, then this project's line, as binutils reads it.
    // (Debian's arm64 stub has none: the UKI's starts with the format line.)
    const stubLines = ((await stubSbat(arch, stub))?.toString() ?? 'sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n').replace(/\0+$/, '');
    const ukiSbat = (await dumpSection(arch, outPath, '.sbat')).toString();
    expect(ukiSbat).toBe(sbat.toString());
    expect(ukiSbat).toBe(`${stubLines.trimEnd()}\n${SBAT_LINE}\n`);
    expect(ukiSbat.split('\n').filter((l) => l.startsWith('sbat,'))).toHaveLength(1);
    if (!dumpContents) return uki;
    // The section contents, as an independent tool extracts them.
    expect((await dumpSection(arch, outPath, '.osrel')).toString()).toBe(osRelease);
    expect((await dumpSection(arch, outPath, '.cmdline')).toString()).toBe(cmdline);
    expect((await dumpSection(arch, outPath, '.initrd')).equals(initrd)).toBe(true);
    const kernelBytes = await readFile(kernelPath);
    const dumpedLinux = await dumpSection(arch, outPath, '.linux');
    // binutils dumps min(VirtualSize, raw size): the file padded with zeros, or cut at SizeOfImage.
    const shared = Math.min(kernelBytes.length, dumpedLinux.length);
    expect(shared).toBe(Math.min(kernelBytes.length, kernel.sizeOfImage));
    expect(dumpedLinux.subarray(0, shared).equals(kernelBytes.subarray(0, shared))).toBe(true);
    expect(dumpedLinux.subarray(shared).every((b) => b === 0)).toBe(true);
    return uki;
  }

  for (const arch of ['amd64', 'arm64'] as const) {
    it(`writes a ${arch} UKI whose sections sit at the planned addresses (direct writer)`, async () => {
      await expectUki(arch, STAND_IN_KERNEL[arch], 'direct');
    });

    it(`gives the same layout through objcopy for ${arch}`, async () => {
      const direct = await expectUki(arch, STAND_IN_KERNEL[arch], 'direct');
      const viaObjcopy = await expectUki(arch, STAND_IN_KERNEL[arch], 'objcopy');
      const layout = (pe: PeImage) => pe.sections.map((s) => [s.name, s.virtualAddress, s.virtualSize]);
      expect(layout(viaObjcopy)).toEqual(layout(direct));
      expect(viaObjcopy.sizeOfImage).toBe(direct.sizeOfImage);
    });

    it(`wraps the real ${arch} kernel`, async () => {
      // Contents are checked with the stand-in kernels; dumping 30 MB through binutils is slow.
      await expectUki(arch, realKernel(arch), 'direct', false);
    });
  }

  it('needs exactly one initramfs source', async () => {
    const base = { arch: 'amd64' as const, kernelPath: STAND_IN_KERNEL.amd64, cmdline: '', osRelease: '', outPath: join(dir, 'y.efi'), workDir: dir };
    await expect(assembleUki(base)).rejects.toThrow(/exactly one of initrdPath and initrd/);
    await expect(assembleUki({ ...base, initrdPath: 'a', initrd: { basePath: 'b', overlay: null } })).rejects.toThrow(/exactly one/);
  });

  it('refuses a kernel of the other architecture', async () => {
    const initrdPath = join(dir, 'tiny-initrd');
    await writeFile(initrdPath, 'x');
    await expect(
      assembleUki({ arch: 'amd64', kernelPath: STAND_IN_KERNEL.arm64, initrdPath, cmdline: '', osRelease: '', outPath: join(dir, 'x.efi'), workDir: dir }),
    ).rejects.toThrow(/is for arm64, not amd64/);
  });

  it('uses the direct writer when none is chosen', async () => {
    expect(DEFAULT_UKI_WRITER).toBe('direct');
    const initrdPath = join(dir, 'default-initrd');
    await writeFile(initrdPath, 'initrd');
    const common = { arch: 'amd64' as const, kernelPath: STAND_IN_KERNEL.amd64, initrdPath, cmdline: 'x', osRelease: 'ID=x\n', workDir: dir };
    await assembleUki({ ...common, outPath: join(dir, 'default.efi') });
    await assembleUki({ ...common, outPath: join(dir, 'objcopy.efi'), writer: 'objcopy' });
    await assembleUki({ ...common, outPath: join(dir, 'direct.efi'), writer: 'direct' });
    const defaultBytes = await readFile(join(dir, 'default.efi'));
    expect(defaultBytes.equals(await readFile(join(dir, 'direct.efi')))).toBe(true);
    expect(defaultBytes.equals(await readFile(join(dir, 'objcopy.efi')))).toBe(false);
  });

  it('direct writer: refuses a stub without room for five more section headers, naming it', async () => {
    const stubPath = join(dir, 'cramped.stub');
    const bytes = await readFile(archTools('amd64').stub);
    const stub = await readPe(archTools('amd64').stub);
    // SizeOfHeaders (optional header offset 60) cut to the end of the section table: no room at all.
    bytes.writeUInt32LE(stub.layout.sectionTableOffset + stub.sections.length * 40, stub.layout.optionalHeaderOffset + 60);
    await writeFile(stubPath, bytes);
    const initrdPath = join(dir, 'cramped-initrd');
    await writeFile(initrdPath, 'x');
    const outPath = join(dir, 'cramped.efi');
    await expect(
      assembleUki({ arch: 'amd64', kernelPath: STAND_IN_KERNEL.amd64, initrdPath, cmdline: 'x', osRelease: 'ID=x\n', outPath, workDir: dir, stubPath, writer: 'direct' }),
    ).rejects.toThrow(`systemd-stub ${stubPath} has no room in its headers for 5 more sections (the objcopy writer has no such limit)`);
    expect(existsSync(outPath)).toBe(false);
  });

  it('stops when cancelled and leaves no output behind', async () => {
    const initrdPath = join(dir, 'cancel-initrd');
    await writeFile(initrdPath, randomBytes(1024));
    const outPath = join(dir, 'cancelled.efi');
    const controller = new AbortController();
    controller.abort(new Error('cancelled by test'));
    for (const writer of UKI_WRITERS) {
      await expect(
        assembleUki({ arch: 'amd64', kernelPath: STAND_IN_KERNEL.amd64, initrdPath, cmdline: 'x', osRelease: 'ID=x\n', outPath, workDir: dir, signal: controller.signal, writer }),
      ).rejects.toThrow('cancelled by test');
      expect(existsSync(outPath)).toBe(false);
    }
  });
});
