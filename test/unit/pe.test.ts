import { copyFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendSections,
  clearChecksum,
  editPeHeaders,
  parsePe,
  readPe,
  resizeSection,
  SCN_CNT_CODE,
  SCN_CNT_INITIALIZED_DATA,
  SCN_MEM_EXECUTE,
  SCN_MEM_READ,
  setTimeDateStamp,
} from '../../src/image/pe.js';
import { archTools } from '../../src/image/tools.js';
import type { Architecture } from '../../src/image/architecture.js';

const OBJDUMP: Record<Architecture, string> = { amd64: 'x86_64-linux-gnu-objdump', arm64: 'aarch64-linux-gnu-objdump' };
const MACHINE: Record<Architecture, number> = { amd64: 0x8664, arm64: 0xaa64 };
const kernelPath = (arch: Architecture) => new URL(`../../base-artifacts/out/vmlinuz-${arch}`, import.meta.url).pathname;

/** Header facts as binutils sees them: `objdump -p` fields and `objdump -h` sections. */
async function objdump(arch: Architecture, path: string) {
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

async function expectSameAsObjdump(arch: Architecture, path: string) {
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

    it(`reads the ${arch} kernel's EFI header as binutils does`, async () => {
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

describe('PE header edits', () => {
  // The amd64 systemd-stub: PE32+, SectionAlignment 0x200, SizeOfImage 0x19300, SizeOfCode 0xc000,
  // SizeOfInitializedData 0x5000, 8 sections, unsigned. Each test checks the stub still is that.
  const STUB = archTools('amd64').stub;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pe-edit-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function privateHeaders(path: string) {
    const { stdout } = await execa(OBJDUMP.amd64, ['-p', path]);
    const field = (name: string) => parseInt(new RegExp(`^${name}\\s+([0-9a-fA-F]+)`, 'm').exec(stdout)![1]!, 16);
    const security = /^Entry 4 ([0-9a-f]+) ([0-9a-f]+) Security Directory$/m.exec(stdout)!;
    return {
      sizeOfImage: field('SizeOfImage'),
      sizeOfCode: field('SizeOfCode'),
      sizeOfInitializedData: field('SizeOfInitializedData'),
      checkSum: field('CheckSum'),
      security: [parseInt(security[1]!, 16), parseInt(security[2]!, 16)],
    };
  }

  it('appendSections adds headers as binutils reads them, grows the sizes that cover them and drops the signature', async () => {
    const head = await readFile(STUB);
    const stub = parsePe(head, head.length);
    expect([stub.sizeOfImage, stub.layout.sizeOfCode, stub.layout.sizeOfInitializedData, stub.sections.length]).toEqual([0x19300, 0xc000, 0x5000, 8]);
    // Pretend the stub is signed: Security Directory (data directory 4; they start at 112 in PE32+).
    const security = stub.layout.optionalHeaderOffset + 112 + 4 * 8;
    head.writeUInt32LE(0x14600, security);
    head.writeUInt32LE(0x20, security + 4);
    const signed = parsePe(head, head.length);
    expect(signed.layout.certificateTable).toEqual({ offset: 0x14600, size: 0x20 });

    appendSections(head, signed, [
      { name: '.code1', virtualAddress: 0x19400, virtualSize: 0x1234, rawPointer: 0x14600, rawSize: 0x200, characteristics: SCN_CNT_CODE | SCN_MEM_EXECUTE | SCN_MEM_READ },
      { name: '.data1', virtualAddress: 0x1a800, virtualSize: 0x10, rawPointer: 0x14800, rawSize: 0x400, characteristics: SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ },
    ]);
    const path = join(dir, 'appended.efi');
    await writeFile(path, Buffer.concat([head, Buffer.alloc(0x14c00 - head.length)]));

    expect(await privateHeaders(path)).toEqual({
      sizeOfImage: 0x1aa00,
      sizeOfCode: 0xc200,
      sizeOfInitializedData: 0x5400,
      checkSum: 0,
      security: [0, 0],
    });
    const { stdout } = await execa(OBJDUMP.amd64, ['-h', path]);
    // objdump's Size is the smaller of VirtualSize and SizeOfRawData.
    expect(stdout).toMatch(/ 8 \.code1\s+00000200\s+0000000000019400\s+0000000000019400\s+00014600\s+2\*\*\d+\s+CONTENTS, ALLOC, LOAD, READONLY, CODE$/m);
    expect(stdout).toMatch(/ 9 \.data1\s+00000010\s+000000000001a800\s+000000000001a800\s+00014800\s+2\*\*\d+\s+CONTENTS, ALLOC, LOAD, READONLY, DATA$/m);
    const appended = await readPe(path);
    expect(appended.sections.slice(0, 8)).toEqual(stub.sections);
    expect(appended.sections.slice(8).map((s) => [s.name, s.virtualSize, s.rawSize])).toEqual([['.code1', 0x1234, 0x200], ['.data1', 0x10, 0x400]]);
  });

  it('refuses to append more section headers than the header area holds', async () => {
    const head = await readFile(STUB);
    const stub = parsePe(head, head.length);
    // SizeOfHeaders 0x400 less the section table's start leaves room for this many 40-byte headers.
    const room = Math.floor((0x400 - stub.layout.sectionTableOffset) / 40) - stub.sections.length;
    const section = { name: '.x', virtualAddress: 0x20000, virtualSize: 1, rawPointer: 0, rawSize: 0, characteristics: SCN_MEM_READ };
    expect(() => appendSections(Buffer.from(head), stub, Array(room + 1).fill(section))).toThrow(`no room in the PE headers for ${room + 1} more sections`);
    expect(() => appendSections(Buffer.from(head), stub, Array(room).fill(section))).not.toThrow();
  });

  it('editPeHeaders changes a section\'s VirtualSize, SizeOfImage, the time stamp and the checksum in place, nothing else', async () => {
    const path = join(dir, 'edited.efi');
    await copyFile(STUB, path);
    const before = await readFile(path);
    const stub = await readPe(path);
    expect(stub.sections[7]).toMatchObject({ name: '.sdmagic', virtualAddress: 0x19100, virtualSize: 0x34 });

    await editPeHeaders(path, (head, pe) => {
      resizeSection(head, pe, 7, 0x1000);
      setTimeDateStamp(head, pe, 0x11223344);
      clearChecksum(head, pe);
    });

    const after = await readFile(path);
    const edited = await readPe(path);
    expect(edited.sections[7]!.virtualSize).toBe(0x1000);
    expect(edited.sections.slice(0, 7)).toEqual(stub.sections.slice(0, 7));
    expect(edited.layout.timeDateStamp).toBe(0x11223344);
    expect((await privateHeaders(path)).sizeOfImage).toBe(0x1a200);
    expect((await privateHeaders(path)).checkSum).toBe(0);
    // Only the four fields' bytes differ: time stamp, SizeOfImage, CheckSum and .sdmagic's VirtualSize.
    const fields = [stub.layout.peOffset + 8, stub.layout.optionalHeaderOffset + 56, stub.layout.optionalHeaderOffset + 64, stub.layout.sectionTableOffset + 7 * 40 + 8];
    const changed = [...after.keys()].filter((i) => after[i] !== before[i]);
    expect(after.length).toBe(before.length);
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.filter((i) => !fields.some((f) => i >= f && i < f + 4))).toEqual([]);
  });
});
