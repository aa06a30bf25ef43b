// Assembles a Unified Kernel Image: systemd-stub plus .sbat, .osrel, .cmdline, .initrd and .linux sections,
// laid out here from the stub's own headers and written by one of two writers (UKI_WRITERS).
import { chmod, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestFile } from './file-digest.js';
import { segmentLength, writeFileFromSegments, type Segment, type WrittenFile } from './segments.js';
import { initramfsSegments } from './initramfs.js';
import { mergeSbat, STUB_SBAT_RENAMED } from './sbat.js';
import { digestSegments, STUB_MEASURED_SECTIONS, type MeasuredSection } from './pcr11.js';
import {
  alignUp,
  appendSections,
  clearChecksum,
  editPeHeaders,
  hasHeaderRoom,
  readPe,
  renameSection,
  resizeSection,
  SCN_CNT_CODE,
  SCN_CNT_INITIALIZED_DATA,
  SCN_MEM_EXECUTE,
  SCN_MEM_READ,
  setTimeDateStamp,
  type PeImage,
  type PeSection,
} from './pe.js';
import type { Architecture } from './architecture.js';
import { archTools, runTool } from './tools.js';

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
  sbat: number;
  osrel: number;
  cmdline: number;
  initrd: number;
  linux: number;
  linuxSizeOfImage: number;
}

const DATA_FLAGS = SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ;
// The kernel's EFI stub runs from inside this section, and may decompress in place.
const CODE_FLAGS = SCN_CNT_CODE | SCN_MEM_EXECUTE | SCN_MEM_READ;

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
    ['.sbat', inputs.sbat, inputs.sbat],
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
  arch: Architecture;
  kernelPath: string;
  /** The initramfs as one file... */
  initrdPath?: string;
  /** ...or as base ‖ padding ‖ overlay: streamed into the UKI by the direct writer, written to one file in `workDir` for objcopy. */
  initrd?: { basePath: string; overlay: Buffer | null };
  cmdline: string;
  osRelease: string;
  outPath: string;
  workDir: string;
  signal?: AbortSignal;
  /** Also return the SHA-256 of the UKI: hashed while writing by the direct writer, read back after objcopy. */
  digest?: boolean;
  /** DEFAULT_UKI_WRITER when not given. */
  writer?: UkiWriter;
  /** Another systemd-stub than the packaged one (tests, custom builds). */
  stubPath?: string;
  /** Also return the digests of the sections systemd-stub measures into PCR 11 (see pcr11.ts). */
  measure?: boolean;
}

export interface WrittenUki extends WrittenFile {
  measuredSections?: MeasuredSection[];
}

/**
 * How the UKI is written. 'objcopy': binutils adds the sections, then the headers are patched (see
 * patchObjcopyHeaders). 'direct': the section headers go into the stub's spare header space and the
 * data is streamed after the stub in one pass, without an initramfs file of its own; it needs a stub
 * with that header room (Debian's have it) and fails, naming the stub, otherwise.
 */
export const UKI_WRITERS = ['objcopy', 'direct'] as const;
export type UkiWriter = (typeof UKI_WRITERS)[number];
// direct: one pass, several times faster, booted end to end on both architectures like objcopy's.
export const DEFAULT_UKI_WRITER: UkiWriter = 'direct';

export async function assembleUki(opts: AssembleUkiOptions): Promise<WrittenUki> {
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
  const sbat = mergeSbat(await readSection(stubPath, stub, '.sbat'));
  const osrel = Buffer.from(opts.osRelease, 'utf8');
  const cmdline = Buffer.from(opts.cmdline, 'utf8');
  const plan = planUkiSections(stub, {
    sbat: sbat.length,
    osrel: osrel.length,
    cmdline: cmdline.length,
    initrd: initrd.reduce((sum, s) => sum + segmentLength(s), 0),
    linux: kernel.layout.fileSize,
    linuxSizeOfImage: kernel.sizeOfImage,
  });

  const data: SectionData = { sbat, osrel, cmdline, initrd, kernel: { file: opts.kernelPath, size: kernel.layout.fileSize } };
  try {
    const [written, measuredSections] = await Promise.all([
      writeUki(opts, stubPath, stub, plan, data),
      opts.measure ? measureSections(plan, data) : undefined,
    ]);
    return measuredSections ? { ...written, measuredSections } : written;
  } catch (err) {
    await rm(opts.outPath, { force: true });
    throw err;
  }
}

async function writeUki(opts: AssembleUkiOptions, stubPath: string, stub: PeImage, plan: UkiSectionPlan[], data: SectionData): Promise<WrittenFile> {
  if ((opts.writer ?? DEFAULT_UKI_WRITER) === 'direct') {
    const segments = await directUkiSegments(stubPath, stub, plan, data);
    return writeFileFromSegments(opts.outPath, segments, { signal: opts.signal, digest: opts.digest });
  }
  await writeUkiObjcopy({ arch: opts.arch, stubPath, stub, plan, data, outPath: opts.outPath, workDir: opts.workDir, signal: opts.signal });
  return opts.digest ? digestFile(opts.outPath) : { bytes: (await stat(opts.outPath)).size };
}

/** Each measured section as the firmware loads it: its data, cut or zero-padded to its VirtualSize. */
async function measureSections(plan: UkiSectionPlan[], data: SectionData): Promise<MeasuredSection[]> {
  const measured: MeasuredSection[] = [];
  for (const section of plan) {
    if (!(STUB_MEASURED_SECTIONS as readonly string[]).includes(section.name)) continue;
    measured.push({ name: section.name, sha256: await digestSegments(sectionSegments(section.name, data), section.virtualSize) });
  }
  return measured;
}

