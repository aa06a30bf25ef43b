// The build's initramfs: the base archive as is, zero padding to a multiple of 4 bytes, then the
// overlay (the kernel unpacks concatenated archives in order, but silently skips a misaligned one).
import { stat } from 'node:fs/promises';
import { writeFileFromSegments, type Segment } from './segments.js';

/** The pieces of base ‖ padding ‖ overlay, for writers that embed the initramfs without a file of its own. */
export async function initramfsSegments(basePath: string, overlay: Buffer | null): Promise<Segment[]> {
  const baseSize = (await stat(basePath)).size;
  const segments: Segment[] = [{ file: basePath, size: baseSize }];
  if (overlay !== null && overlay.length > 0) {
    segments.push({ zeros: (4 - (baseSize % 4)) % 4 }, { bytes: overlay });
  }
  return segments;
}

/** Streams base ‖ padding ‖ overlay into `outPath` (the base is never read into memory whole). */
export async function writeInitramfs(
  basePath: string,
  overlay: Buffer | null,
  outPath: string,
  signal?: AbortSignal,
): Promise<{ bytes: number }> {
  signal?.throwIfAborted();
  const { bytes } = await writeFileFromSegments(outPath, await initramfsSegments(basePath, overlay), { signal });
  return { bytes };
}
