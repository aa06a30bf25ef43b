// The build registry over a real data directory, with a store that can hold or fail chosen steps
// (write, publish, remove) and a pipeline that writes small files: the order in which records reach
// the disk, and how storage failures are reported.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { FileBuildStore, type BuildRecord, type BuildStore, type StoredBuild } from '../../src/builds/build-store.js';
import type { BuildPipeline, PipelineJob, PipelineResult } from '../../src/builds/pipeline.js';
import { BuildQueue } from '../../src/builds/queue.js';
import { BuildRegistry } from '../../src/builds/registry.js';
import { normalizeBuildRequest, type NormalizedBuildRequest } from '../../src/builds/request.js';
import { BaseArtifactCatalog } from '../../src/catalog/base-artifacts.js';
import type { ArtifactKind } from '../../src/image/artifacts.js';
import { StorageError } from '../../src/storage/errors.js';

// Any amd64 PE program stands in for a kernel: the catalog checks the PE machine type.
const STAND_IN_KERNEL = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi';

type Step = 'write' | 'publish' | 'removeArtifacts' | 'remove';
interface Done {
  step: Step;
  id: string;
  state?: BuildRecord['state'];
}

/**
 * The real store, with a hook before each step that may wait (to hold the step back) or throw (to
 * fail it), and a log of the steps that completed.
 */
class ScriptedStore implements BuildStore {
  before: (step: Step, id: string, record?: BuildRecord) => Promise<void> | void = () => {};
  readonly done: Done[] = [];
  private readonly waiters: Array<{ match: (d: Done) => boolean; resolve: () => void }> = [];

  constructor(readonly inner: FileBuildStore) {}

  /** Resolves once `nth` completed steps match (at once if they already have). */
  completed(match: (d: Done) => boolean, nth = 1): Promise<void> {
    let seen = this.done.filter(match).length;
    if (seen >= nth) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ match: (d) => match(d) && ++seen >= nth, resolve }));
  }

  /** Steps started and not yet finished. */
  inFlight = 0;

  private async step<T>(step: Step, id: string, record: BuildRecord | undefined, run: () => Promise<T>): Promise<T> {
    this.inFlight++;
    let result: T;
    try {
      await this.before(step, id, record);
      result = await run();
    } finally {
      this.inFlight--;
    }
    const d: Done = { step, id, state: record?.state };
    this.done.push(d);
    for (const w of this.waiters.filter((w) => w.match(d))) w.resolve();
    return result;
  }

  readAll(): Promise<StoredBuild[]> {
    return this.inner.readAll();
  }
  write(record: BuildRecord): Promise<void> {
    return this.step('write', record.id, record, () => this.inner.write(record));
  }
  publish(id: string, produced: PipelineResult) {
    return this.step('publish', id, undefined, () => this.inner.publish(id, produced));
  }
  removeArtifacts(id: string): Promise<void> {
    return this.step('removeArtifacts', id, undefined, () => this.inner.removeArtifacts(id));
  }
  remove(id: string): Promise<void> {
    return this.step('remove', id, undefined, () => this.inner.remove(id));
  }
  createWorkDir(id: string): Promise<string> {
    return this.inner.createWorkDir(id);
  }
  removeWorkDir(dir: string): Promise<void> {
    return this.inner.removeWorkDir(dir);
  }
  artifactPath(id: string, kind: ArtifactKind): string {
    return this.inner.artifactPath(id, kind);
  }
}

