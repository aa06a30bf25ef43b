import { describe, expect, it } from 'vitest';
import { encodeNewc, type CpioEntry } from '../../src/image/cpio.js';
import { extract, listVerbose, runningAsRoot } from '../support/gnu-cpio.js';

const utf8Dir = 'données';
const utf8File = 'données/ключ ✓.txt';

const entries: CpioEntry[] = [
  { name: 'etc', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
  { name: 'etc/one', type: 'file', mode: 0o644, uid: 0, gid: 0, data: Buffer.from('1') },
  { name: 'etc/three', type: 'file', mode: 0o600, uid: 1000, gid: 1001, data: Buffer.from('333') },
  { name: 'etc/empty', type: 'file', mode: 0o640, uid: 7, gid: 8 },
  { name: 'etc/five', type: 'file', mode: 0o4755, uid: 0, gid: 0, data: Buffer.from('55555') },
  { name: 'etc/link', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkTarget: '/etc/three' },
  { name: 'private', type: 'dir', mode: 0o700, uid: 65534, gid: 100 },
  { name: utf8Dir, type: 'dir', mode: 0o1777, uid: 0, gid: 0 },
  { name: utf8File, type: 'file', mode: 0o644, uid: 0, gid: 0, data: Buffer.from('é') },
];

/** An independent, minimal newc reader: returns header fields and where each member starts. */
function parseNewc(archive: Buffer) {
  const members: Array<{ offset: number; ino: number; mode: number; nlink: number; mtime: number; size: number; nameSize: number; name: string }> = [];
  let at = 0;
  for (;;) {
    expect(at % 4).toBe(0);
    expect(archive.toString('ascii', at, at + 6)).toBe('070701');
    const field = (i: number) => parseInt(archive.toString('ascii', at + 6 + i * 8, at + 14 + i * 8), 16);
    const nameSize = field(11);
    const size = field(6);
    const name = archive.toString('utf8', at + 110, at + 110 + nameSize - 1);
    expect(archive[at + 110 + nameSize - 1]).toBe(0);
    members.push({ offset: at, ino: field(0), mode: field(1), nlink: field(4), mtime: field(5), size, nameSize, name });
    const dataStart = Math.ceil((at + 110 + nameSize) / 4) * 4;
    at = Math.ceil((dataStart + size) / 4) * 4;
    if (name === 'TRAILER!!!') break;
  }
  return { members, end: at };
}

describe('encodeNewc', () => {
  const archive = encodeNewc(entries);

  it('is listed by GNU cpio with the given types, modes, owners, sizes and order', async () => {
    const listed = await listVerbose(archive);
    expect(listed.map((e) => e.name)).toEqual(entries.map((e) => e.name));
    expect(listed.map((e) => e.modeString)).toEqual([
      'drwxr-xr-x',
      '-rw-r--r--',
      '-rw-------',
      '-rw-r-----',
      '-rwsr-xr-x',
      'lrwxrwxrwx',
      'drwx------',
      'drwxrwxrwt',
      '-rw-r--r--',
    ]);
    expect(listed.map((e) => [e.uid, e.gid])).toEqual(entries.map((e) => [e.uid, e.gid]));
    expect(listed.map((e) => e.size)).toEqual([0, 1, 3, 0, 5, '/etc/three'.length, 0, 0, 2]);
    expect(listed.map((e) => e.nlink)).toEqual([2, 1, 1, 1, 1, 1, 2, 2, 1]);
    expect(listed.find((e) => e.name === 'etc/link')?.linkTarget).toBe('/etc/three');
  });

  it('extracts with GNU cpio to the same tree (contents, symlinks, UTF-8 names, modes, owners)', async () => {
    const tree = await extract(archive);
    expect([...tree.keys()].sort()).toEqual(entries.map((e) => e.name).sort());
    for (const entry of entries) {
      const got = tree.get(entry.name)!;
      expect(got.type, entry.name).toBe(entry.type);
      if (entry.type === 'file') expect(got.content, entry.name).toEqual(entry.data ?? Buffer.alloc(0));
      if (entry.type === 'symlink') expect(got.linkTarget).toBe(entry.linkTarget);
      if (entry.type !== 'symlink') expect(got.mode.toString(8), entry.name).toBe(entry.mode.toString(8));
      if (runningAsRoot) expect([got.uid, got.gid], entry.name).toEqual([entry.uid, entry.gid]);
    }
  });

  it('writes sequential inodes, mtime 0, byte-counted names and 4-byte alignment, then the trailer', () => {
    const { members, end } = parseNewc(archive);
    expect(end).toBe(archive.length);
    expect(members.map((m) => m.ino)).toEqual([...entries.map((_, i) => i + 1), 0]);
    expect(members.every((m) => m.mtime === 0)).toBe(true);
    const utf8 = members.find((m) => m.name === utf8File)!;
    expect(utf8.nameSize).toBe(Buffer.byteLength(utf8File, 'utf8') + 1);
    expect(utf8.nameSize).toBeGreaterThan(utf8File.length + 1);
    expect(members.at(-1)).toMatchObject({ name: 'TRAILER!!!', size: 0, mode: 0 });
    expect(members.find((m) => m.name === 'etc/five')!.mode).toBe(0o104755);
  });

  it('gives identical bytes for identical input', () => {
    expect(encodeNewc(entries).equals(archive)).toBe(true);
  });

  it('encodes an empty list as a lone trailer that GNU cpio accepts', async () => {
    const empty = encodeNewc([]);
    expect(empty.length % 4).toBe(0);
    expect(await listVerbose(empty)).toEqual([]);
  });

  it('rejects what the format cannot express or the kernel would misread', () => {
    const file = { type: 'file', mode: 0o644, uid: 0, gid: 0 } as const;
    expect(() => encodeNewc([{ ...file, name: '/abs' }])).toThrow(/relative/);
    expect(() => encodeNewc([{ ...file, name: '' }])).toThrow(/relative/);
    expect(() => encodeNewc([{ ...file, name: 'x', mode: 0o100644 }])).toThrow(/permission bits/);
    expect(() => encodeNewc([{ ...file, name: 'x', uid: -1 }])).toThrow(/uid/);
    expect(() => encodeNewc([{ ...file, name: 'x', gid: 2 ** 32 }])).toThrow(/gid/);
    expect(() => encodeNewc([{ ...file, name: 'x', type: 'symlink' }])).toThrow(/linkTarget/);
    expect(() => encodeNewc([{ ...file, name: 'TRAILER!!!' }])).toThrow(/reserved/);
  });
});
