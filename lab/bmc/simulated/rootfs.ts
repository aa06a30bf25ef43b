// A simulated server's root: the base initramfs unpacked once for the whole lab (overlayfs' lower
// directory, shared by every container), and per boot an upper directory holding exactly the overlay
// the artifact carries after the base (its cloud-init seed, keys, checkin settings).
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The base initramfs every artifact starts with, and where it is unpacked. */
export interface BaseRoot {
  initramfs: string;
  size: number;
  sha256: string;
  lowerDir: string;
}

const DECOMPRESSORS: { magic: Buffer; argv: string[] }[] = [
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), argv: ['zstd', '-dcq'] },
  { magic: Buffer.from([0x1f, 0x8b]), argv: ['gzip', '-dc'] },
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a]), argv: ['xz', '-dc'] },
  { magic: Buffer.from('070701'), argv: ['cat'] },
];

async function magicAt(file: string, position: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(6);
    const { bytesRead } = await fh.read(buf, 0, 6, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Unpacks the (compressed) cpio archive at bytes [start, end] of `file` into `dir`, as root. */
async function unpackCpio(file: string, start: number, end: number, dir: string): Promise<void> {
  const magic = await magicAt(file, start);
  const decompressor = DECOMPRESSORS.find((d) => magic.subarray(0, d.magic.length).equals(d.magic));
  if (!decompressor) throw new Error(`the archive at byte ${start} is not a zstd, gzip, xz or newc cpio archive`);
  await mkdir(dir, { recursive: true });
  const [cmd, ...args] = decompressor.argv as [string, ...string[]];
  const decomp = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  const cpio = spawn('cpio', ['-idmu', '--quiet', '--no-absolute-filenames'], { cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
  let errors = '';
  decomp.stderr!.on('data', (d: Buffer) => (errors += d));
  cpio.stderr!.on('data', (d: Buffer) => (errors += d));
  const exited = (p: ReturnType<typeof spawn>) => new Promise<number>((resolve) => p.once('close', (code) => resolve(code ?? -1)));
  const codes = Promise.all([exited(decomp), exited(cpio)]);
  decomp.stdout!.pipe(cpio.stdin!);
  await pipeline(createReadStream(file, { start, end }), decomp.stdin!);
  const [d, c] = await codes;
  if (d !== 0 || c !== 0) throw new Error(`unpacking ${file} bytes ${start}-${end}: ${errors.trim() || `exit ${d}/${c}`}`);
}

async function sha256(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Unpacks the base initramfs into `lowerDir` (the lab does this once, before its BMCs start). */
export async function unpackBase(initramfs: string, lowerDir: string): Promise<BaseRoot> {
  const { size } = await stat(initramfs);
  await unpackCpio(initramfs, 0, size - 1, lowerDir);
  return { initramfs, size, sha256: await sha256(createReadStream(initramfs)), lowerDir };
}

/**
 * Checks that the initramfs at `initrd` in `file` starts with the base, byte for byte, then unpacks
 * the overlay after it into `upperDir`. A simulated server runs only artifacts built on the lab's base.
 */
export async function unpackOverlay(file: string, initrd: { offset: number; size: number }, base: BaseRoot, upperDir: string): Promise<void> {
  if (initrd.size < base.size) throw new Error(`the initramfs (${initrd.size} bytes) is smaller than the base (${base.size} bytes)`);
  const prefix = await sha256(createReadStream(file, { start: initrd.offset, end: initrd.offset + base.size - 1 }));
  if (prefix !== base.sha256) throw new Error(`the initramfs does not start with the base initramfs ${base.initramfs}: a simulated server runs only artifacts built on it`);
  await mkdir(upperDir, { recursive: true });
  const overlayStart = initrd.offset + base.size + ((4 - (base.size % 4)) % 4);
  const end = initrd.offset + initrd.size - 1;
  if (overlayStart <= end) await unpackCpio(file, overlayStart, end, upperDir);
}

/** Mounts lower ∪ upper at `merged` (overlayfs; `work` is its scratch directory). */
export async function mountRoot(lowerDir: string, upperDir: string, workDir: string, merged: string): Promise<void> {
  await Promise.all([mkdir(upperDir, { recursive: true }), mkdir(workDir, { recursive: true }), mkdir(merged, { recursive: true })]);
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowerDir},upperdir=${upperDir},workdir=${workDir}`, merged]);
}

/** Unmounts `merged` if mounted, and removes what one boot wrote (a RAM disk is gone at power-off). */
export async function removeRoot(bootDir: string, merged: string): Promise<void> {
  await run('umount', ['-l', merged]).catch(() => undefined);
  // Never delete through a mount: the root may be a disk's partition.
  if (await run('mountpoint', ['-q', merged]).then(() => true, () => false)) throw new Error(`${merged} is still mounted`);
  await rm(bootDir, { recursive: true, force: true });
}
