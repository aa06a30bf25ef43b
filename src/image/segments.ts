// Files made of pieces (in-memory bytes, runs of zeros, other files), written in one pass: the
// writers that splice big inputs (initramfs, UKI, ISO) all go through writeFileFromSegments.
import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { writeAllAt } from '../storage/write-all.js';

// 1 MiB chunks: as fast as cp on page-cached files here, while keeping memory flat.
export const CHUNK_BYTES = 1024 * 1024;

export type Segment =
  | { bytes: Uint8Array }
  | { zeros: number }
  /** `size` guards against a file that changes while it is being copied. */
  | { file: string; size: number };

/** A file as written: its size, and its SHA-256 when asked for. */
export interface WrittenFile {
  bytes: number;
  sha256?: string;
}

export function segmentLength(segment: Segment): number {
  if ('bytes' in segment) return segment.bytes.length;
  if ('zeros' in segment) return segment.zeros;
  return segment.size;
}

/**
 * Writes `segments` one after the other as the file `path` (created or truncated), in large chunks,
 * checking `signal` between chunks; with `digest`, hashes what it writes on the way.
 */
export async function writeFileFromSegments(
  path: string,
  segments: Segment[],
  options: { signal?: AbortSignal; digest?: boolean } = {},
): Promise<WrittenFile> {
  options.signal?.throwIfAborted();
  const hash = options.digest ? createHash('sha256') : undefined;
  const out = await open(path, 'w');
  try {
    const bytes = await writeSegments(out, segments, options.signal, hash);
    return { bytes, sha256: hash?.digest('hex') };
  } finally {
    await out.close();
  }
}

/** While a chunk is being written the next one is already being read. */
async function writeSegments(out: FileHandle, segments: Segment[], signal: AbortSignal | undefined, hash: Hash | undefined): Promise<number> {
  let at = 0;
  const emit = async (data: Uint8Array) => {
    signal?.throwIfAborted();
    // Hash while the write runs on the thread pool: the two overlap instead of adding up.
    const writing = writeAllAt(out, data, at);
    hash?.update(data);
    await writing;
    at += data.length;
  };
  for (const segment of segments) {
    if ('bytes' in segment) {
      await emit(segment.bytes);
    } else if ('zeros' in segment) {
      const zeros = Buffer.alloc(Math.min(segment.zeros, CHUNK_BYTES));
      for (let left = segment.zeros; left > 0; left -= zeros.length) {
        await emit(left >= zeros.length ? zeros : zeros.subarray(0, left));
      }
    } else {
      await copyFile(segment.file, segment.size, emit, signal);
    }
  }
  return at;
}

async function copyFile(path: string, size: number, emit: (data: Uint8Array) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const src = await open(path, 'r');
  const buffers = [Buffer.allocUnsafe(CHUNK_BYTES), Buffer.allocUnsafe(CHUNK_BYTES)];
  const read = (i: number, from: number) => src.read(buffers[i % 2]!, 0, CHUNK_BYTES, from);
  let pending: ReturnType<typeof read> | null = read(0, 0);
  try {
    let copied = 0;
    for (let i = 0; ; i++) {
      const { bytesRead, buffer } = await pending!;
      pending = null;
      if (bytesRead === 0) break;
      signal?.throwIfAborted();
      pending = read(i + 1, copied + bytesRead);
      await emit(buffer.subarray(0, bytesRead));
      copied += bytesRead;
    }
    if (copied !== size) {
      throw new Error(`${path} changed while being copied (expected ${size} bytes, read ${copied})`);
    }
  } finally {
    // Never close the file under a read still in flight.
    await pending?.catch(() => undefined);
    await src.close();
  }
}
