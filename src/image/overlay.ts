// Turns the files and directory overrides of a build request into the per-server overlay:
// a gzip-compressed newc archive that the kernel unpacks on top of the base initramfs.
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { encodeNewc, type CpioEntry } from './cpio.js';

const gzipAsync = promisify(gzip);

export interface OverlayFile {
  /** Absolute, already validated and normalized, e.g. "/root/.ssh/authorized_keys". */
  path: string;
  content?: Buffer;
  /** When set, the entry is a symlink to this target instead of a regular file. */
  linkTarget?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Attributes for parent directories this file makes the overlay create. */
  dirMode?: number;
  dirUid?: number;
  dirGid?: number;
}

export interface OverlayDirOverride {
  path: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

const DEFAULT_DIR_MODE = 0o755;
const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_SYMLINK_MODE = 0o777;

interface DirAttrs {
  mode?: number;
  uid?: number;
  gid?: number;
}

function checkAbsolute(path: string): void {
  if (!path.startsWith('/') || path === '/' || path.endsWith('/') || path.includes('//')) {
    throw new Error(`overlay: path ${JSON.stringify(path)} is not a normalized absolute path below /`);
  }
}

/** "/a/b/c" -> ["/a", "/a/b"] */
function parentsOf(path: string): string[] {
  const parents: string[] = [];
  for (let i = path.indexOf('/', 1); i !== -1; i = path.indexOf('/', i + 1)) {
    parents.push(path.slice(0, i));
  }
  return parents;
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The overlay's entries in archive order: every parent directory of every file has its own
 * entry (the kernel silently drops a file whose parent directory does not exist yet), and
 * a directory always comes before its children because paths are sorted by UTF-8 bytes and
 * a parent is a prefix of its children.
 *
 * A directory's attributes come from, in order of precedence: its dirOverride; the first
 * file (in path order) that needs it and specifies dirMode / dirUid / dirGid (each field
 * on its own, so a file that says nothing does not reset what another one asked for);
 * 0755 root:root.
 */
export function overlayEntries(files: OverlayFile[], dirOverrides: OverlayDirOverride[]): CpioEntry[] {
  const sortedFiles = [...files].sort((a, b) => byteOrder(a.path, b.path));
  const dirs = new Map<string, DirAttrs>();

  for (const file of sortedFiles) {
    checkAbsolute(file.path);
    for (const dir of parentsOf(file.path)) {
      const attrs = dirs.get(dir) ?? {};
      attrs.mode ??= file.dirMode;
      attrs.uid ??= file.dirUid;
      attrs.gid ??= file.dirGid;
      dirs.set(dir, attrs);
    }
  }
  for (const override of dirOverrides) {
    checkAbsolute(override.path);
    for (const dir of parentsOf(override.path)) {
      if (!dirs.has(dir)) dirs.set(dir, {});
    }
    const attrs = dirs.get(override.path) ?? {};
    dirs.set(override.path, {
      mode: override.mode ?? attrs.mode,
      uid: override.uid ?? attrs.uid,
      gid: override.gid ?? attrs.gid,
    });
  }

  const fileEntries = new Map<string, CpioEntry>();
  for (const file of sortedFiles) {
    if (dirs.has(file.path)) {
      throw new Error(`overlay: ${file.path} is both a file and a directory`);
    }
    if (fileEntries.has(file.path)) {
      throw new Error(`overlay: ${file.path} appears twice`);
    }
    const symlink = file.linkTarget !== undefined;
    fileEntries.set(file.path, {
      name: file.path.slice(1),
      type: symlink ? 'symlink' : 'file',
      mode: file.mode ?? (symlink ? DEFAULT_SYMLINK_MODE : DEFAULT_FILE_MODE),
      uid: file.uid ?? 0,
      gid: file.gid ?? 0,
      ...(symlink ? { linkTarget: file.linkTarget } : { data: file.content ?? Buffer.alloc(0) }),
    });
  }

  const entries: Array<[string, CpioEntry]> = [...fileEntries];
  for (const [path, attrs] of dirs) {
    entries.push([
      path,
      {
        name: path.slice(1),
        type: 'dir',
        mode: attrs.mode ?? DEFAULT_DIR_MODE,
        uid: attrs.uid ?? 0,
        gid: attrs.gid ?? 0,
      },
    ]);
  }
  entries.sort(([a], [b]) => byteOrder(a, b));
  return entries.map(([, entry]) => entry);
}

/** gzip(newc(overlayEntries(...))). Node's gzip writes mtime 0, so equal input gives equal bytes. */
export async function buildOverlay(files: OverlayFile[], dirOverrides: OverlayDirOverride[]): Promise<Buffer> {
  return gzipAsync(encodeNewc(overlayEntries(files, dirOverrides)), { level: 9 });
}
