// The TPM PCR 11 value a UKI leaves behind, computed in advance. systemd-stub (Debian's 252) extends
// PCR 11 once with the SHA-256 of each present section's name (NUL included) and once with the SHA-256
// of its bytes as loaded: VirtualSize of them, so .linux counts the zeros up to the kernel's SizeOfImage.
// systemd-pcrphase then extends the SHA-256 of each boot-phase word. systemd-measure computes the same
// from files; test/unit/pcr11.test.ts holds the two against each other.
import { createHash, type Hash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { CHUNK_BYTES, segmentLength, type Segment } from './segments.js';

/** The sections systemd-stub 252 measures, in its order (.pcrsig never: it is computed from this value). */
export const STUB_MEASURED_SECTIONS = ['.linux', '.osrel', '.cmdline', '.initrd', '.splash', '.dtb', '.pcrpkey'] as const;

export interface MeasuredSection {
  name: string;
  /** SHA-256 of the section as the firmware loaded it. */
  sha256: Buffer;
}

export interface Pcr11Value {
  /** The boot phases extended after the stub's measurements, colon-separated ('' for none). */
  phase: string;
  /** Hex of the SHA-256 bank's PCR 11. */
  sha256: string;
}

const PCR_BYTES = 32;

function extend(pcr: Buffer, digest: Buffer): Buffer {
  return createHash('sha256').update(pcr).update(digest).digest();
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest();

/** PCR 11 after the stub measured `sections` (any order: the stub's own order is applied) and each phase in `phases` followed. */
export function predictPcr11(sections: MeasuredSection[], phases: string[][]): Pcr11Value[] {
  let pcr: Buffer = Buffer.alloc(PCR_BYTES);
  for (const name of STUB_MEASURED_SECTIONS) {
    const section = sections.find((s) => s.name === name);
    if (section === undefined) continue;
    pcr = extend(pcr, sha256(Buffer.from(`${name}\0`, 'latin1')));
    pcr = extend(pcr, section.sha256);
  }
  return phases.map((words) => ({
    phase: words.join(':'),
    sha256: words.reduce((value, word) => extend(value, sha256(word)), pcr).toString('hex'),
  }));
}

/**
 * SHA-256 of `segments` cut or zero-padded to `length` bytes. The hash state after a leading file
 * (the kernel, the base initramfs) is kept for the next build that starts with the same file.
 */
export async function digestSegments(segments: Segment[], length: number): Promise<Buffer> {
  let hash: Hash | undefined;
  let hashed = 0;
  let rest = segments;
  const [first] = segments;
  if (first !== undefined && 'file' in first && first.size <= length) {
    hash = await fileHashState(first.file, first.size);
    hashed = first.size;
    rest = segments.slice(1);
  }
  hash ??= createHash('sha256');
  for (const segment of rest) {
    if (hashed >= length) break;
    const take = Math.min(segmentLength(segment), length - hashed);
    if ('bytes' in segment) hash.update(segment.bytes.subarray(0, take));
    else if ('zeros' in segment) updateZeros(hash, take);
    else await hashFile(hash, segment.file, take);
    hashed += take;
  }
  updateZeros(hash, length - hashed);
  return hash.digest();
}

function updateZeros(hash: Hash, count: number): void {
  const zeros = Buffer.alloc(Math.min(count, CHUNK_BYTES));
  for (let left = count; left > 0; left -= zeros.length) hash.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
}

async function hashFile(hash: Hash, path: string, length: number): Promise<void> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let at = 0; at < length; ) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(CHUNK_BYTES, length - at), at);
      if (bytesRead === 0) throw new Error(`${path} is shorter than ${length} bytes`);
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
  } finally {
    await file.close();
  }
}

/** One entry per file: a replaced base file (new size, mtime or inode) is hashed again. */
const fileStates = new Map<string, { key: string; state: Hash }>();

async function fileHashState(path: string, size: number): Promise<Hash> {
  const info = await stat(path);
  if (info.size !== size) throw new Error(`${path} changed while being measured (expected ${size} bytes, found ${info.size})`);
  const key = `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}`;
  const cached = fileStates.get(path);
  if (cached?.key === key) return cached.state.copy();
  const state = createHash('sha256');
  await hashFile(state, path, size);
  fileStates.set(path, { key, state: state.copy() });
  return state;
}
