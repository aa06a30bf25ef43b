// What the reliability tests stand on: scratch roots that are removed afterwards, base-artifact
// directories with filler initramfs images, file digests, directory snapshots.
import { createHash, randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BASE_ARTIFACTS } from '../support/service.js';

const roots: string[] = [];

/** A fresh directory under the system temp dir, removed by removeTempRoots(). */
export function tempRoot(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `uod-rel-${prefix}-`));
  roots.push(dir);
  return dir;
}

export function removeTempRoots(): void {
  for (const dir of roots.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** A real PE32+ x86-64 EFI program far smaller than a kernel: it stands in for one where only size matters. */
export const SMALL_EFI_PROGRAM = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi';

export interface BaseDirOptions {
  /** name → size in MiB of incompressible filler "initramfs" images. */
  fillers?: Record<string, number>;
  /** Adds a "vmlinuz-small" kernel (see SMALL_EFI_PROGRAM). */
  smallKernel?: boolean;
}

/**
 * A base-artifacts directory: vmlinuz-amd64 and initramfs-tiny-amd64.img linked from base-artifacts/out,
 * plus fillers that make builds take a moment and occupy real space.
 */
export function makeBaseDir(dir: string, opts: BaseDirOptions = {}): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const name of ['vmlinuz-amd64', 'initramfs-tiny-amd64.img']) {
    fs.symlinkSync(path.join(BASE_ARTIFACTS, name), path.join(dir, name));
  }
  if (opts.smallKernel) fs.symlinkSync(SMALL_EFI_PROGRAM, path.join(dir, 'vmlinuz-small'));
  const chunk = Buffer.alloc(1024 * 1024);
  for (const [name, mib] of Object.entries(opts.fillers ?? {})) {
    const fd = fs.openSync(path.join(dir, name), 'w');
    try {
      for (let i = 0; i < mib; i++) fs.writeSync(fd, randomFillSync(chunk));
    } finally {
      fs.closeSync(fd);
    }
  }
  return dir;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Every path under `dir` (relative) with its type, size and mode: two snapshots differ exactly when
 * something was created, removed or rewritten with a different size or mode.
 */
export function snapshotTree(dir: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      if (skip(r)) continue;
      const st = fs.lstatSync(path.join(dir, r));
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : st.isFile() ? 'file' : 'other';
      out.set(r, `${type} ${type === 'dir' ? 0 : st.size} ${(st.mode & 0o7777).toString(8)}`);
      if (type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

export function diffSnapshots(before: Map<string, string>, after: Map<string, string>): string[] {
  const changes: string[] = [];
  for (const [p, v] of after) if (before.get(p) !== v) changes.push(`${before.has(p) ? 'changed' : 'added'}: ${p} (${v})`);
  for (const p of before.keys()) if (!after.has(p)) changes.push(`removed: ${p}`);
  return changes;
}

/**
 * True for the errors a client sees when the server process dies under it: the connection was reset or
 * closed mid-request (undici: UND_ERR_SOCKET "other side closed"; node:http: "socket hang up"), or
 * nothing listens any more. Anything else (a timeout, a bad answer, a failed assertion) is not.
 */
export function isConnectionError(err: unknown): boolean {
  let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 5; depth++, e = e.cause as typeof e) {
    if (e.code === 'ECONNRESET' || e.code === 'ECONNREFUSED' || e.code === 'EPIPE' || e.code === 'UND_ERR_SOCKET') return true;
    if (e.message === 'socket hang up') return true;
  }
  return false;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Deterministic pseudo-random numbers (mulberry32): a failing run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
