import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeNewc } from '../../src/image/cpio.js';
import { writeInitramfs } from '../../src/image/initramfs.js';
import { buildOverlay, overlayEntries, type OverlayFile } from '../../src/image/overlay.js';
import { extract, listVerbose, runningAsRoot } from '../support/gnu-cpio.js';

const summary = (files: OverlayFile[], overrides: Parameters<typeof overlayEntries>[1] = []) =>
  overlayEntries(files, overrides).map((e) => `${e.type} ${e.name} ${e.mode.toString(8)} ${e.uid}:${e.gid}`);

describe('overlayEntries', () => {
  it('creates every parent directory with 0755 root:root, before its children, in byte order', () => {
    expect(
      summary([
        { path: '/var/lib/cloud/seed/nocloud/user-data', content: Buffer.from('#cloud-config\n') },
        { path: '/etc/uod/checkin-url', content: Buffer.from('http://x') },
        { path: '/etc-z', content: Buffer.from('') },
      ]),
    ).toEqual([
      'dir etc 755 0:0',
      'file etc-z 644 0:0',
      'dir etc/uod 755 0:0',
      'file etc/uod/checkin-url 644 0:0',
      'dir var 755 0:0',
      'dir var/lib 755 0:0',
      'dir var/lib/cloud 755 0:0',
      'dir var/lib/cloud/seed 755 0:0',
      'dir var/lib/cloud/seed/nocloud 755 0:0',
      'file var/lib/cloud/seed/nocloud/user-data 644 0:0',
    ]);
  });

  it('uses file defaults 0644 and symlink defaults 0777, and the given mode and owner', () => {
    const entries = overlayEntries(
      [
        { path: '/a', content: Buffer.from('x') },
        { path: '/b', linkTarget: '/a' },
        { path: '/c', content: Buffer.from('y'), mode: 0o4750, uid: 10, gid: 20 },
        { path: '/d' },
      ],
      [],
    );
    expect(entries).toEqual([
      { name: 'a', type: 'file', mode: 0o644, uid: 0, gid: 0, data: Buffer.from('x') },
      { name: 'b', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkTarget: '/a' },
      { name: 'c', type: 'file', mode: 0o4750, uid: 10, gid: 20, data: Buffer.from('y') },
      { name: 'd', type: 'file', mode: 0o644, uid: 0, gid: 0, data: Buffer.alloc(0) },
    ]);
  });

  it('gives auto-created directories the dirMode/dirUid/dirGid of the first file (in path order) that asks', () => {
    expect(
      summary([
        // Listed out of order on purpose: "/root/.ssh/b" sorts after "/root/.ssh/a".
        { path: '/root/.ssh/b', content: Buffer.from('b'), dirMode: 0o750, dirUid: 5 },
        { path: '/root/.ssh/a', content: Buffer.from('a'), dirMode: 0o700 },
        { path: '/srv/x', content: Buffer.from('x'), dirGid: 9 },
      ]),
    ).toEqual([
      'dir root 700 5:0',
      'dir root/.ssh 700 5:0',
      'file root/.ssh/a 644 0:0',
      'file root/.ssh/b 644 0:0',
      'dir srv 755 0:9',
      'file srv/x 644 0:0',
    ]);
  });

  it('lets a dirOverride win, and creates overridden directories (and their parents) no file needs', () => {
    expect(
      summary(
        [{ path: '/root/.ssh/authorized_keys', content: Buffer.from('k'), mode: 0o600, dirMode: 0o711, dirUid: 3, dirGid: 3 }],
        [
          { path: '/root/.ssh', mode: 0o700 },
          { path: '/opt/empty/dir', mode: 0o1777, uid: 1, gid: 2 },
        ],
      ),
    ).toEqual([
      'dir opt 755 0:0',
      'dir opt/empty 755 0:0',
      'dir opt/empty/dir 1777 1:2',
      'dir root 711 3:3',
      'dir root/.ssh 700 3:3',
      'file root/.ssh/authorized_keys 600 0:0',
    ]);
  });

  it('sorts by UTF-8 bytes, not UTF-16 units', () => {
    // U+FF5E (3 UTF-8 bytes, one UTF-16 unit) sorts before U+1F600 (4 bytes, a surrogate pair) in both,
    // but U+E000 (private use) sorts after a surrogate pair in UTF-16 and before it in UTF-8.
    const names = summary([{ path: '/\u{1F600}' }, { path: '/\uE000' }]).map((s) => s.split(' ')[1]);
    expect(names).toEqual(['\uE000', '\u{1F600}']);
  });

  it('rejects paths that are not normalized absolute paths, and a path that is both file and directory', () => {
    expect(() => overlayEntries([{ path: 'relative' }], [])).toThrow(/absolute/);
    expect(() => overlayEntries([{ path: '/a/' }], [])).toThrow(/absolute/);
    expect(() => overlayEntries([], [{ path: '/' }])).toThrow(/absolute/);
    expect(() => overlayEntries([{ path: '/a' }, { path: '/a/b' }], [])).toThrow(/both a file and a directory/);
  });

  it('always lists a parent before its children, for any set of paths', () => {
    const segment = fc.stringMatching(/^[a-z.\-_ é✓]{1,4}$/).filter((s) => s !== '.' && s !== '..');
    const path = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => '/' + parts.join('/'));
    fc.assert(
      fc.property(fc.uniqueArray(path, { maxLength: 12 }), fc.uniqueArray(path, { maxLength: 4 }), (filePaths, dirPaths) => {
        const dirSet = new Set<string>();
        for (const p of [...filePaths, ...dirPaths]) {
          const parts = p.split('/');
          for (let i = 2; i < parts.length; i++) dirSet.add(parts.slice(0, i).join('/'));
        }
        for (const d of dirPaths) dirSet.add(d);
        const files = filePaths.filter((p) => !dirSet.has(p)).map((p) => ({ path: p }));
        const entries = overlayEntries(files, dirPaths.map((p) => ({ path: p })));
        const seen = new Set<string>();
        for (const e of entries) {
          const parent = e.name.includes('/') ? e.name.slice(0, e.name.lastIndexOf('/')) : null;
          if (parent !== null) {
            expect(seen.has(parent)).toBe(true);
          }
          expect(seen.has(e.name)).toBe(false);
          seen.add(e.name);
        }
        expect(seen.size).toBe(files.length + dirSet.size);
      }),
      { numRuns: 200 },
    );
  });
});