interface SectionData {
  sbat: Buffer;
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
    case '.sbat':
      return [{ bytes: data.sbat }];
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
    throw new Error(`systemd-stub ${stubPath} has no room in its headers for ${plan.length} more sections (the objcopy writer has no such limit)`);
  }
  const { layout } = stub;
  const fileAlignment = stub.fileAlignment > 0 ? stub.fileAlignment : 0x200;
  const stubBytes = await readFile(stubPath);
  if (stubBytes.length !== layout.fileSize) throw new Error(`${stubPath} changed while being read`);

  const segments: Segment[] = [{ bytes: stubBytes }];
  let rawPointer = alignUp(layout.fileSize, fileAlignment);
  segments.push({ zeros: rawPointer - layout.fileSize });
  const added: PeSection[] = plan.map((section) => {
    const rawSize = alignUp(section.size, fileAlignment);
    const pieces = sectionSegments(section.name, data);
    const length = pieces.reduce((sum, p) => sum + segmentLength(p), 0);
    if (length !== section.size) throw new Error(`${section.name} holds ${length} bytes, planned ${section.size}`);
    segments.push(...pieces, { zeros: rawSize - section.size });
    const header = {
      name: section.name,
      virtualAddress: section.vma,
      virtualSize: section.virtualSize,
      rawSize,
      rawPointer: section.size > 0 ? rawPointer : 0,
      characteristics: sectionFlags(section.name),
    };
    rawPointer += rawSize;
    return header;
  });
  renameStubSbat(stubBytes, stub);
  appendSections(stubBytes, stub, added);
  return segments;
}

async function writeUkiObjcopy(args: {
  arch: Architecture;
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
    const sbatPath = join(dir, 'uki-sbat');
    await writeFile(sbatPath, args.data.sbat);
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
      await writeFileFromSegments(initrdPath, args.data.initrd, { signal: args.signal });
    }
    const files: Record<string, string> = {
      '.sbat': sbatPath,
      '.osrel': osrelPath,
      '.cmdline': cmdlinePath,
      '.initrd': initrdPath,
      '.linux': args.data.kernel.file,
    };
    const objcopyArgs: string[] = [];
    for (const s of args.plan) {
      const flags = s.name === '.linux' ? 'code,readonly' : 'data,readonly';
      // objcopy's options name sections: the new .sbat goes in under another name until the stub's is renamed.
      const name = s.name === '.sbat' ? OBJCOPY_NEW_SBAT : s.name;
      objcopyArgs.push(
        '--add-section', `${name}=${files[s.name]}`,
        '--change-section-vma', `${name}=0x${(args.stub.layout.imageBase + s.vma).toString(16)}`,
        '--set-section-flags', `${name}=${flags}`,
      );
    }
    objcopyArgs.push(args.stubPath, args.outPath);
    await runTool(archTools(args.arch).objcopy, objcopyArgs, { signal: args.signal });
    await patchObjcopyHeaders(args.outPath, args.stub, args.plan);
    // objcopy marks its output executable; the ISO's Rock Ridge entry records the mode, so keep both writers' alike.
    await chmod(args.outPath, 0o644);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const OBJCOPY_NEW_SBAT = '.sbatnew';

/** The section's bytes as loaded (VirtualSize of them, within its data), or null when the PE has no such section. */
async function readSection(path: string, pe: PeImage, name: string): Promise<Buffer | null> {
  const section = pe.sections.find((s) => s.name === name);
  if (section === undefined) return null;
  const length = Math.min(section.virtualSize || section.rawSize, section.rawSize);
  const bytes = Buffer.alloc(length);
  const file = await open(path, 'r');
  try {
    const { bytesRead } = await file.read(bytes, 0, length, section.rawPointer);
    if (bytesRead !== length) throw new Error(`${path}: section ${name} runs past the end of the file`);
  } finally {
    await file.close();
  }
  return bytes;
}

/** The stub's .sbat keeps its data under another name; the UKI's merged .sbat is the only one. */
function renameStubSbat(head: Buffer, stub: PeImage): void {
  const index = stub.sections.findIndex((s) => s.name === '.sbat');
  if (index >= 0) renameSection(head, stub, index, STUB_SBAT_RENAMED);
}

/**
 * What objcopy gets wrong or leaves unreproducible, patched in the headers in place:
 * - it sets a section's virtual size to its data size; .linux must claim the kernel's SizeOfImage;
 * - it cannot add a section named like one it has: the merged .sbat goes in as OBJCOPY_NEW_SBAT and
 *   takes the name once the stub's .sbat is renamed;
 * - it stamps the current time into the COFF header and computes a checksum over it (binutils 2.40
 *   ignores SOURCE_DATE_EPOCH). The stub's own timestamp and a zero checksum go back, as the direct
 *   writer leaves them, so that equal inputs give byte-identical UKIs.
 */
async function patchObjcopyHeaders(ukiPath: string, stub: PeImage, plan: UkiSectionPlan[]): Promise<void> {
  const linux = plan.find((s) => s.name === '.linux');
  await editPeHeaders(ukiPath, (head, uki) => {
    if (linux !== undefined) {
      const index = uki.sections.findIndex((s) => s.name === '.linux');
      if (uki.sections[index]?.virtualAddress !== linux.vma) {
        throw new Error(`objcopy did not place .linux at 0x${linux.vma.toString(16)}`);
      }
      resizeSection(head, uki, index, linux.virtualSize);
    }
    renameStubSbat(head, uki);
    const added = uki.sections.findIndex((s) => s.name === OBJCOPY_NEW_SBAT);
    if (added < 0) throw new Error(`objcopy did not add ${OBJCOPY_NEW_SBAT}`);
    renameSection(head, uki, added, '.sbat');
    setTimeDateStamp(head, uki, stub.layout.timeDateStamp);
    clearChecksum(head, uki);
  });
}
