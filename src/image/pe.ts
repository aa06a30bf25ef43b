// PE/COFF headers of EFI binaries (systemd-stub, Linux kernels with an EFI stub, UKIs): where every
// header field is, reading the headers, and the edits the UKI writers make to them.
import { open, type FileHandle } from 'node:fs/promises';
import { writeAllAt } from '../storage/write-all.js';
import { ARCHITECTURES, type Architecture } from './architecture.js';

export interface PeSection {
  name: string;
  virtualAddress: number;
  virtualSize: number;
  rawSize: number;
  rawPointer: number;
  /** IMAGE_SCN_* flags. */
  characteristics: number;
}

export interface PeImage {
  machine: number;
  arch: Architecture | null;
  sectionAlignment: number;
  fileAlignment: number;
  sizeOfImage: number;
  sections: PeSection[];
  /** Where things are in the file, for writers that patch headers in place. */
  layout: PeLayout;
}

export interface PeLayout {
  fileSize: number;
  /** Offset of the "PE\0\0" signature. */
  peOffset: number;
  optionalHeaderOffset: number;
  /** 0x10b (PE32) or 0x20b (PE32+). */
  optionalMagic: OptionalMagic;
  sectionTableOffset: number;
  sizeOfHeaders: number;
  /** Preferred load address; objcopy's section VMAs include it, RVAs do not. */
  imageBase: number;
  timeDateStamp: number;
  sizeOfCode: number;
  sizeOfInitializedData: number;
  /** File offset and size of the certificate table (Authenticode signature), 0 when unsigned. */
  certificateTable: { offset: number; size: number };
}

/** COFF machine type of each architecture's EFI programs. */
const MACHINE: Record<Architecture, number> = { amd64: 0x8664, arm64: 0xaa64 };

export const SCN_CNT_CODE = 0x00000020;
export const SCN_CNT_INITIALIZED_DATA = 0x00000040;
export const SCN_MEM_EXECUTE = 0x20000000;
export const SCN_MEM_READ = 0x40000000;

const MZ_SIGNATURE = 0x5a4d;
/** Where the DOS header keeps the offset of the "PE\0\0" signature. */
const PE_OFFSET_FIELD = 0x3c;
const PE_SIGNATURE = 0x00004550;
const PE_SIGNATURE_SIZE = 4;
const PE32 = 0x10b;
const PE32_PLUS = 0x20b;
type OptionalMagic = typeof PE32 | typeof PE32_PLUS;

const COFF_HEADER_SIZE = 20;
/** Offsets inside the COFF header, which follows the "PE\0\0" signature. */
const COFF = { machine: 0, numberOfSections: 2, timeDateStamp: 4, sizeOfOptionalHeader: 16 } as const;

/** Offsets inside the optional header, shared by PE32 and PE32+ unless noted. */
const OPT = {
  magic: 0,
  sizeOfCode: 4,
  sizeOfInitializedData: 8,
  sectionAlignment: 32,
  fileAlignment: 36,
  sizeOfImage: 56,
  sizeOfHeaders: 60,
  checkSum: 64,
} as const;
/** Through CheckSum, Subsystem and DllCharacteristics: what every optional header has. */
const MIN_OPTIONAL_HEADER_SIZE = 72;
const IMAGE_BASE_OFFSET = { [PE32]: 28, [PE32_PLUS]: 24 } as const;
const DATA_DIRECTORY_OFFSET = { [PE32]: 96, [PE32_PLUS]: 112 } as const;
const DATA_DIRECTORY_SIZE = 8;
const SECURITY_DIRECTORY = 4;

const SECTION_HEADER_SIZE = 40;
/** Offsets inside a section header. */
const SECTION = { name: 0, virtualSize: 8, virtualAddress: 12, rawSize: 16, rawPointer: 20, characteristics: 36 } as const;
const SECTION_NAME_SIZE = 8;

function archOf(machine: number): Architecture | null {
  return ARCHITECTURES.find((arch) => MACHINE[arch] === machine) ?? null;
}

