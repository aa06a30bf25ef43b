// Puts a large file into an xorriso-made ISO template in place of a one-block placeholder, without
// running xorriso over its bytes, and grows every size that covers it.
import { stat } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { writeFileFromSegments, type WrittenFile } from './segments.js';

// xorriso builds the template around the placeholder, written last; the sizes to grow are the
// ISO9660 directory record and volume size, the protective MBR and the primary and backup GPT.
// Every assumption about the template is checked first: anything unexpected raises IsoLayoutError,
// so that the caller can have xorriso copy the file instead.
export class IsoLayoutError extends Error {
  override name = 'IsoLayoutError';
}

const BLOCK = 2048;
const SECTOR = 512;
const PVD_OFFSET = 16 * BLOCK;

function fail(why: string): never {
  throw new IsoLayoutError(`unexpected ISO template layout: ${why}`);
}

function writeBoth32(buf: Buffer, at: number, value: number): void {
  buf.writeUInt32LE(value, at);
  buf.writeUInt32BE(value, at + 4);
}

function readBoth32(buf: Buffer, at: number, what: string): number {
  const le = buf.readUInt32LE(at);
  if (buf.readUInt32BE(at + 4) !== le) fail(`${what} disagrees between its two byte orders`);
  return le;
}

interface DirRecord {
  /** Byte offset of the record in the image. */
  offset: number;
  extent: number;
  size: number;
  isDir: boolean;
}

/** Every file and directory record reachable from the root directory. */
function walkTree(image: Buffer): DirRecord[] {
  const root = PVD_OFFSET + 156;
  const records: DirRecord[] = [];
  const visited = new Set<number>();
  const walk = (extent: number, size: number, depth: number) => {
    if (depth > 16 || visited.has(extent)) fail('directory tree too deep or looping');
    visited.add(extent);
    const start = extent * BLOCK;
    const end = start + size;
    if (end > image.length) fail('directory outside the template');
    let pos = start;
    while (pos < end) {
      const length = image[pos]!;
      if (length === 0) {
        // Records never cross a block boundary: the rest of this block is padding.
        pos = (Math.floor(pos / BLOCK) + 1) * BLOCK;
        continue;
      }
      if (length < 34 || pos + length > end) fail('malformed directory record');
      const flags = image[pos + 25]!;
      const nameLength = image[pos + 32]!;
      const first = image[pos + 33];
      const self = nameLength === 1 && (first === 0 || first === 1);
      if ((flags & 0x80) !== 0) fail('multi-extent file');
      if (!self) {
        const record = {
          offset: pos,
          extent: readBoth32(image, pos + 2, 'extent'),
          size: readBoth32(image, pos + 10, 'data length'),
          isDir: (flags & 0x02) !== 0,
        };
        records.push(record);
        if (record.isDir) walk(record.extent, record.size, depth + 1);
      }
      pos += length;
    }
  };
  walk(readBoth32(image, root + 2, 'root extent'), readBoth32(image, root + 10, 'root size'), 0);
  return records;
}

interface GptHeader {
  offset: number;
  size: number;
  myLba: bigint;
  alternateLba: bigint;
  lastUsable: bigint;
  entriesLba: bigint;
  entryCount: number;
  entrySize: number;
}

function readGptHeader(image: Buffer, offset: number, what: string): GptHeader {
  if (offset < 0 || offset + SECTOR > image.length) fail(`${what} GPT header outside the image`);
  if (image.toString('latin1', offset, offset + 8) !== 'EFI PART') fail(`no ${what} GPT header`);
  const size = image.readUInt32LE(offset + 12);
  if (size < 92 || size > SECTOR) fail(`${what} GPT header size ${size}`);
  const header = Buffer.from(image.subarray(offset, offset + size));
  const crc = header.readUInt32LE(16);
  header.writeUInt32LE(0, 16);
  if (crc32(header) !== crc) fail(`${what} GPT header checksum mismatch`);
  return {
    offset,
    size,
    myLba: image.readBigUInt64LE(offset + 24),
    alternateLba: image.readBigUInt64LE(offset + 32),
    lastUsable: image.readBigUInt64LE(offset + 48),
    entriesLba: image.readBigUInt64LE(offset + 72),
    entryCount: image.readUInt32LE(offset + 80),
    entrySize: image.readUInt32LE(offset + 84),
  };
}

