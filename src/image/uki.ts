// Assembles a Unified Kernel Image: systemd-stub plus .osrel, .cmdline, .initrd and .linux sections.
// The section layout is computed here from the stub's own headers; the file is written directly
// (new section headers in the stub's spare header space, data appended), which costs one copy of
// the inputs. objcopy is the fallback for a stub whose headers have no room left.
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeAllAt } from '../storage/write-all.js';
import { digestFile } from './file-digest.js';
import { segmentLength, writeSegments, type Segment } from './segments.js';
import { initramfsSegments } from './initramfs.js';
import {
  OPT,
  readPe,
  SCN_CNT_CODE,
  SCN_CNT_INITIALIZED_DATA,
  SCN_MEM_EXECUTE,
  SCN_MEM_READ,
  type PeImage,
} from './pe.js';
import { archTools, objcopyAvailable, runTool, type Arch } from './tools.js';

export interface UkiSectionPlan {
  name: string;
  /** Relative virtual address (objcopy's VMA is this plus the stub's ImageBase). */
  vma: number;
  /** Bytes of data in the file. */
  size: number;
  /** Bytes the section occupies once loaded (the kernel's SizeOfImage for .linux). */
  virtualSize: number;
}

export interface UkiInputs {
  osrel: number;
  cmdline: number;
  initrd: number;
  linux: number;
  linuxSizeOfImage: number;
}

const SECTION_HEADER_SIZE = 40;
const DATA_FLAGS = SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ;
// The kernel's EFI stub runs from inside this section, and may decompress in place.
const CODE_FLAGS = SCN_CNT_CODE | SCN_MEM_EXECUTE | SCN_MEM_READ;

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/**
 * Where the four UKI sections go: after everything the stub maps (its last section and its
 * SizeOfImage), each one after the previous, all on SectionAlignment. `.linux` comes last
 * and claims the kernel's SizeOfImage, because the kernel may use that much room in place.
 */
export function planUkiSections(stub: PeImage, inputs: UkiInputs): UkiSectionPlan[] {
  const alignment = stub.sectionAlignment;
  if (!Number.isInteger(alignment) || alignment <= 0) {
    throw new Error(`stub has an invalid SectionAlignment (${alignment})`);
  }
  // A loader maps VirtualSize bytes of a section, or SizeOfRawData when VirtualSize is 0.
  const stubEnd = stub.sections.reduce(
    (end, s) => Math.max(end, s.virtualAddress + (s.virtualSize || s.rawSize)),
    stub.sizeOfImage,
  );
  const wanted: Array<[string, number, number]> = [
    ['.osrel', inputs.osrel, inputs.osrel],
    ['.cmdline', inputs.cmdline, inputs.cmdline],
    ['.initrd', inputs.initrd, inputs.initrd],
    ['.linux', inputs.linux, Math.max(inputs.linuxSizeOfImage, 1)],
  ];
  const plan: UkiSectionPlan[] = [];
  let next = alignUp(stubEnd, alignment);
  for (const [name, size, virtualSize] of wanted) {
    if (!Number.isInteger(size) || size < 0) throw new Error(`invalid size ${size} for ${name}`);
    plan.push({ name, vma: next, size, virtualSize });
    // An empty section still gets its own address so that no two sections start at the same place.
    next = alignUp(next + Math.max(virtualSize, 1), alignment);
  }
  if (next > 0xffffffff) throw new Error('UKI image would exceed 4 GiB of address space');
  return plan;
}

export interface AssembleUkiOptions {
  arch: Arch;
  kernelPath: string;
  /** The initramfs as one file... */
  initrdPath?: string;
  /** ...or as base ‖ padding ‖ overlay, embedded without writing an initramfs file first. */
  initrd?: { basePath: string; overlay: Buffer | null };
  cmdline: string;
  osRelease: string;
  outPath: string;
  workDir: string;
  signal?: AbortSignal;
  /** Also return the SHA-256 of the UKI, computed while it is written. */
  digest?: boolean;
  /** Which writer to use; 'auto' is the direct one when the stub has header room, else objcopy. */
  method?: UkiWriter;
  /** Another systemd-stub than the packaged one (tests, custom builds). */
  stubPath?: string;
}