function notPe(path: string, why: string): Error {
  return new Error(`${path} is not a PE/EFI image: ${why}`);
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

function securityDirectoryOffset(optionalHeaderOffset: number, optionalMagic: OptionalMagic): number {
  return optionalHeaderOffset + DATA_DIRECTORY_OFFSET[optionalMagic] + SECURITY_DIRECTORY * DATA_DIRECTORY_SIZE;
}

/** Parses PE headers from `head` (at least the first bytes up to the end of the section table). */
export function parsePe(head: Buffer, fileSize: number, path = '<buffer>'): PeImage {
  if (head.length < 64 || head.readUInt16LE(0) !== MZ_SIGNATURE) throw notPe(path, 'no "MZ" signature');
  const peOffset = head.readUInt32LE(PE_OFFSET_FIELD);
  if (peOffset + PE_SIGNATURE_SIZE + COFF_HEADER_SIZE > head.length) throw notPe(path, 'PE header offset out of range');
  if (head.readUInt32LE(peOffset) !== PE_SIGNATURE) throw notPe(path, 'no "PE\\0\\0" signature');
  const coff = peOffset + PE_SIGNATURE_SIZE;
  const machine = head.readUInt16LE(coff + COFF.machine);
  const numberOfSections = head.readUInt16LE(coff + COFF.numberOfSections);
  const sizeOfOptionalHeader = head.readUInt16LE(coff + COFF.sizeOfOptionalHeader);
  const optionalHeaderOffset = coff + COFF_HEADER_SIZE;
  const sectionTableOffset = optionalHeaderOffset + sizeOfOptionalHeader;
  const sectionTableEnd = sectionTableOffset + numberOfSections * SECTION_HEADER_SIZE;
  if (sizeOfOptionalHeader < MIN_OPTIONAL_HEADER_SIZE || sectionTableEnd > head.length) throw notPe(path, 'truncated headers');
  const optionalMagic = head.readUInt16LE(optionalHeaderOffset + OPT.magic);
  if (optionalMagic !== PE32 && optionalMagic !== PE32_PLUS) {
    throw notPe(path, `unknown optional header magic 0x${optionalMagic.toString(16)}`);
  }
  const opt = (field: number) => head.readUInt32LE(optionalHeaderOffset + field);

  const dirs = optionalHeaderOffset + DATA_DIRECTORY_OFFSET[optionalMagic];
  const numberOfDirs = head.readUInt32LE(dirs - 4);
  const security = securityDirectoryOffset(optionalHeaderOffset, optionalMagic);
  const certificateTable =
    numberOfDirs > SECURITY_DIRECTORY && security + DATA_DIRECTORY_SIZE <= sectionTableOffset
      ? { offset: head.readUInt32LE(security), size: head.readUInt32LE(security + 4) }
      : { offset: 0, size: 0 };

  const sections: PeSection[] = [];
  for (let i = 0; i < numberOfSections; i++) {
    const at = sectionTableOffset + i * SECTION_HEADER_SIZE;
    sections.push({
      name: head.toString('latin1', at + SECTION.name, at + SECTION.name + SECTION_NAME_SIZE).replace(/\0+$/, ''),
      virtualSize: head.readUInt32LE(at + SECTION.virtualSize),
      virtualAddress: head.readUInt32LE(at + SECTION.virtualAddress),
      rawSize: head.readUInt32LE(at + SECTION.rawSize),
      rawPointer: head.readUInt32LE(at + SECTION.rawPointer),
      characteristics: head.readUInt32LE(at + SECTION.characteristics),
    });
  }

  const imageBase = optionalHeaderOffset + IMAGE_BASE_OFFSET[optionalMagic];
  return {
    machine,
    arch: archOf(machine),
    sectionAlignment: opt(OPT.sectionAlignment),
    fileAlignment: opt(OPT.fileAlignment),
    sizeOfImage: opt(OPT.sizeOfImage),
    sections,
    layout: {
      fileSize,
      peOffset,
      optionalHeaderOffset,
      optionalMagic,
      sectionTableOffset,
      sizeOfHeaders: opt(OPT.sizeOfHeaders),
      imageBase: optionalMagic === PE32_PLUS ? Number(head.readBigUInt64LE(imageBase)) : head.readUInt32LE(imageBase),
      timeDateStamp: head.readUInt32LE(coff + COFF.timeDateStamp),
      sizeOfCode: opt(OPT.sizeOfCode),
      sizeOfInitializedData: opt(OPT.sizeOfInitializedData),
      certificateTable,
    },
  };
}

/** The headers of the open PE file `file`, DOS stub through section table, and the file's size. */
async function readHeaders(file: FileHandle, path: string): Promise<{ head: Buffer; size: number }> {
  const { size } = await file.stat();
  const readAt = async (length: number, position: number): Promise<Buffer> => {
    const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - position)));
    const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
    return buffer.subarray(0, bytesRead);
  };
  const dos = await readAt(64, 0);
  if (dos.length < 64 || dos.readUInt16LE(0) !== MZ_SIGNATURE) throw notPe(path, 'no "MZ" signature');
  const peOffset = dos.readUInt32LE(PE_OFFSET_FIELD);
  const coff = await readAt(PE_SIGNATURE_SIZE + COFF_HEADER_SIZE, peOffset);
  if (coff.length < PE_SIGNATURE_SIZE + COFF_HEADER_SIZE || coff.readUInt32LE(0) !== PE_SIGNATURE) {
    throw notPe(path, 'no "PE\\0\\0" signature');
  }
  const numberOfSections = coff.readUInt16LE(PE_SIGNATURE_SIZE + COFF.numberOfSections);
  const sizeOfOptionalHeader = coff.readUInt16LE(PE_SIGNATURE_SIZE + COFF.sizeOfOptionalHeader);
  const headLength = peOffset + PE_SIGNATURE_SIZE + COFF_HEADER_SIZE + sizeOfOptionalHeader + numberOfSections * SECTION_HEADER_SIZE;
  return { head: await readAt(headLength, 0), size };
}

