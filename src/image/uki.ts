// Assembles a Unified Kernel Image: systemd-stub plus .osrel, .cmdline, .initrd and .linux sections.
// The section layout is computed here from the stub's own headers; the file is written directly
// (new section headers in the stub's spare header space, data appended), which costs one copy of
// the inputs. objcopy is the fallback for a stub whose headers have no room left.
import { open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { copyFileInto, throwIfAborted, writeAllAt } from './copy.js';
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
  const stubEnd = stub.sections.reduce(
    (end, s) => Math.max(end, s.virtualAddress + Math.max(s.virtualSize, s.virtualSize === 0 ? s.rawSize : 0)),
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
  initrdPath: string;
  cmdline: string;
  osRelease: string;
  outPath: string;
  workDir: string;
  signal?: AbortSignal;
  /** Which writer to use; 'auto' is the direct one when the stub has header room, else objcopy. */
  method?: 'auto' | 'direct' | 'objcopy';
  /** Another systemd-stub than the packaged one (tests, custom builds). */
  stubPath?: string;
}

/** True when the stub's header area can hold `extra` more section headers without moving data. */
export function hasHeaderRoom(stub: PeImage, extra: number): boolean {
  const firstData = stub.sections
    .filter((s) => s.rawSize > 0)
    .reduce((min, s) => Math.min(min, s.rawPointer), stub.layout.sizeOfHeaders);
  const tableEnd = stub.layout.sectionTableOffset + (stub.sections.length + extra) * SECTION_HEADER_SIZE;
  return tableEnd <= Math.min(firstData, stub.layout.sizeOfHeaders);
}

export async function assembleUki(opts: AssembleUkiOptions): Promise<void> {
  throwIfAborted(opts.signal);
  const stubPath = opts.stubPath ?? archTools(opts.arch).stub;
  const [stub, kernel] = await Promise.all([readPe(stubPath), readPe(opts.kernelPath)]);
  if (stub.arch !== opts.arch) {
    throw new Error(`systemd-stub ${stubPath} is for ${stub.arch ?? 'an unknown architecture'}, not ${opts.arch}`);
  }
  if (kernel.arch !== opts.arch) {
    throw new Error(`kernel ${opts.kernelPath} is for ${kernel.arch ?? 'an unknown architecture'}, not ${opts.arch}`);
  }
  const initrdSize = await fileSize(opts.initrdPath);
  const osrel = Buffer.from(opts.osRelease, 'utf8');
  const cmdline = Buffer.from(opts.cmdline, 'utf8');
  const plan = planUkiSections(stub, {
    osrel: osrel.length,
    cmdline: cmdline.length,
    initrd: initrdSize,
    linux: kernel.layout.fileSize,
    linuxSizeOfImage: kernel.sizeOfImage,
  });

  const method = opts.method ?? 'auto';
  const direct = method === 'direct' || (method === 'auto' && hasHeaderRoom(stub, plan.length));
  if (!direct && method === 'auto' && !(await objcopyAvailable(opts.arch))) {
    throw new Error(`systemd-stub ${stubPath} has no header room for the UKI sections and ${archTools(opts.arch).objcopy} is not installed`);
  }
  try {
    if (direct) {
      await writeUkiDirect({ stubPath, stub, plan, osrel, cmdline, initrdPath: opts.initrdPath, kernelPath: opts.kernelPath, initrdSize, kernelSize: kernel.layout.fileSize, outPath: opts.outPath, signal: opts.signal });
    } else {
      await writeUkiObjcopy({ arch: opts.arch, stubPath, stub, plan, osrel, cmdline, initrdPath: opts.initrdPath, kernelPath: opts.kernelPath, outPath: opts.outPath, workDir: opts.workDir, signal: opts.signal });
    }
  } catch (err) {
    await rm(opts.outPath, { force: true });
    throw err;
  }
}

async function fileSize(path: string): Promise<number> {
  const handle = await open(path, 'r');
  try {
    return (await handle.stat()).size;
  } finally {
    await handle.close();
  }
}

function sectionFlags(name: string): number {
  return name === '.linux' ? CODE_FLAGS : DATA_FLAGS;
}

async function writeUkiDirect(args: {
  stubPath: string;
  stub: PeImage;
  plan: UkiSectionPlan[];
  osrel: Buffer;
  cmdline: Buffer;
  initrdPath: string;
  kernelPath: string;
  initrdSize: number;
  kernelSize: number;
  outPath: string;
  signal?: AbortSignal;
}): Promise<void> {
  const { stub, plan } = args;
  if (!hasHeaderRoom(stub, plan.length)) {
    throw new Error(`systemd-stub ${args.stubPath} has no room in its headers for ${plan.length} more sections`);
  }
  const { layout } = stub;
  const fileAlignment = stub.fileAlignment > 0 ? stub.fileAlignment : 0x200;
  const stubBytes = await readWhole(args.stubPath, layout.fileSize);
  if (layout.certificateTable.size !== 0) {
    // A signature over the stub alone is void once sections are added: drop it rather than ship a broken one.
    const dirs = layout.optionalHeaderOffset + (layout.optionalMagic === 0x20b ? 112 : 96);
    stubBytes.writeUInt32LE(0, dirs + 4 * 8);
    stubBytes.writeUInt32LE(0, dirs + 4 * 8 + 4);
  }

  let rawPointer = alignUp(layout.fileSize, fileAlignment);
  const placed = plan.map((section) => {
    const rawSize = alignUp(section.size, fileAlignment);
    const at = { ...section, rawPointer: section.size > 0 ? rawPointer : 0, rawSize };
    rawPointer += rawSize;
    return at;
  });
  const totalSize = rawPointer;

  const coff = layout.peOffset + 4;
  stubBytes.writeUInt16LE(stub.sections.length + plan.length, coff + 2);
  const opt = layout.optionalHeaderOffset;
  const last = plan[plan.length - 1]!;
  stubBytes.writeUInt32LE(alignUp(last.vma + last.virtualSize, stub.sectionAlignment), opt + OPT.sizeOfImage);
  let code = layout.sizeOfCode;
  let data = layout.sizeOfInitializedData;
  for (const s of placed) {
    if (s.name === '.linux') code += s.rawSize;
    else data += s.rawSize;
  }
  stubBytes.writeUInt32LE(Math.min(code, 0xffffffff), opt + OPT.sizeOfCode);
  stubBytes.writeUInt32LE(Math.min(data, 0xffffffff), opt + OPT.sizeOfInitializedData);
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

  throwIfAborted(args.signal);
  const out = await open(args.outPath, 'w');
  try {
    await writeAllAt(out, stubBytes, 0);
    for (const s of placed) {
      if (s.size === 0) continue;
      switch (s.name) {
        case '.osrel':
          await writeAllAt(out, args.osrel, s.rawPointer);
          break;
        case '.cmdline':
          await writeAllAt(out, args.cmdline, s.rawPointer);
          break;
        case '.initrd':
          await copyFileInto(args.initrdPath, out, s.rawPointer, args.signal, args.initrdSize);
          break;
        case '.linux':
          await copyFileInto(args.kernelPath, out, s.rawPointer, args.signal, args.kernelSize);
          break;
      }
    }
    // Zero padding between and after sections up to FileAlignment.
    await out.truncate(totalSize);
  } finally {
    await out.close();
  }
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
  osrel: Buffer;
  cmdline: Buffer;
  initrdPath: string;
  kernelPath: string;
  outPath: string;
  workDir: string;
  signal?: AbortSignal;
}): Promise<void> {
  const osrelPath = join(args.workDir, 'uki-osrel');
  const cmdlinePath = join(args.workDir, 'uki-cmdline');
  await writeFile(osrelPath, args.osrel);
  await writeFile(cmdlinePath, args.cmdline);
  const files: Record<string, string> = {
    '.osrel': osrelPath,
    '.cmdline': cmdlinePath,
    '.initrd': args.initrdPath,
    '.linux': args.kernelPath,
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