/** 'objcopy' runs binutils; 'direct' writes the same PE layout in-process; 'auto' is direct when the stub has header room. */
export type UkiWriter = 'auto' | 'direct' | 'objcopy';

export interface WrittenFile {
  bytes: number;
  sha256?: string;
}

/** True when the stub's header area can hold `extra` more section headers without moving data. */
export function hasHeaderRoom(stub: PeImage, extra: number): boolean {
  const firstData = stub.sections
    .filter((s) => s.rawSize > 0)
    .reduce((min, s) => Math.min(min, s.rawPointer), stub.layout.sizeOfHeaders);
  const tableEnd = stub.layout.sectionTableOffset + (stub.sections.length + extra) * SECTION_HEADER_SIZE;
  return tableEnd <= Math.min(firstData, stub.layout.sizeOfHeaders);
}

export async function assembleUki(opts: AssembleUkiOptions): Promise<WrittenFile> {
  opts.signal?.throwIfAborted();
  if ((opts.initrdPath === undefined) === (opts.initrd === undefined)) {
    throw new Error('assembleUki needs exactly one of initrdPath and initrd');
  }
  const stubPath = opts.stubPath ?? archTools(opts.arch).stub;
  const [stub, kernel] = await Promise.all([readPe(stubPath), readPe(opts.kernelPath)]);
  if (stub.arch !== opts.arch) {
    throw new Error(`systemd-stub ${stubPath} is for ${stub.arch ?? 'an unknown architecture'}, not ${opts.arch}`);
  }
  if (kernel.arch !== opts.arch) {
    throw new Error(`kernel ${opts.kernelPath} is for ${kernel.arch ?? 'an unknown architecture'}, not ${opts.arch}`);
  }
  const initrd: Segment[] =
    opts.initrdPath !== undefined
      ? [{ file: opts.initrdPath, size: (await stat(opts.initrdPath)).size }]
      : await initramfsSegments(opts.initrd!.basePath, opts.initrd!.overlay);
  const osrel = Buffer.from(opts.osRelease, 'utf8');
  const cmdline = Buffer.from(opts.cmdline, 'utf8');
  const plan = planUkiSections(stub, {
    osrel: osrel.length,
    cmdline: cmdline.length,
    initrd: initrd.reduce((sum, s) => sum + segmentLength(s), 0),
    linux: kernel.layout.fileSize,
    linuxSizeOfImage: kernel.sizeOfImage,
  });

  const method = opts.method ?? 'auto';
  const direct = method === 'direct' || (method === 'auto' && hasHeaderRoom(stub, plan.length));
  if (!direct && method === 'auto' && !(await objcopyAvailable(opts.arch))) {
    throw new Error(`systemd-stub ${stubPath} has no header room for the UKI sections and ${archTools(opts.arch).objcopy} is not installed`);
  }
  const data: SectionData = { osrel, cmdline, initrd, kernel: { file: opts.kernelPath, size: kernel.layout.fileSize } };
  try {
    if (direct) {
      const segments = await directUkiSegments(stubPath, stub, plan, data);
      const hash = opts.digest ? createHash('sha256') : undefined;
      const out = await open(opts.outPath, 'w');
      let bytes: number;
      try {
        bytes = await writeSegments(out, 0, segments, { signal: opts.signal, hash });
      } finally {
        await out.close();
      }
      return { bytes, sha256: hash?.digest('hex') };
    }
    await writeUkiObjcopy({ arch: opts.arch, stubPath, stub, plan, data, outPath: opts.outPath, workDir: opts.workDir, signal: opts.signal });
    return opts.digest ? await digestFile(opts.outPath) : { bytes: (await stat(opts.outPath)).size };
  } catch (err) {
    await rm(opts.outPath, { force: true });
    throw err;
  }
}

interface SectionData {
  osrel: Buffer;
  cmdline: Buffer;
  initrd: Segment[];
  kernel: { file: string; size: number };
}

function sectionFlags(name: string): number {
  return name === '.linux' ? CODE_FLAGS : DATA_FLAGS;
}

function sectionSegments(name: string, data: SectionData): Segment[] {
  switch (name) {
    case '.osrel':
      return [{ bytes: data.osrel }];
    case '.cmdline':
      return [{ bytes: data.cmdline }];
    case '.initrd':
      return data.initrd;
    case '.linux':
      return [data.kernel];
    default:
      throw new Error(`no data for section ${name}`);
  }
}

