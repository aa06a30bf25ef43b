// Reads cpio archives with GNU cpio, an implementation independent of ours: the verbose listing
// (`cpio -itv -n`) and a real extraction whose result is inspected with lstat.
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export interface ListedEntry {
  modeString: string;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  name: string;
  linkTarget?: string;
}

const LINE = /^(\S{10})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\w{3}\s+\d+\s+(?:\d{4}|\d\d:\d\d)\s(.*)$/;

/** `cpio -itv -n`: one entry per member, in archive order. */
export async function listVerbose(archive: Buffer): Promise<ListedEntry[]> {
  const { stdout } = await execa('cpio', ['-itv', '-n', '--quiet'], { input: archive, env: { LC_ALL: 'C.UTF-8', TZ: 'UTC' } });
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const m = LINE.exec(line);
      if (!m) throw new Error(`unexpected cpio listing line: ${line}`);
      const [, modeString, nlink, uid, gid, size, rest] = m as unknown as [string, string, string, string, string, string, string];
      const entry: ListedEntry = { modeString, nlink: +nlink, uid: +uid, gid: +gid, size: +size, name: rest };
      if (modeString.startsWith('l')) {
        const arrow = rest.indexOf(' -> ');
        entry.name = rest.slice(0, arrow);
        entry.linkTarget = rest.slice(arrow + 4);
      }
      return entry;
    });
}

export interface ExtractedEntry {
  type: 'dir' | 'file' | 'symlink';
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  content?: Buffer;
  linkTarget?: string;
}

/**
 * Extracts with `cpio -idm --no-absolute-filenames` into a fresh directory and returns every
 * path found there (relative, '/'-separated). Owners are only restored when running as root.
 */
export async function extract(archive: Buffer): Promise<Map<string, ExtractedEntry>> {
  const dir = await mkdtemp(join(tmpdir(), 'gnu-cpio-'));
  await execa('cpio', ['-idm', '--no-absolute-filenames', '--quiet'], { input: archive, cwd: dir });
  const found = new Map<string, ExtractedEntry>();
  async function walk(rel: string): Promise<void> {
    for (const name of await readdir(join(dir, rel))) {
      const relPath = rel === '' ? name : `${rel}/${name}`;
      const abs = join(dir, relPath);
      const st = await lstat(abs);
      const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (st.isDirectory()) {
        found.set(relPath, { type: 'dir', ...base });
        await walk(relPath);
      } else if (st.isSymbolicLink()) {
        found.set(relPath, { type: 'symlink', ...base, linkTarget: await readlink(abs) });
      } else {
        found.set(relPath, { type: 'file', ...base, content: await readFile(abs) });
      }
    }
  }
  try {
    await walk('');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return found;
}

export const runningAsRoot = process.getuid?.() === 0;