function sealGptHeader(image: Buffer, header: GptHeader, entriesCrc: number): void {
  image.writeUInt32LE(entriesCrc, header.offset + 88);
  image.writeUInt32LE(0, header.offset + 16);
  image.writeUInt32LE(crc32(image.subarray(header.offset, header.offset + header.size)), header.offset + 16);
}

/** CHS address as xorriso writes it: 64 heads, 32 sectors, saturated past cylinder 1023. */
function chs(lba: number): Buffer {
  let c = Math.floor(lba / (64 * 32));
  let h = Math.floor(lba / 32) % 64;
  let s = (lba % 32) + 1;
  if (c > 1023) [c, h, s] = [1023, 63, 32];
  return Buffer.from([h, s | ((c >> 2) & 0xc0), c & 0xff]);
}

export interface SplicePlan {
  /** Patched bytes before the file's data. */
  head: Buffer;
  /** Patched bytes after the file's data and its padding. */
  tail: Buffer;
  dataOffset: number;
  tailOffset: number;
  totalSize: number;
}

/**
 * Computes the final image from `template` (whose file data ends with the single block that
 * holds `placeholder`) for a file of `fileSize` bytes replacing that placeholder.
 */
export function planSplice(template: Buffer, placeholder: Buffer, fileSize: number): SplicePlan {
  if (placeholder.length === 0 || placeholder.length > BLOCK) fail('placeholder must fit one block');
  if (!Number.isInteger(fileSize) || fileSize <= 0 || fileSize > 0xffffffff) {
    fail(`file size ${fileSize} needs more than one ISO9660 extent`);
  }
  const T = template.length;
  if (T % BLOCK !== 0 || T < PVD_OFFSET + BLOCK) fail('template size is not whole blocks');
  if (template[PVD_OFFSET] !== 1 || template.toString('latin1', PVD_OFFSET + 1, PVD_OFFSET + 6) !== 'CD001') {
    fail('no primary volume descriptor');
  }
  if (template.readUInt16LE(PVD_OFFSET + 128) !== BLOCK) fail('logical block size is not 2048');
  const volumeBlocks = readBoth32(template, PVD_OFFSET + 80, 'volume space size');
  if (volumeBlocks * BLOCK !== T) fail('volume space size does not match the template size');

  const records = walkTree(template);
  const matches = records.filter(
    (r) =>
      !r.isDir &&
      r.size === placeholder.length &&
      template.subarray(r.extent * BLOCK, r.extent * BLOCK + r.size).equals(placeholder),
  );
  if (matches.length !== 1) fail(`found ${matches.length} copies of the placeholder`);
  const target = matches[0]!;
  const dataOffset = target.extent * BLOCK;
  const oldEnd = dataOffset + BLOCK;
  for (const r of records) {
    if (r !== target && r.size > 0 && r.extent * BLOCK + Math.ceil(r.size / BLOCK) * BLOCK > dataOffset) {
      fail('the placeholder is not the last data in the image');
    }
  }
  for (const at of [140, 148]) {
    const table = (at === 140 ? template.readUInt32LE(PVD_OFFSET + at) : template.readUInt32BE(PVD_OFFSET + at)) * BLOCK;
    if (table + template.readUInt32LE(PVD_OFFSET + 132) > dataOffset) fail('path table after the placeholder');
  }

  const newBlocks = Math.ceil(fileSize / BLOCK);
  const shift = (newBlocks - 1) * BLOCK;
  const shiftSectors = BigInt(shift / SECTOR);
  const head = Buffer.from(template.subarray(0, dataOffset));
  const tail = Buffer.from(template.subarray(oldEnd));
  const tailOffset = dataOffset + newBlocks * BLOCK;
  const totalSize = T + shift;

  writeBoth32(head, PVD_OFFSET + 80, volumeBlocks + newBlocks - 1);
  writeBoth32(head, target.offset + 10, fileSize);

  // Partition tables: what ends after the placeholder grows, what starts after it moves.
  const oldEndSector = oldEnd / SECTOR;
  const dataSector = dataOffset / SECTOR;
  const primary = readGptHeader(template, SECTOR, 'primary');
  if (primary.myLba !== 1n || primary.alternateLba !== BigInt(T / SECTOR - 1)) fail('backup GPT is not at the end');
  const backup = readGptHeader(template, T - SECTOR, 'backup');
  if (backup.alternateLba !== 1n || backup.entryCount !== primary.entryCount || backup.entrySize !== primary.entrySize) {
    fail('backup GPT does not mirror the primary one');
  }
  const entriesBytes = primary.entryCount * primary.entrySize;
  const primaryEntries = Number(primary.entriesLba) * SECTOR;
  const backupEntries = Number(backup.entriesLba) * SECTOR;
  if (primaryEntries + entriesBytes > dataOffset || backupEntries < oldEnd || backupEntries + entriesBytes > T - SECTOR) {
    fail('GPT entry arrays are not where expected');
  }
  const entries = Buffer.from(template.subarray(primaryEntries, primaryEntries + entriesBytes));
  if (crc32(entries) !== template.readUInt32LE(SECTOR + 88)) fail('GPT entry array checksum mismatch');
  if (!entries.equals(template.subarray(backupEntries, backupEntries + entriesBytes))) fail('GPT entry arrays differ');
  for (let at = 0; at < entriesBytes; at += primary.entrySize) {
    if (entries.subarray(at, at + 16).every((b) => b === 0)) continue;
    const first = entries.readBigUInt64LE(at + 32);
    const last = entries.readBigUInt64LE(at + 40);
    const dataStart = BigInt(dataSector);
    const blockEnd = BigInt(oldEndSector); // first sector after the placeholder block
    if ((first > dataStart && first < blockEnd) || (last >= dataStart && last < blockEnd - 1n)) {
      fail('a partition boundary falls inside the placeholder');
    }
    if (first >= blockEnd) entries.writeBigUInt64LE(first + shiftSectors, at + 32);
    if (last >= blockEnd - 1n) entries.writeBigUInt64LE(last + shiftSectors, at + 40);
  }
  const entriesCrc = crc32(entries);
  entries.copy(head, primaryEntries);
  head.writeBigUInt64LE(primary.alternateLba + shiftSectors, SECTOR + 32);
  head.writeBigUInt64LE(primary.lastUsable + shiftSectors, SECTOR + 48);
  sealGptHeader(head, primary, entriesCrc);

  const backupInTail = { ...backup, offset: backup.offset - oldEnd };
  entries.copy(tail, backupEntries - oldEnd);
  tail.writeBigUInt64LE(backup.myLba + shiftSectors, backupInTail.offset + 24);
  tail.writeBigUInt64LE(backup.lastUsable + shiftSectors, backupInTail.offset + 48);
  tail.writeBigUInt64LE(backup.entriesLba + shiftSectors, backupInTail.offset + 72);
  sealGptHeader(tail, backupInTail, entriesCrc);

  if (head.readUInt16LE(510) !== 0xaa55) fail('no MBR signature');
  for (let i = 0; i < 4; i++) {
    const at = 446 + i * 16;
    if (head[at + 4] === 0) continue;
    const start = head.readUInt32LE(at + 8);
    const size = head.readUInt32LE(at + 12);
    const last = start + size - 1;
    if (!head.subarray(at + 5, at + 8).equals(chs(last)) || !head.subarray(at + 1, at + 4).equals(chs(start))) {
      fail('MBR CHS addresses follow an unknown geometry');
    }
    if (size === 0xffffffff) fail('MBR partition size already saturated');
    if (last >= oldEndSector - 1) {
      const newSize = Math.min(size + Number(shiftSectors), 0xffffffff);
      head.writeUInt32LE(newSize, at + 12);
      chs(start + newSize - 1).copy(head, at + 5);
    } else if (last >= dataSector) {
      fail('an MBR partition ends inside the placeholder');
    }
  }

  return { head, tail, dataOffset, tailOffset, totalSize };
}

/** Writes the final image: patched head, the file's bytes, zero padding, patched tail. */
export async function spliceFile(
  template: Buffer,
  placeholder: Buffer,
  filePath: string,
  outPath: string,
  options: { signal?: AbortSignal; digest?: boolean } = {},
): Promise<WrittenFile> {
  const size = (await stat(filePath)).size;
  const plan = planSplice(template, placeholder, size);
  options.signal?.throwIfAborted();
  const written = await writeFileFromSegments(
    outPath,
    [{ bytes: plan.head }, { file: filePath, size }, { zeros: plan.tailOffset - plan.dataOffset - size }, { bytes: plan.tail }],
    options,
  );
  if (written.bytes !== plan.totalSize) throw new Error(`spliced image is ${written.bytes} bytes, expected ${plan.totalSize}`);
  return written;
}