/** Reads and parses the headers of the PE file at `path`; throws a clear Error for anything else. */
export async function readPe(path: string): Promise<PeImage> {
  const file = await open(path, 'r');
  try {
    const { head, size } = await readHeaders(file, path);
    return parsePe(head, size, path);
  } finally {
    await file.close();
  }
}

/**
 * Edits the headers of the PE file at `path` in place: `edit` changes `head` (the file's bytes from
 * 0 through the section table) with the functions below, and the result is written back.
 */
export async function editPeHeaders(path: string, edit: (head: Buffer, pe: PeImage) => void): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const { head, size } = await readHeaders(file, path);
    edit(head, parsePe(head, size, path));
    await writeAllAt(file, head, 0);
  } finally {
    await file.close();
  }
}

/** True when the header area can hold `extra` more section headers without moving any section's data. */
export function hasHeaderRoom(pe: PeImage, extra: number): boolean {
  const firstData = pe.sections
    .filter((s) => s.rawSize > 0)
    .reduce((min, s) => Math.min(min, s.rawPointer), pe.layout.sizeOfHeaders);
  const tableEnd = pe.layout.sectionTableOffset + (pe.sections.length + extra) * SECTION_HEADER_SIZE;
  return tableEnd <= Math.min(firstData, pe.layout.sizeOfHeaders);
}

/** SizeOfImage for these sections: the end of the last one in memory, on SectionAlignment. */
function imageSizeOf(sections: PeSection[], sectionAlignment: number): number {
  return alignUp(sections.reduce((end, s) => Math.max(end, s.virtualAddress + s.virtualSize), 0), sectionAlignment);
}

function writeSectionHeader(head: Buffer, at: number, section: PeSection): void {
  head.fill(0, at, at + SECTION_HEADER_SIZE);
  head.write(section.name, at + SECTION.name, SECTION_NAME_SIZE, 'latin1');
  head.writeUInt32LE(section.virtualSize, at + SECTION.virtualSize);
  head.writeUInt32LE(section.virtualAddress, at + SECTION.virtualAddress);
  head.writeUInt32LE(section.rawSize, at + SECTION.rawSize);
  head.writeUInt32LE(section.rawPointer, at + SECTION.rawPointer);
  head.writeUInt32LE(section.characteristics, at + SECTION.characteristics);
}

