import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestFile } from '../../src/image/file-digest.js';
import { CHUNK_BYTES, segmentLength, writeFileFromSegments, type Segment } from '../../src/image/segments.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'segments-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileFromSegments', () => {
  it('writes bytes, zero runs and files in order, replacing the file, hashing exactly what it wrote', async () => {
    // A file of more than two chunks, so that the double-buffered read wraps around.
    const big = Buffer.alloc(2 * CHUNK_BYTES + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const bigPath = join(dir, 'big');
    await writeFile(bigPath, big);
    const segments: Segment[] = [{ bytes: Buffer.from('head') }, { zeros: CHUNK_BYTES + 3 }, { file: bigPath, size: big.length }, { zeros: 0 }, { bytes: Buffer.from('tail') }];
    const out = join(dir, 'out');
    await writeFile(out, Buffer.alloc(10 * CHUNK_BYTES, 'old'));
    const { bytes, sha256 } = await writeFileFromSegments(out, segments, { digest: true });

    const expected = Buffer.concat([Buffer.from('head'), Buffer.alloc(CHUNK_BYTES + 3), big, Buffer.from('tail')]);
    expect(bytes).toBe(4 + CHUNK_BYTES + 3 + big.length + 4);
    expect(segments.reduce((sum, s) => sum + segmentLength(s), 0)).toBe(bytes);
    const written = await readFile(out);
    expect(written.equals(expected)).toBe(true);
    expect(sha256).toBe(createHash('sha256').update(expected).digest('hex'));
  });

  it('computes no digest unless asked', async () => {
    expect(await writeFileFromSegments(join(dir, 'no-digest'), [{ bytes: Buffer.from('abc') }])).toEqual({ bytes: 3, sha256: undefined });
  });

  it('refuses a file whose size is not the one it was planned with', async () => {
    const path = join(dir, 'grown');
    await writeFile(path, 'twelve bytes');
    await expect(writeFileFromSegments(join(dir, 'out-grown'), [{ file: path, size: 10 }])).rejects.toThrow(
      `${path} changed while being copied (expected 10 bytes, read 12)`,
    );
  });

  it('stops with the signal\'s reason, before creating the file, once cancelled', async () => {
    const controller = new AbortController();
    controller.abort(new Error('cancelled by test'));
    const out = join(dir, 'out-cancelled');
    await expect(writeFileFromSegments(out, [{ bytes: Buffer.from('x') }], { signal: controller.signal })).rejects.toThrow('cancelled by test');
    expect(existsSync(out)).toBe(false);
  });
});

describe('digestFile', () => {
  it('gives the size and SHA-256 of a file', async () => {
    const path = join(dir, 'abc');
    await writeFile(path, 'abc');
    expect(await digestFile(path)).toEqual({ bytes: 3, sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' });
  });
});