/**
 * The UKI as a sequence of pieces: the stub with its headers extended by the new sections, then
 * each section's data at its file offset, zero-padded to FileAlignment.
 */
async function directUkiSegments(stubPath: string, stub: PeImage, plan: UkiSectionPlan[], data: SectionData): Promise<Segment[]> {
  if (!hasHeaderRoom(stub, plan.length)) {
    throw new Error(`systemd-stub ${stubPath} has no room in its headers for ${plan.length} more sections`);
  }
  const { layout } = stub;
  const fileAlignment = stub.fileAlignment > 0 ? stub.fileAlignment : 0x200;
  const stubBytes = await readWhole(stubPath, layout.fileSize);
  if (layout.certificateTable.size !== 0) {
    // A signature over the stub alone is void once sections are added: drop it rather than ship a broken one.
    const dirs = layout.optionalHeaderOffset + (layout.optionalMagic === 0x20b ? 112 : 96);
    stubBytes.writeUInt32LE(0, dirs + 4 * 8);
    stubBytes.writeUInt32LE(0, dirs + 4 * 8 + 4);
  }

  const segments: Segment[] = [{ bytes: stubBytes }];
  let rawPointer = alignUp(layout.fileSize, fileAlignment);
  segments.push({ zeros: rawPointer - layout.fileSize });
  const placed = plan.map((section) => {
    const rawSize = alignUp(section.size, fileAlignment);
    const at = { ...section, rawPointer: section.size > 0 ? rawPointer : 0, rawSize };
    const pieces = sectionSegments(section.name, data);
    const length = pieces.reduce((sum, p) => sum + segmentLength(p), 0);
    if (length !== section.size) throw new Error(`${section.name} holds ${length} bytes, planned ${section.size}`);
    segments.push(...pieces, { zeros: rawSize - section.size });
    rawPointer += rawSize;
    return at;
  });

  const coff = layout.peOffset + 4;
  stubBytes.writeUInt16LE(stub.sections.length + plan.length, coff + 2);
  const opt = layout.optionalHeaderOffset;
  const last = plan[plan.length - 1]!;
  stubBytes.writeUInt32LE(alignUp(last.vma + last.virtualSize, stub.sectionAlignment), opt + OPT.sizeOfImage);
  let code = layout.sizeOfCode;
  let initialized = layout.sizeOfInitializedData;
  for (const s of placed) {
    if (s.name === '.linux') code += s.rawSize;
    else initialized += s.rawSize;
  }
  stubBytes.writeUInt32LE(Math.min(code, 0xffffffff), opt + OPT.sizeOfCode);
  stubBytes.writeUInt32LE(Math.min(initialized, 0xffffffff), opt + OPT.sizeOfInitializedData);
  // The checksum is not checked by UEFI loaders and would cost a pass over every byte.
  stubBytes.writeUInt32LE(0, opt + OPT.checkSum);
  placed.forEach((s, i) => {
    const at = layout.sectionTableOffset + (stub.sections.length + i) * SECTION_HEADER_SIZE;
    stubBytes.fill(0, at, at + SECTION_HEADER_SIZE);
    stubBytes.write(s.name, at, 8, 'latin1');
    stubBytes.writeUInt32LE(s.virtualSize, at + 8);
    stubBytes.writeUInt32LE(s.vma, at + 12);
    stubBytes.writeUInt32LE(s.rawSize, at + 16);
    stubBytes.writeUInt32LE(s.rawPointer, at + 20);
    stubBytes.writeUInt32LE(sectionFlags(s.name), at + 36);
  });
  return segments;
}

async function readWhole(path: string, size: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(size);
    const { bytesRead } = await handle.read(buffer, 0, size, 0);
    if (bytesRead !== size) throw new Error(`short read of ${path}`);
    return buffer;
  } finally {
    await handle.close();
  }
}