/**
 * Appends `added` to the section table of `pe`, whose headers are in `head`, and updates what covers
 * them: NumberOfSections, SizeOfImage, SizeOfCode and SizeOfInitializedData. A certificate table is
 * dropped (a signature over the image without these sections is void) and the checksum zeroed.
 */
export function appendSections(head: Buffer, pe: PeImage, added: PeSection[]): void {
  if (!hasHeaderRoom(pe, added.length)) throw new Error(`no room in the PE headers for ${added.length} more sections`);
  const { layout } = pe;
  const opt = layout.optionalHeaderOffset;
  if (layout.certificateTable.size !== 0) {
    const security = securityDirectoryOffset(opt, layout.optionalMagic);
    head.fill(0, security, security + DATA_DIRECTORY_SIZE);
  }
  head.writeUInt16LE(pe.sections.length + added.length, layout.peOffset + PE_SIGNATURE_SIZE + COFF.numberOfSections);
  head.writeUInt32LE(imageSizeOf([...pe.sections, ...added], pe.sectionAlignment), opt + OPT.sizeOfImage);
  let code = layout.sizeOfCode;
  let initialized = layout.sizeOfInitializedData;
  for (const s of added) {
    if (s.characteristics & SCN_CNT_CODE) code += s.rawSize;
    else if (s.characteristics & SCN_CNT_INITIALIZED_DATA) initialized += s.rawSize;
  }
  head.writeUInt32LE(Math.min(code, 0xffffffff), opt + OPT.sizeOfCode);
  head.writeUInt32LE(Math.min(initialized, 0xffffffff), opt + OPT.sizeOfInitializedData);
  clearChecksum(head, pe);
  added.forEach((s, i) => writeSectionHeader(head, layout.sectionTableOffset + (pe.sections.length + i) * SECTION_HEADER_SIZE, s));
}

/** Sets the VirtualSize of section `index` and SizeOfImage to match. */
export function resizeSection(head: Buffer, pe: PeImage, index: number, virtualSize: number): void {
  const section = pe.sections[index];
  if (section === undefined) throw new Error(`no section ${index}`);
  head.writeUInt32LE(virtualSize, pe.layout.sectionTableOffset + index * SECTION_HEADER_SIZE + SECTION.virtualSize);
  const sections = pe.sections.map((s) => (s === section ? { ...s, virtualSize } : s));
  head.writeUInt32LE(imageSizeOf(sections, pe.sectionAlignment), pe.layout.optionalHeaderOffset + OPT.sizeOfImage);
}

/** Renames section `index` (at most 8 bytes, as the section table holds them). */
export function renameSection(head: Buffer, pe: PeImage, index: number, name: string): void {
  if (pe.sections[index] === undefined) throw new Error(`no section ${index}`);
  if (Buffer.byteLength(name, 'latin1') > SECTION_NAME_SIZE) throw new Error(`section name ${name} is longer than ${SECTION_NAME_SIZE} bytes`);
  const at = pe.layout.sectionTableOffset + index * SECTION_HEADER_SIZE + SECTION.name;
  head.fill(0, at, at + SECTION_NAME_SIZE);
  head.write(name, at, SECTION_NAME_SIZE, 'latin1');
}

export function setTimeDateStamp(head: Buffer, pe: PeImage, stamp: number): void {
  head.writeUInt32LE(stamp, pe.layout.peOffset + PE_SIGNATURE_SIZE + COFF.timeDateStamp);
}

/** Zeroes the checksum: UEFI loaders do not check it, and computing it costs a pass over every byte. */
export function clearChecksum(head: Buffer, pe: PeImage): void {
  head.writeUInt32LE(0, pe.layout.optionalHeaderOffset + OPT.checkSum);
}
