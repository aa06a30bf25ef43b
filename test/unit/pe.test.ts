import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPe } from '../../src/image/pe.js';
import { archTools, type Arch } from '../../src/image/tools.js';

const OBJDUMP: Record<Arch, string> = { amd64: 'x86_64-linux-gnu-objdump', arm64: 'aarch64-linux-gnu-objdump' };
const MACHINE: Record<Arch, number> = { amd64: 0x8664, arm64: 0xaa64 };
const kernelPath = (arch: Arch) => new URL(`../../base-artifacts/out/vmlinuz-${arch}`, import.meta.url).pathname;

/** Header facts as binutils sees them: `objdump -p` fields and `objdump -h` sections. */
async function objdump(arch: Arch, path: string) {
  const { stdout: p } = await execa(OBJDUMP[arch], ['-p', path]);
  const field = (name: string) => {
    const m = new RegExp(`^${name}\\s+([0-9a-fA-F]+)`, 'm').exec(p);
    if (!m) throw new Error(`objdump -p printed no ${name}`);
    return parseInt(m[1]!, 16);
  };
  const { stdout: h } = await execa(OBJDUMP[arch], ['-h', path]);
  const sections = [...h.matchAll(/^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+2\*\*\d+\s*\n\s+(.*)$/gm)].map((m) => ({
    name: m[1]!,
    vma: parseInt(m[3]!, 16),
    fileOffset: parseInt(m[4]!, 16),
    flags: m[5]!,
  }));
  return {
    imageBase: field('ImageBase'),
    sectionAlignment: field('SectionAlignment'),
    fileAlignment: field('FileAlignment'),
    sizeOfImage: field('SizeOfImage'),
    sections,
  };
}

async function expectSameAsObjdump(arch: Arch, path: string) {
  const pe = await readPe(path);
  const bin = await objdump(arch, path);
  expect(pe.arch).toBe(arch);
  expect(pe.machine).toBe(MACHINE[arch]);
  expect(pe.sectionAlignment).toBe(bin.sectionAlignment);
  expect(pe.fileAlignment).toBe(bin.fileAlignment);
  expect(pe.sizeOfImage).toBe(bin.sizeOfImage);
  expect(pe.layout.imageBase).toBe(bin.imageBase);
  expect(pe.sections.map((s) => [s.name, pe.layout.imageBase + s.virtualAddress, s.rawPointer])).toEqual(
    bin.sections.map((s) => [s.name, s.vma, s.fileOffset]),
  );
  return pe;
}

describe('readPe', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pe-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const arch of ['amd64', 'arm64'] as const) {
    it(`reads the ${arch} systemd-stub as binutils does`, async () => {
      const pe = await expectSameAsObjdump(arch, archTools(arch).stub);
      expect(pe.sections.map((s) => s.name)).toContain('.text');
    });

    it.skipIf(!existsSync(kernelPath(arch)))(`reads the ${arch} kernel's EFI header as binutils does`, async () => {
      const pe = await expectSameAsObjdump(arch, kernelPath(arch));
      expect(pe.sizeOfImage).toBeGreaterThan(1024 * 1024);
    });
  }

  it('tells one architecture from the other', async () => {
    expect((await readPe(archTools('amd64').stub)).arch).toBe('amd64');
    expect((await readPe(archTools('arm64').stub)).arch).toBe('arm64');
  });

  it('reads only the headers, however large the file', async () => {
    const big = join(dir, 'sparse.efi');
    await copyFile(archTools('amd64').stub, big);
    await truncate(big, 8 * 1024 ** 3); // sparse: costs no disk, but far larger than any Buffer
    const pe = await readPe(big);
    expect(pe.arch).toBe('amd64');
    expect(pe.layout.fileSize).toBe(8 * 1024 ** 3);
  });

  it('rejects files that are not PE images with a clear message', async () => {
    const stub = await readFile(archTools('amd64').stub);
    const cases: Record<string, Buffer> = {
      empty: Buffer.alloc(0),
      text: Buffer.from('#!/bin/sh\necho this is not an EFI program\n'.repeat(10)),
      'mz-without-pe': Buffer.concat([Buffer.from('MZ'), Buffer.alloc(200)]),
      truncated: stub.subarray(0, 200),
      gzip: Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, ...Buffer.alloc(100)]),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const path = join(dir, name);
      await writeFile(path, bytes);
      await expect(readPe(path), name).rejects.toThrow(/is not a PE\/EFI image/);
    }
    await expect(readPe(join(dir, 'does-not-exist'))).rejects.toThrow(/ENOENT/);
  });
});