async function writeUkiObjcopy(args: {
  arch: Arch;
  stubPath: string;
  stub: PeImage;
  plan: UkiSectionPlan[];
  data: SectionData;
  outPath: string;
  workDir: string;
  signal?: AbortSignal;
}): Promise<void> {
  // objcopy reads each section from a file; they live in a directory of their own, removed however this ends.
  const dir = await mkdtemp(join(args.workDir, 'objcopy-'));
  try {
    const osrelPath = join(dir, 'uki-osrel');
    const cmdlinePath = join(dir, 'uki-cmdline');
    await writeFile(osrelPath, args.data.osrel);
    await writeFile(cmdlinePath, args.data.cmdline);
    let initrdPath: string;
    const [first] = args.data.initrd;
    if (args.data.initrd.length === 1 && first !== undefined && 'file' in first) {
      initrdPath = first.file;
    } else {
      // objcopy needs the initramfs as one file.
      initrdPath = join(dir, 'uki-initrd');
      const out = await open(initrdPath, 'w');
      try {
        await writeSegments(out, 0, args.data.initrd, { signal: args.signal });
      } finally {
        await out.close();
      }
    }
    const files: Record<string, string> = {
      '.osrel': osrelPath,
      '.cmdline': cmdlinePath,
      '.initrd': initrdPath,
      '.linux': args.data.kernel.file,
    };
    const objcopyArgs: string[] = [];
    for (const s of args.plan) {
      const flags = s.name === '.linux' ? 'code,readonly' : 'data,readonly';
      objcopyArgs.push(
        '--add-section', `${s.name}=${files[s.name]}`,
        '--change-section-vma', `${s.name}=0x${(args.stub.layout.imageBase + s.vma).toString(16)}`,
        '--set-section-flags', `${s.name}=${flags}`,
      );
    }
    objcopyArgs.push(args.stubPath, args.outPath);
    await runTool(archTools(args.arch).objcopy, objcopyArgs, { signal: args.signal });
    await patchLinuxVirtualSize(args.outPath, args.plan);
    await patchReproducibleHeader(args.outPath, args.stubPath, args.stub);
    // objcopy marks its output executable; the ISO's Rock Ridge entry records the mode, so keep both writers' alike.
    await chmod(args.outPath, 0o644);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * objcopy stamps the current time into the COFF header and computes a checksum over it (binutils 2.40
 * ignores SOURCE_DATE_EPOCH). Put back the stub's own timestamp and a zero checksum, as the direct
 * writer does, so equal inputs give byte-identical UKIs.
 */
async function patchReproducibleHeader(ukiPath: string, stubPath: string, stub: PeImage): Promise<void> {
  // The COFF header (20 bytes) ends where the optional header starts; TimeDateStamp is its second field.
  const stamp = Buffer.alloc(4);
  const stubFile = await open(stubPath, 'r');
  try {
    await stubFile.read(stamp, 0, 4, stub.layout.optionalHeaderOffset - 16);
  } finally {
    await stubFile.close();
  }
  const uki = await readPe(ukiPath);
  const out = await open(ukiPath, 'r+');
  try {
    await writeAllAt(out, stamp, uki.layout.optionalHeaderOffset - 16);
    await writeAllAt(out, Buffer.alloc(4), uki.layout.optionalHeaderOffset + OPT.checkSum);
  } finally {
    await out.close();
  }
}

/**
 * objcopy sets a section's virtual size to its data size; the .linux section must claim the
 * kernel's SizeOfImage. Patch that header field and the image's SizeOfImage in place.
 */
async function patchLinuxVirtualSize(ukiPath: string, plan: UkiSectionPlan[]): Promise<void> {
  const linux = plan.find((s) => s.name === '.linux');
  if (linux === undefined) return;
  const uki = await readPe(ukiPath);
  const index = uki.sections.findIndex((s) => s.name === '.linux');
  const section = uki.sections[index];
  if (section === undefined || section.virtualAddress !== linux.vma) {
    throw new Error(`objcopy did not place .linux at 0x${linux.vma.toString(16)}`);
  }
  const out = await open(ukiPath, 'r+');
  try {
    const header = Buffer.alloc(4);
    header.writeUInt32LE(linux.virtualSize);
    await writeAllAt(out, header, uki.layout.sectionTableOffset + index * SECTION_HEADER_SIZE + 8);
    const end = uki.sections.reduce((max, s) => Math.max(max, s.virtualAddress + (s === section ? linux.virtualSize : s.virtualSize)), 0);
    header.writeUInt32LE(alignUp(end, uki.sectionAlignment));
    await writeAllAt(out, header, uki.layout.optionalHeaderOffset + OPT.sizeOfImage);
  } finally {
    await out.close();
  }
}