/** Writes two small artifacts; a run can be told to fail, or to wait until it is aborted. */
class ScriptedPipeline implements BuildPipeline {
  runs = 0;
  next: Array<'fail' | 'block' | 'succeed'> = [];
  async run(job: PipelineJob): Promise<PipelineResult> {
    this.runs++;
    const what = this.next.shift() ?? 'succeed';
    if (what === 'fail') throw new Error('objcopy: simulated tool failure');
    if (what === 'block') {
      job.signal.throwIfAborted();
      await new Promise((_resolve, reject) => job.signal.addEventListener('abort', () => reject(job.signal.reason as Error), { once: true }));
    }
    const file = (name: string, text: string) => {
      fs.writeFileSync(path.join(job.workDir, name), text);
      return { path: path.join(job.workDir, name), size: text.length, sha256: 'e'.repeat(64) };
    };
    return { uki: file('uki.efi', 'uki'), iso: file('boot.iso', 'iso9660') };
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function baseDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uod-registry-base-'));
  fs.copyFileSync(STAND_IN_KERNEL, path.join(dir, 'vmlinuz-amd64'));
  fs.writeFileSync(path.join(dir, 'initramfs.img'), 'not really an initramfs');
  return dir;
}

function request(cmdline = 'console=ttyS0'): NormalizedBuildRequest {
  return normalizeBuildRequest({ kernel: 'vmlinuz-amd64', initramfs: 'initramfs.img', cmdline, architecture: 'amd64' }, { maxFiles: 4 });
}

/** A registry as the service makes one, over `dataDir`, with the scripted store and pipeline. */
async function open(opts: { dataDir?: string; concurrency?: number; capacity?: number; runs?: ScriptedPipeline['next'] } = {}) {
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'uod-registry-'));
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _enc, done) {
        logs.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        done();
      },
    }),
  );
  const store = new ScriptedStore(new FileBuildStore(dataDir, logger));
  const pipeline = new ScriptedPipeline();
  pipeline.next = opts.runs ?? [];
  const queue = new BuildQueue(opts.concurrency ?? 1, opts.capacity ?? 8);
  const registry = new BuildRegistry({ store, catalog: new BaseArtifactCatalog(baseDir()), queue, pipeline, logger });
  const removed: string[] = [];
  registry.onRemoved((id) => removed.push(id));
  await registry.load();
  cleanups.push(() => registry.shutdown());
  const buildDir = (id: string) => path.join(dataDir, 'builds', id);
  const onDisk = (id: string) => JSON.parse(fs.readFileSync(path.join(buildDir(id), 'build.json'), 'utf8')) as BuildRecord;
  return { registry, store, pipeline, dataDir, buildDir, onDisk, logs, removed };
}

/** The build once it has completed or failed and the store has nothing left to do. */
async function settled(h: { registry: BuildRegistry; store: ScriptedStore }, id: string): Promise<BuildRecord> {
  for (let i = 0; i < 500; i++) {
    const r = h.registry.get(id);
    if (r && (r.state === 'completed' || r.state === 'failed') && h.store.inFlight === 0) return r;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`build ${id} did not settle: ${h.registry.get(id)?.state}`);
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('BuildRegistry: records reach the disk in the order they were made', () => {
  test('a resubmission accepted while the failed record is still being written is what a restart finds', async () => {
    const h = await open({ runs: ['fail', 'block'] });
    const { registry, store, dataDir, onDisk } = h;
    // Hold the failed record's write back until the resubmission's records have landed (or, where the
    // resubmission waits for the failed record first, a while).
    let releaseFailed!: () => void;
    const failedHeld = new Promise<void>((resolve) => (releaseFailed = resolve));
    store.before = async (step, _id, record) => {
      if (step === 'write' && record?.state === 'failed') await failedHeld;
    };

    const first = await registry.submit(request());
    for (let i = 0; i < 500 && registry.get(first.id)?.state !== 'failed'; i++) await delay(5);
    expect(registry.get(first.id)?.state).toBe('failed');

    const resubmission = registry.submit(request());
    const secondRunWritten = store.completed((d) => d.step === 'write' && d.state === 'running', 2);
    await Promise.race([secondRunWritten, delay(300)]);
    releaseFailed();
    expect(await resubmission).toMatchObject({ id: first.id, state: 'pending' });
    await secondRunWritten;
    await store.completed((d) => d.step === 'write' && d.state === 'failed');

    // The accepted resubmission is running: that, not the earlier failure, is on disk.
    expect(registry.get(first.id)?.state).toBe('running');
    expect(onDisk(first.id).state).toBe('running');
    expect(store.done.filter((d) => d.step === 'write').map((d) => d.state)).toEqual(['pending', 'running', 'failed', 'pending', 'running']);

    // A crash now, and a start: the build is queued again, not reported as failed.
    const restarted = await open({ dataDir, runs: ['block'] });
    expect(restarted.registry.list().map((r) => [r.id, r.state, r.error])).toEqual([[first.id, 'running', undefined]]);
  });
});

const ENOSPC = 'ENOSPC: no space left on device (simulated)';

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const err = await promise.then(() => null, (e: unknown) => e as Error);
  if (err === null) throw new Error('expected a rejection');
  return err;
}

