// Reader for PE/COFF headers (DOS stub, COFF header, optional header, section table) of EFI
// binaries: systemd-stub, Linux kernels with an EFI stub, UKIs. Reads the headers only.
import { open } from 'node:fs/promises';

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
  arch: 'amd64' | 'arm64' | null;
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
  optionalMagic: number;
  sectionTableOffset: number;
  sizeOfHeaders: number;
  /** Preferred load address; objcopy's section VMAs include it, RVAs do not. */
  imageBase: number;
  sizeOfCode: number;
  sizeOfInitializedData: number;
  /** File offset and size of the certificate table (Authenticode signature), 0 when unsigned. */
  certificateTable: { offset: number; size: number };
}

export const MACHINE_AMD64 = 0x8664;
export const MACHINE_ARM64 = 0xaa64;

export const SCN_CNT_CODE = 0x00000020;
export const SCN_CNT_INITIALIZED_DATA = 0x00000040;
export const SCN_MEM_EXECUTE = 0x20000000;
export const SCN_MEM_READ = 0x40000000;

const SECTION_HEADER_SIZE = 40;
const COFF_HEADER_SIZE = 20;
const SECURITY_DIRECTORY = 4;

/** Offsets inside the optional header, shared by PE32 and PE32+ unless noted. */
export const OPT = {
  sizeOfCode: 4,
  sizeOfInitializedData: 8,
  sectionAlignment: 32,
  fileAlignment: 36,
  sizeOfImage: 56,
  sizeOfHeaders: 60,
  checkSum: 64,
} as const;

export function dataDirectoryOffset(optionalMagic: number): number {
  return optionalMagic === 0x20b ? 112 : 96;
}

function archOf(machine: number): PeImage['arch'] {
  if (machine === MACHINE_AMD64) return 'amd64';
  if (machine === MACHINE_ARM64) return 'arm64';
  return null;
}

function notPe(path: string, why: string): Error {
  return new Error(`${path} is not a PE/EFI image: ${why}`);
}

/** Parses PE headers from `head` (at least the first bytes up to the end of the section table). */
export function parsePe(head: Buffer, fileSize: number, path = '<buffer>'): PeImage {
  if (head.length < 64 || head.readUInt16LE(0) !== 0x5a4d) throw notPe(path, 'no "MZ" signature');
  const peOffset = head.readUInt32LE(0x3c);
  if (peOffset + 4 + COFF_HEADER_SIZE > head.length) throw notPe(path, 'PE header offset out of range');
  if (head.readUInt32LE(peOffset) !== 0x00004550) throw notPe(path, 'no "PE\\0\\0" signature');
  const coff = peOffset + 4;
  const machine = head.readUInt16LE(coff);
  const numberOfSections = head.readUInt16LE(coff + 2);
  const sizeOfOptionalHeader = head.readUInt16LE(coff + 16);
  const optionalHeaderOffset = coff + COFF_HEADER_SIZE;
  const sectionTableOffset = optionalHeaderOffset + sizeOfOptionalHeader;
  const sectionTableEnd = sectionTableOffset + numberOfSections * SECTION_HEADER_SIZE;
  if (sizeOfOptionalHeader < 68 + 4 || sectionTableEnd > head.length) throw notPe(path, 'truncated headers');
  const optionalMagic = head.readUInt16LE(optionalHeaderOffset);
  if (optionalMagic !== 0x10b && optionalMagic !== 0x20b) {
    throw notPe(path, `unknown optional header magic 0x${optionalMagic.toString(16)}`);
  }
  const opt = (field: number) => head.readUInt32LE(optionalHeaderOffset + field);

  const dirs = optionalHeaderOffset + dataDirectoryOffset(optionalMagic);
  const numberOfDirs = head.readUInt32LE(dirs - 4);
  const certificateTable =
    numberOfDirs > SECURITY_DIRECTORY && dirs + (SECURITY_DIRECTORY + 1) * 8 <= sectionTableOffset
      ? { offset: head.readUInt32LE(dirs + SECURITY_DIRECTORY * 8), size: head.readUInt32LE(dirs + SECURITY_DIRECTORY * 8 + 4) }
      : { offset: 0, size: 0 };

  const sections: PeSection[] = [];
  for (let i = 0; i < numberOfSections; i++) {
    const at = sectionTableOffset + i * SECTION_HEADER_SIZE;
    sections.push({
      name: head.toString('latin1', at, at + 8).replace(/\0+$/, ''),
      virtualSize: head.readUInt32LE(at + 8),
      virtualAddress: head.readUInt32LE(at + 12),
      rawSize: head.readUInt32LE(at + 16),
      rawPointer: head.readUInt32LE(at + 20),
      characteristics: head.readUInt32LE(at + 36),
    });
  }

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
      imageBase:
        optionalMagic === 0x20b
          ? Number(head.readBigUInt64LE(optionalHeaderOffset + 24))
          : head.readUInt32LE(optionalHeaderOffset + 28),
      sizeOfCode: opt(OPT.sizeOfCode),
      sizeOfInitializedData: opt(OPT.sizeOfInitializedData),
      certificateTable,
    },
  };
}

/** Reads and parses the headers of the PE file at `path`; throws a clear Error for anything else. */
export async function readPe(path: string): Promise<PeImage> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    const readAt = async (length: number, position: number): Promise<Buffer> => {
      const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - position)));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      return buffer.subarray(0, bytesRead);
    };
    const dos = await readAt(64, 0);
    if (dos.length < 64 || dos.readUInt16LE(0) !== 0x5a4d) throw notPe(path, 'no "MZ" signature');
    const peOffset = dos.readUInt32LE(0x3c);
    const coff = await readAt(4 + COFF_HEADER_SIZE, peOffset);
    if (coff.length < 4 + COFF_HEADER_SIZE || coff.readUInt32LE(0) !== 0x00004550) {
      throw notPe(path, 'no "PE\\0\\0" signature');
    }
    const numberOfSections = coff.readUInt16LE(4 + 2);
    const sizeOfOptionalHeader = coff.readUInt16LE(4 + 16);
    const headLength = peOffset + 4 + COFF_HEADER_SIZE + sizeOfOptionalHeader + numberOfSections * SECTION_HEADER_SIZE;
    return parsePe(await readAt(headLength, 0), size, path);
  } finally {
    await file.close();
  }
}
