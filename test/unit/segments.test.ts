import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestFile } from '../../src/image/file-digest.js';
import { CHUNK_BYTES, segmentLength, writeSegments, type Segment } from '../../src/image/segments.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'segments-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeTo(path: string, position: number, segments: Segment[], options: Parameters<typeof writeSegments>[3] = {}) {
  const out = await open(path, 'w');
  try {
    return await writeSegments(out, position, segments, options);
  } finally {
    await out.close();
  }
}

describe('writeSegments', () => {
  it('writes bytes, zero runs and files in order from the position, hashing exactly what it wrote', async () => {
    // A file of more than two chunks, so that the double-buffered read wraps around.
    const big = Buffer.alloc(2 * CHUNK_BYTES + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const bigPath = join(dir, 'big');
    await writeFile(bigPath, big);
    const segments: Segment[] = [{ bytes: Buffer.from('head') }, { zeros: CHUNK_BYTES + 3 }, { file: bigPath, size: big.length }, { zeros: 0 }, { bytes: Buffer.from('tail') }];
    const hash = createHash('sha256');
    const out = join(dir, 'out');
    const bytes = await writeTo(out, 5, segments, { hash });

    const expected = Buffer.concat([Buffer.from('head'), Buffer.alloc(CHUNK_BYTES + 3), big, Buffer.from('tail')]);
    expect(bytes).toBe(4 + CHUNK_BYTES + 3 + big.length + 4);
    expect(segments.reduce((sum, s) => sum + segmentLength(s), 0)).toBe(bytes);
    const written = await readFile(out);
    expect(written.length).toBe(5 + bytes);
    expect(written.subarray(0, 5).equals(Buffer.alloc(5))).toBe(true);
    expect(written.subarray(5).equals(expected)).toBe(true);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(expected).digest('hex'));
  });

  it('refuses a file whose size is not the one it was planned with', async () => {
    const path = join(dir, 'grown');
    await writeFile(path, 'twelve bytes');
    await expect(writeTo(join(dir, 'out-grown'), 0, [{ file: path, size: 10 }])).rejects.toThrow(
      `${path} changed while being copied (expected 10 bytes, read 12)`,
    );
  });

  it('stops with the signal\'s reason before writing anything once cancelled', async () => {
    const controller = new AbortController();
    controller.abort(new Error('cancelled by test'));
    const out = join(dir, 'out-cancelled');
    await expect(writeTo(out, 0, [{ bytes: Buffer.from('x') }], { signal: controller.signal })).rejects.toThrow('cancelled by test');
    expect((await readFile(out)).length).toBe(0);
  });
});

describe('digestFile', () => {
  it('gives the size and SHA-256 of a file', async () => {
    const path = join(dir, 'abc');
    await writeFile(path, 'abc');
    expect(await digestFile(path)).toEqual({ bytes: 3, sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' });
  });
});
