import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeAllAt, type PositionalWriter } from '../../src/storage/write-all.js';

/** A file in memory whose write takes at most what `take` allows for each call, recording the calls. */
function fakeFile(take: (call: number, length: number) => number) {
  const content: number[] = [];
  const calls: Array<[offset: number, length: number, position: number]> = [];
  const file: PositionalWriter = {
    async write(buffer, offset, length, position) {
      calls.push([offset, length, position]);
      // A loop that retries forever must fail here, not hang the test run.
      if (calls.length > 100) throw new Error('write called more than 100 times');
      const bytesWritten = take(calls.length, length);
      for (let i = 0; i < bytesWritten; i++) content[position + i] = buffer[offset + i]!;
      return { bytesWritten };
    },
  };
  return { file, content, calls };
}

describe('writeAllAt', () => {
  it('continues after partial writes until every byte is at its position', async () => {
    const { file, content, calls } = fakeFile((_, length) => Math.min(length, 4));
    await writeAllAt(file, Buffer.from('0123456789'), 5);
    expect(calls).toEqual([
      [0, 10, 5],
      [4, 6, 9],
      [8, 2, 13],
    ]);
    expect(Buffer.from(content.slice(5)).toString()).toBe('0123456789');
  });

  it('fails on a write that takes 0 bytes instead of retrying forever', async () => {
    const { file, calls } = fakeFile((call, length) => (call === 1 ? Math.min(length, 3) : 0));
    await expect(writeAllAt(file, Buffer.from('abcdefgh'), 100)).rejects.toThrow(
      'short write: nothing more written at offset 103 (3 of 8 bytes)',
    );
    expect(calls).toEqual([
      [0, 8, 100],
      [3, 5, 103],
    ]);
  });

  it('fails at once when the first write takes nothing', async () => {
    const { file, calls } = fakeFile(() => 0);
    await expect(writeAllAt(file, Buffer.from('x'), 0)).rejects.toThrow('short write: nothing more written at offset 0 (0 of 1 bytes)');
    expect(calls).toEqual([[0, 1, 0]]);
  });

  it('does not write an empty buffer', async () => {
    const { file, calls } = fakeFile(() => 0);
    await writeAllAt(file, Buffer.alloc(0), 7);
    expect(calls).toEqual([]);
  });

  it('writes into a real file at the position, leaving the rest alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'write-all-'));
    try {
      const path = join(dir, 'f');
      const handle = await open(path, 'w+');
      try {
        await writeAllAt(handle, Buffer.from('abcdef'), 0);
        await writeAllAt(handle, Buffer.from('XY'), 2);
      } finally {
        await handle.close();
      }
      expect(await readFile(path, 'latin1')).toBe('abXYef');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
