// Writer for the newc ("070701") cpio format, the only uncompressed format the Linux
// initramfs unpacker accepts besides crc. Pure: entries in, bytes out.

export interface CpioEntry {
  /** Relative path inside the archive, no leading '/', e.g. "root/.ssh". */
  name: string;
  type: 'dir' | 'file' | 'symlink';
  /** Permission bits only (0..0o7777); the type bits are derived from `type`. */
  mode: number;
  uid: number;
  gid: number;
  data?: Buffer;
  linkTarget?: string;
}

const TYPE_BITS: Record<CpioEntry['type'], number> = {
  dir: 0o040000,
  file: 0o100000,
  symlink: 0o120000,
};

const HEADER_SIZE = 110;
const TRAILER_NAME = 'TRAILER!!!';
const MAX_U32 = 0xffffffff;

function padLength(length: number): number {
  return (4 - (length % 4)) % 4;
}

function assertU32(value: number, what: string, entryName: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw new Error(`cpio: ${what} of "${entryName}" must be an integer in 0..${MAX_U32}, got ${value}`);
  }
}

function header(fields: {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  fileSize: number;
  nameSize: number;
}): Buffer {
  const values = [
    fields.ino,
    fields.mode,
    fields.uid,
    fields.gid,
    fields.nlink,
    0, // mtime: fixed so that identical input gives identical bytes
    fields.fileSize,
    0, // devmajor
    0, // devminor
    0, // rdevmajor
    0, // rdevminor
    fields.nameSize,
    0, // check: only meaningful for the "070702" crc variant
  ];
  const text = '070701' + values.map((v) => v.toString(16).padStart(8, '0')).join('');
  return Buffer.from(text, 'ascii');
}

/** One header + name (+ padding) + data (+ padding). */
function member(name: string, ino: number, mode: number, uid: number, gid: number, nlink: number, data: Buffer): Buffer[] {
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const parts = [
    header({ ino, mode, uid, gid, nlink, fileSize: data.length, nameSize: nameBytes.length }),
    nameBytes,
    Buffer.alloc(padLength(HEADER_SIZE + nameBytes.length)),
  ];
  if (data.length > 0) {
    parts.push(data, Buffer.alloc(padLength(data.length)));
  }
  return parts;
}

function entryData(entry: CpioEntry): Buffer {
  switch (entry.type) {
    case 'dir':
      if (entry.data !== undefined && entry.data.length > 0) {
        throw new Error(`cpio: directory "${entry.name}" cannot carry data`);
      }
      return Buffer.alloc(0);
    case 'file':
      return entry.data ?? Buffer.alloc(0);
    case 'symlink':
      if (entry.linkTarget === undefined || entry.linkTarget === '') {
        throw new Error(`cpio: symlink "${entry.name}" needs a non-empty linkTarget`);
      }
      return Buffer.from(entry.linkTarget, 'utf8');
  }
}

function checkEntry(entry: CpioEntry): void {
  if (entry.name === '' || entry.name.startsWith('/') || entry.name.includes('\0')) {
    throw new Error(`cpio: invalid entry name ${JSON.stringify(entry.name)} (must be relative and non-empty)`);
  }
  if (entry.name === TRAILER_NAME) {
    throw new Error(`cpio: "${TRAILER_NAME}" is reserved for the archive trailer`);
  }
  if (!Number.isInteger(entry.mode) || entry.mode < 0 || entry.mode > 0o7777) {
    throw new Error(`cpio: mode of "${entry.name}" must be permission bits in 0..0o7777, got ${entry.mode}`);
  }
  if (!(entry.type in TYPE_BITS)) {
    throw new Error(`cpio: unknown entry type ${JSON.stringify(entry.type)} for "${entry.name}"`);
  }
  assertU32(entry.uid, 'uid', entry.name);
  assertU32(entry.gid, 'gid', entry.name);
}

/**
 * Encodes `entries` in the given order as a newc archive with its trailer.
 * Inode numbers are sequential from 1 so that no two entries look like hard links.
 */
export function encodeNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((entry, index) => {
    checkEntry(entry);
    const data = entryData(entry);
    assertU32(data.length, 'size', entry.name);
    const nlink = entry.type === 'dir' ? 2 : 1;
    parts.push(...member(entry.name, index + 1, TYPE_BITS[entry.type] | entry.mode, entry.uid, entry.gid, nlink, data));
  });
  parts.push(...member(TRAILER_NAME, 0, 0, 0, 0, 1, Buffer.alloc(0)));
  return Buffer.concat(parts);
}
