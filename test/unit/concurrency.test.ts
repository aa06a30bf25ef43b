import { describe, expect, it } from 'vitest';
import { KeyedSerializer } from '../../src/concurrency/keyed-serializer.js';
import { PromiseCache } from '../../src/concurrency/promise-cache.js';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('PromiseCache', () => {
  it('shares one computation between concurrent callers of a key', async () => {
    const cache = new PromiseCache<string, number>();
    let calls = 0;
    const d = deferred<number>();
    const make = () => (calls++, d.promise);
    const a = cache.get('k', make);
    const b = cache.get('k', make);
    d.resolve(7);
    expect(await Promise.all([a, b])).toEqual([7, 7]);
    expect(await cache.get('k', make)).toBe(7);
    expect(calls).toBe(1);
  });

  it('evicts a failure so that the next caller computes again', async () => {
    const cache = new PromiseCache<string, number>();
    await expect(cache.get('k', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await tick();
    expect(cache.size).toBe(0);
    expect(await cache.get('k', async () => 2)).toBe(2);
  });

  it('forgets values that keep refuses, after handing them to the waiting callers', async () => {
    const cache = new PromiseCache<string, number | null>((v) => v !== null);
    expect(await cache.get('k', async () => null)).toBeNull();
    await tick();
    expect(cache.peek('k')).toBeUndefined();
    expect(await cache.get('k', async () => 3)).toBe(3);
    await tick();
    expect(await cache.peek('k')).toBe(3);
  });

  it('replaces an entry made for another version', async () => {
    const cache = new PromiseCache<string, string>();
    expect(await cache.get('f', async () => 'v1', 'stamp1')).toBe('v1');
    expect(await cache.get('f', async () => 'x', 'stamp1')).toBe('v1');
    expect(await cache.get('f', async () => 'v2', 'stamp2')).toBe('v2');
  });

  it("an older entry's late failure does not evict its replacement", async () => {
    const cache = new PromiseCache<string, string>();
    const old = deferred<string>();
    const first = cache.get('f', () => old.promise, 'a');
    expect(await cache.get('f', async () => 'new', 'b')).toBe('new');
    old.reject(new Error('late'));
    await expect(first).rejects.toThrow('late');
    await tick();
    expect(await cache.peek('f')).toBe('new');
  });
});

describe('KeyedSerializer', () => {
  it('runs tasks of one key in order, never two at once', async () => {
    const serial = new KeyedSerializer<string>();
    const log: string[] = [];
    const first = deferred<void>();
    const a = serial.run('id', async () => {
      log.push('a start');
      await first.promise;
      log.push('a end');
    });
    const b = serial.run('id', async () => {
      log.push('b start');
      log.push('b end');
    });
    await tick();
    expect(log).toEqual(['a start']);
    first.resolve();
    await Promise.all([a, b]);
    expect(log).toEqual(['a start', 'a end', 'b start', 'b end']);
  });

  it('lets other keys run meanwhile and a failure not block the next task', async () => {
    const serial = new KeyedSerializer<string>();
    const hold = deferred<void>();
    const blocked = serial.run('x', () => hold.promise);
    expect(await serial.run('y', async () => 'free')).toBe('free');
    hold.reject(new Error('failed write'));
    await expect(blocked).rejects.toThrow('failed write');
    expect(await serial.run('x', async () => 'next')).toBe('next');
    await serial.idle('x');
    await tick();
    expect(serial.pending).toBe(0);
  });
});
