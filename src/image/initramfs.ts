// Assembles the build's initramfs: the base archive as is, zero padding to a multiple of 4 bytes,
// then the overlay. The kernel unpacks concatenated archives in order, but skips (silently) a
// member that does not start on a 4-byte boundary, hence the padding.
import { open } from 'node:fs/promises';
import { copyFileInto, throwIfAborted, writeAllAt } from './copy.js';

export async function writeInitramfs(
  basePath: string,
  overlay: Buffer | null,
  outPath: string,
  signal?: AbortSignal,
): Promise<{ bytes: number }> {
  throwIfAborted(signal);
  const out = await open(outPath, 'w');
  try {
    const baseBytes = await copyFileInto(basePath, out, 0, signal);
    if (overlay === null || overlay.length === 0) {
      return { bytes: baseBytes };
    }
    const padding = (4 - (baseBytes % 4)) % 4;
    const tail = Buffer.concat([Buffer.alloc(padding), overlay]);
    await writeAllAt(out, tail, baseBytes);
    return { bytes: baseBytes + tail.length };
  } finally {
    await out.close();
  }
}
