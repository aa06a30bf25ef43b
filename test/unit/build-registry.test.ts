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