describe('BuildRegistry: storage failures', () => {
  test('a record that cannot be written refuses the submission with a StorageError and leaves nothing behind', async () => {
    const h = await open({ concurrency: 1, capacity: 0 });
    const { registry, store, dataDir, buildDir } = h;
    store.before = (step, id) => {
      if (step !== 'write') return;
      fs.mkdirSync(buildDir(id)); // as far as a real write gets before the disk is full
      throw new Error(ENOSPC);
    };
    const err = await rejection(registry.submit(request()));
    expect(err).toBeInstanceOf(StorageError);
    expect(err.message).toBe(`cannot record the build: ${ENOSPC}`);
    expect(registry.list()).toEqual([]);
    expect(fs.readdirSync(path.join(dataDir, 'builds'))).toEqual([]);

    // the one queue slot was given back
    store.before = () => {};
    const accepted = await registry.submit(request());
    expect(accepted.state).toBe('pending');
    expect((await settled(h, accepted.id)).state).toBe('completed');
  });

  test('identical submissions waiting for the same record all get its StorageError', async () => {
    const h = await open();
    const { registry, store } = h;
    store.before = async (step) => {
      if (step !== 'write') return;
      await delay(20);
      throw new Error(ENOSPC);
    };
    const errors = await Promise.all([rejection(registry.submit(request())), rejection(registry.submit(request()))]);
    expect(errors.map((e) => [e instanceof StorageError, e.message])).toEqual([
      [true, `cannot record the build: ${ENOSPC}`],
      [true, `cannot record the build: ${ENOSPC}`],
    ]);
    expect(registry.list()).toEqual([]);
  });

  test('a resubmission whose record cannot be written leaves the failed build as it was', async () => {
    const h = await open({ runs: ['fail'] });
    const { registry, store, onDisk } = h;
    const first = await registry.submit(request());
    const failed = await settled(h, first.id);
    expect(failed.error).toBe('objcopy: simulated tool failure');

    store.before = (step) => {
      if (step === 'write') throw new Error(ENOSPC);
    };
    const err = await rejection(registry.submit(request()));
    expect(err).toBeInstanceOf(StorageError);
    expect(registry.get(first.id)).toBe(failed);
    expect(onDisk(first.id)).toEqual(failed);

    store.before = () => {};
    await registry.submit(request());
    expect((await settled(h, first.id)).state).toBe('completed');
  });

  test('publishing that fails fails the build with the cause; only its record stays', async () => {
    const h = await open();
    const { registry, store, dataDir, buildDir, onDisk, removed } = h;
    store.before = (step, id) => {
      if (step !== 'publish') return;
      fs.writeFileSync(store.artifactPath(id, 'uki'), 'renamed before the disk failed');
      throw new Error('EIO: i/o error, rename (simulated)');
    };
    const { id } = await registry.submit(request());
    const failed = await settled(h, id);
    expect(failed).toMatchObject({ state: 'failed', error: 'EIO: i/o error, rename (simulated)' });
    expect(failed.artifacts).toBeUndefined();
    expect(onDisk(id)).toEqual(failed);
    expect(fs.readdirSync(buildDir(id))).toEqual(['build.json']);
    expect(fs.readdirSync(path.join(dataDir, 'tmp'))).toEqual([]);
    expect(removed).toEqual([id]);
  });

  test('a completed record that cannot be written fails the build and takes its artifacts away', async () => {
    const h = await open();
    const { registry, store, buildDir, onDisk } = h;
    store.before = (step, _id, record) => {
      if (step === 'write' && record?.state === 'completed') throw new Error(ENOSPC);
    };
    const { id } = await registry.submit(request());
    const failed = await settled(h, id);
    expect(failed).toMatchObject({ state: 'failed', error: ENOSPC });
    expect(onDisk(id)).toEqual(failed);
    expect(fs.readdirSync(buildDir(id))).toEqual(['build.json']);
  });

  test('a failed record that cannot be written is logged, and the next start builds again', async () => {
    const h = await open({ runs: ['fail'] });
    const { registry, store, dataDir, onDisk, logs } = h;
    store.before = (step, _id, record) => {
      if (step === 'write' && record?.state === 'failed') throw new Error(ENOSPC);
    };
    const { id } = await registry.submit(request());
    expect((await settled(h, id)).state).toBe('failed');
    expect(onDisk(id).state).toBe('running');
    expect(logs.filter((l) => l.level === 50).map((l) => [l.buildId, l.msg, (l.err as { message: string }).message])).toEqual([
      [id, 'cannot record build failure', ENOSPC],
    ]);

    await registry.shutdown();
    const restarted = await open({ dataDir });
    expect((await settled(restarted, id)).state).toBe('completed');
  });

  test('a build whose files cannot be removed stays, failed; DELETE reports a StorageError; resubmitting or deleting again works', async () => {
    const h = await open();
    const { registry, store, buildDir, onDisk, removed } = h;
    const { id } = await registry.submit(request());
    expect((await settled(h, id)).state).toBe('completed');
    store.before = (step) => {
      if (step === 'remove') throw new Error('EACCES: permission denied (simulated)');
    };
    const err = await rejection(registry.delete(id));
    expect(err).toBeInstanceOf(StorageError);
    expect(err.message).toBe("cannot remove the build's files: EACCES: permission denied (simulated)");
    expect(removed).toEqual([id]);
    const kept = registry.get(id);
    expect(kept).toMatchObject({ state: 'failed', error: 'deleting the build failed (EACCES: permission denied (simulated)); delete it again' });
    expect(kept?.artifacts).toBeUndefined();
    expect(onDisk(id)).toEqual(kept);

    store.before = () => {};
    expect((await registry.submit(request())).state).toBe('pending');
    expect((await settled(h, id)).state).toBe('completed');
    expect(await registry.delete(id)).toBe(true);
    expect(registry.get(id)).toBeUndefined();
    expect(fs.existsSync(buildDir(id))).toBe(false);
  });

  test('a queued build whose deletion failed does not run when its turn comes', async () => {
    const h = await open({ concurrency: 1, runs: ['block'] });
    const { registry, store, pipeline } = h;
    const running = await registry.submit(request('console=ttyS0 running'));
    const queued = await registry.submit(request('console=ttyS0 queued'));
    expect(queued.state).toBe('pending');
    store.before = (step, id) => {
      if (step === 'remove' && id === queued.id) throw new Error('EACCES: permission denied (simulated)');
    };
    expect(await rejection(registry.delete(queued.id))).toBeInstanceOf(StorageError);
    expect(await registry.delete(running.id)).toBe(true);
    await delay(50);
    expect(pipeline.runs).toBe(1);
    expect(registry.list().map((r) => [r.id, r.state])).toEqual([[queued.id, 'failed']]);
  });

  test('purge tries every build and then reports the first that could not be removed', async () => {
    const h = await open();
    const { registry, store, buildDir } = h;
    const a = await registry.submit(request('console=ttyS0 a'));
    const b = await registry.submit(request('console=ttyS0 b'));
    await settled(h, a.id);
    await settled(h, b.id);
    store.before = (step, id) => {
      if (step === 'remove' && id === a.id) throw new Error('EACCES: permission denied (simulated)');
    };
    const err = await rejection(registry.purge());
    expect(err).toBeInstanceOf(StorageError);
    expect(registry.list().map((r) => [r.id, r.state])).toEqual([[a.id, 'failed']]);
    expect(fs.existsSync(buildDir(b.id))).toBe(false);
  });
});
