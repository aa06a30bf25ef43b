// What a simulated server boots, found in the fetched artifact without copying it: the UKI (the file
// itself, or /EFI/Linux/uki.efi in the ISO's ISO 9660 tree, where the service's ISOs keep it), then
// its .initrd section (base initramfs ‖ padding ‖ overlay) and its .cmdline.
import { open, type FileHandle } from 'node:fs/promises';

export interface BootImage {
  /** Where the initramfs is in the fetched file. */
  initrd: { offset: number; size: number };
  cmdline: string;
}

const SECTOR = 2048;
const UKI_IN_ISO = ['EFI', 'LINUX', 'UKI.EFI'];

async function readAt(file: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await file.read(buf, 0, length, position);
  return buf.subarray(0, bytesRead);
}

/** The extent of a file in an ISO 9660 volume, by its path's (case-insensitive) primary names. */
async function isoFile(file: FileHandle, path: string[]): Promise<{ offset: number; size: number }> {
  const pvd = await readAt(file, 16 * SECTOR, SECTOR);
  if (pvd[0] !== 1 || pvd.toString('latin1', 1, 6) !== 'CD001') throw new Error('not an ISO 9660 image (no primary volume descriptor)');
  let extent = pvd.readUInt32LE(156 + 2);
  let size = pvd.readUInt32LE(156 + 10);
  for (const [depth, want] of path.entries()) {
    const dir = await readAt(file, extent * SECTOR, size);
    let found: { extent: number; size: number } | undefined;
    for (let pos = 0; pos < dir.length && !found; ) {
      const len = dir[pos]!;
      if (len === 0) {
        pos = (Math.floor(pos / SECTOR) + 1) * SECTOR; // records never cross a sector; the rest is padding
        continue;
      }
      const name = dir.toString('latin1', pos + 33, pos + 33 + dir[pos + 32]!).replace(/;\d+$/, '').replace(/\.$/, '');
      if (name.toUpperCase() === want) found = { extent: dir.readUInt32LE(pos + 2), size: dir.readUInt32LE(pos + 10) };
      pos += len;
    }
    if (!found) throw new Error(`no /${path.slice(0, depth + 1).join('/')} in the ISO`);
    ({ extent, size } = found);
  }
  return { offset: extent * SECTOR, size };
}

/** The PE section table: name, file offset and data size of each section (lab/ builds apart from src/). */
function peSections(head: Buffer): { name: string; rawPointer: number; size: number }[] {
  const pe = head.readUInt32LE(0x3c);
  if (head.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw new Error('not a PE file (no PE signature)');
  const count = head.readUInt16LE(pe + 6);
  const table = pe + 24 + head.readUInt16LE(pe + 20);
  return Array.from({ length: count }, (_, i) => {
    const at = table + i * 40;
    const name = head.toString('latin1', at, at + 8).replace(/\0+$/, '');
    return { name, rawPointer: head.readUInt32LE(at + 20), size: Math.min(head.readUInt32LE(at + 8), head.readUInt32LE(at + 16)) };
  });
}

/** Finds the UKI in `path` (a UKI, or an ISO holding one) and its initrd and cmdline. */
export async function locateBootImage(path: string): Promise<BootImage> {
  const file = await open(path, 'r');
  try {
    const { size: fileSize } = await file.stat();
    const magic = await readAt(file, 0, 2);
    const uki = magic.toString('latin1') === 'MZ' ? { offset: 0, size: fileSize } : await isoFile(file, UKI_IN_ISO);
    const sections = peSections(await readAt(file, uki.offset, Math.min(uki.size, 64 * 1024)));
    const section = (name: string) => {
      const s = sections.find((x) => x.name === name);
      if (!s) throw new Error(`the UKI has no ${name} section`);
      return { offset: uki.offset + s.rawPointer, size: s.size };
    };
    const initrd = section('.initrd');
    const cmd = section('.cmdline');
    const cmdline = (await readAt(file, cmd.offset, cmd.size)).toString('utf8').replace(/\0.*$/s, '').trim();
    return { initrd, cmdline };
  } finally {
    await file.close();
  }
}