describe('buildOverlay', () => {
  const files: OverlayFile[] = [
    { path: '/root/.ssh/authorized_keys', content: Buffer.from('ssh-ed25519 AAAA\n'), mode: 0o600, dirMode: 0o700 },
    { path: '/var/lib/cloud/seed/nocloud/meta-data', content: Buffer.from('instance-id: x\n') },
    { path: '/usr/local/bin/tool', linkTarget: '/bin/true' },
    { path: '/home/ü/file', content: Buffer.from('u'), uid: 1000, gid: 1000, dirUid: 1000, dirGid: 1000 },
  ];
  const overrides = [{ path: '/root', mode: 0o750 }];

  it('is gzip of the newc encoding of overlayEntries, byte for byte the same on every call', async () => {
    const a = await buildOverlay(files, overrides);
    const b = await buildOverlay(files, overrides);
    expect(a.equals(b)).toBe(true);
    expect(a.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(gunzipSync(a).equals(encodeNewc(overlayEntries(files, overrides)))).toBe(true);
  });

  it('unpacks with GNU cpio to the requested tree', async () => {
    const archive = gunzipSync(await buildOverlay(files, overrides));
    const tree = await extract(archive);
    expect(tree.get('root')).toMatchObject({ type: 'dir', mode: 0o750 });
    expect(tree.get('root/.ssh')).toMatchObject({ type: 'dir', mode: 0o700 });
    expect(tree.get('root/.ssh/authorized_keys')).toMatchObject({ type: 'file', mode: 0o600, content: Buffer.from('ssh-ed25519 AAAA\n') });
    expect(tree.get('var/lib/cloud/seed/nocloud')).toMatchObject({ type: 'dir', mode: 0o755 });
    expect(tree.get('usr/local/bin/tool')).toMatchObject({ type: 'symlink', linkTarget: '/bin/true' });
    if (runningAsRoot) {
      expect(tree.get('home/ü')).toMatchObject({ uid: 1000, gid: 1000 });
      expect(tree.get('home')).toMatchObject({ uid: 1000, gid: 1000 });
    }
    const listed = await listVerbose(archive);
    expect(listed.find((e) => e.name === 'home/ü/file')).toMatchObject({ uid: 1000, gid: 1000, modeString: '-rw-r--r--' });
  });
});

describe('writeInitramfs', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'initramfs-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const extra of [0, 1, 2, 3]) {
    it(`pads a base of length 4k+${extra} to a multiple of 4 before the overlay`, async () => {
      const base = Buffer.alloc(4096 + extra, 0xab);
      const overlay = await buildOverlay([{ path: '/etc/x', content: Buffer.from('x') }], []);
      const basePath = join(dir, `base-${extra}`);
      const outPath = join(dir, `out-${extra}`);
      await writeFile(basePath, base);
      const { bytes } = await writeInitramfs(basePath, overlay, outPath);
      const out = await readFile(outPath);
      const padding = (4 - extra) % 4;
      expect(bytes).toBe(out.length);
      expect(out.length).toBe(base.length + padding + overlay.length);
      expect(out.subarray(0, base.length).equals(base)).toBe(true);
      expect(out.subarray(base.length, base.length + padding).equals(Buffer.alloc(padding))).toBe(true);
      expect((out.length - overlay.length) % 4).toBe(0);
      expect(out.subarray(out.length - overlay.length).equals(overlay)).toBe(true);
    });
  }

  it('copies the base unchanged when there is no overlay', async () => {
    const base = Buffer.from('abcde');
    await writeFile(join(dir, 'plain'), base);
    expect(await writeInitramfs(join(dir, 'plain'), null, join(dir, 'plain-out'))).toEqual({ bytes: 5 });
    expect(await readFile(join(dir, 'plain-out'))).toEqual(base);
  });

  it('copies a base larger than one copy chunk intact', async () => {
    const base = Buffer.alloc(3 * 1024 * 1024 + 3);
    for (let i = 0; i + 4 <= base.length; i += 4096) base.writeUInt32LE(i, i);
    await writeFile(join(dir, 'big'), base);
    const overlay = Buffer.from('OVERLAY');
    await writeInitramfs(join(dir, 'big'), overlay, join(dir, 'big-out'));
    const out = await readFile(join(dir, 'big-out'));
    expect(out.subarray(0, base.length).equals(base)).toBe(true);
    expect(out.subarray(base.length + 1).equals(overlay)).toBe(true);
  });

  it('stops when cancelled', async () => {
    await writeFile(join(dir, 'c'), 'x');
    const controller = new AbortController();
    controller.abort(new Error('cancelled by test'));
    await expect(writeInitramfs(join(dir, 'c'), null, join(dir, 'c-out'), controller.signal)).rejects.toThrow('cancelled by test');
  });
});
