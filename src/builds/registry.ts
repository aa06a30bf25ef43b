// The build registry: one record per build id and its states (pending → running → completed | failed),
// singleflight deduplication, the order of changes on disk, and re-queueing unfinished builds at start.
import type { Logger } from 'pino';
import type { BaseArtifactCatalog } from '../catalog/base-artifacts.js';
import type { ArtifactKind } from '../image/artifacts.js';
import { KeyedSerializer } from '../concurrency/keyed-serializer.js';
import { StorageError } from '../storage/errors.js';
import type { BuildRecord, BuildState, BuildStore, PublishedArtifact } from './build-store.js';
import { computeBuildId } from './build-id.js';
import type { BuildPipeline } from './pipeline.js';
import type { BuildQueue } from './queue.js';
import type { NormalizedBuildRequest } from './request.js';

// The record is the registry's answer to its users; its format on disk is the store's.
export type { BuildRecord, BuildState } from './build-store.js';

export interface BuildObserver {
  finished(state: 'completed' | 'failed', seconds: number): void;
}

interface Entry {
  record: BuildRecord;
  /**
   * Settles once the record's current state is on disk; rejects with a StorageError if it could not be
   * written (a failed record's write is logged instead: the failure stands either way).
   */
  persisted: Promise<void>;
  abort?: AbortController;
  run?: Promise<void>;
  deleting?: Promise<void>;
}

export class BuildRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly removedListeners: Array<(id: string) => void> = [];
  private readonly store: BuildStore;
  /** Every change to a build's files runs after the changes issued before it, so the disk sees them in that order. */
  private readonly changes = new KeyedSerializer<string>();

  constructor(
    private readonly deps: {
      store: BuildStore;
      catalog: BaseArtifactCatalog;
      queue: BuildQueue;
      pipeline: BuildPipeline;
      logger: Logger;
      observer?: BuildObserver;
    },
  ) {
    this.store = deps.store;
  }

  /** Called with the id whenever a build's files leave the disk (delete, purge, failure, re-run). */
  onRemoved(listener: (id: string) => void): void {
    this.removedListeners.push(listener);
  }

  get(id: string): BuildRecord | undefined {
    return this.entries.get(id)?.record;
  }

  list(): BuildRecord[] {
    return [...this.entries.values()].map((e) => e.record);
  }

  countByState(): Record<BuildState, number> {
    const counts: Record<BuildState, number> = { pending: 0, running: 0, completed: 0, failed: 0 };
    for (const e of this.entries.values()) counts[e.record.state]++;
    return counts;
  }

  artifactPath(id: string, kind: ArtifactKind): string {
    return this.store.artifactPath(id, kind);
  }

  /**
   * Returns the build for this request, creating and queueing it unless one with the same id exists
   * and has not failed. Throws BaseArtifactError (bad names), QueueFullError or StorageError.
   */
  async submit(request: NormalizedBuildRequest): Promise<BuildRecord> {
    const { catalog } = this.deps;
    const [kernel, initramfs] = await Promise.all([
      catalog.resolveKernel(request.kernel, request.architecture),
      catalog.resolveInitramfs(request.initramfs),
    ]);
    const bases = { kernelSha256: kernel.sha256, initramfsSha256: initramfs.sha256 };
    const id = computeBuildId(request, bases, this.deps.pipeline.variant);

    for (;;) {
      const existing = this.entries.get(id);
      if (existing?.deleting) {
        await existing.deleting.catch(() => {});
        continue;
      }
      if (existing && existing.record.state !== 'failed') {
        await existing.persisted;
        return existing.record;
      }
      break;
    }

    // From the lookup above to newEntry below nothing awaits: concurrent identical submissions
    // find this entry and share the build, and its record is written after everything issued before.
    const ticket = this.deps.queue.reserve();
    const record: BuildRecord = { id, state: 'pending', createdAt: new Date().toISOString(), request, bases };
    const previous = this.entries.get(id);
    const entry = this.newEntry(record);
    try {
      await entry.persisted;
    } catch (err) {
      ticket.cancel();
      if (this.entries.get(id) === entry) {
        // Leave memory and disk as they were: the earlier failed record (its build.json was not
        // replaced, the atomic write failed before its rename), or nothing at all.
        if (previous) {
          this.entries.set(id, previous);
        } else {
          this.entries.delete(id);
          await this.onDisk(id, (store) => store.remove(id)).catch(() => {});
        }
      }
      throw err;
    }
    this.deps.logger.info({ buildId: id }, 'build accepted');
    ticket.start(() => this.runEntry(entry));
    return record;
  }

  /** False if there is no such build. Throws StorageError if its files could not all be removed. */
  async delete(id: string): Promise<boolean> {
    const entry = this.entries.get(id);
    if (!entry) return false;
    entry.deleting ??= this.remove(entry).finally(() => {
      entry.deleting = undefined;
    });
    await entry.deleting;
    return true;
  }

  /** Deletes every build; throws the first StorageError once all have been tried. */
  async purge(): Promise<void> {
    const results = await Promise.allSettled([...this.entries.keys()].map((id) => this.delete(id)));
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
  }

  /** Reloads every record, re-queues unfinished builds and clears scratch space. Call once, before listening. */
  async load(): Promise<void> {
    const { logger } = this.deps;
    for (const { record, artifactsIntact } of await this.store.readAll()) {
      let requeue = record.state === 'pending' || record.state === 'running';
      if (record.state === 'completed' && !artifactsIntact) {
        logger.warn({ buildId: record.id }, 'completed build is missing artifacts; building again');
        requeue = true;
      }
      if (requeue) {
        const fresh: BuildRecord = { id: record.id, state: 'pending', createdAt: record.createdAt, request: record.request, bases: record.bases };
        const entry = this.newEntry(fresh);
        await entry.persisted;
        this.deps.queue.enqueue(() => this.runEntry(entry));
      } else {
        this.entries.set(record.id, { record, persisted: Promise.resolve() });
      }
    }
    logger.info({ builds: this.entries.size }, 'build records loaded');
  }

  /** Cancels running builds and waits for them to stop (their records stay pending/running for the next start). */
  async shutdown(): Promise<void> {
    const runs = [...this.entries.values()].map((e) => {
      e.abort?.abort(new Error('service stopping'));
      return e.run?.catch(() => {});
    });
    await Promise.all(runs);
  }

  private onDisk<T>(id: string, change: (store: BuildStore) => Promise<T>): Promise<T> {
    return this.changes.run(id, () => change(this.store));
  }

  /** Makes `record` the entry's state and issues its write. */
  private persist(entry: Entry, record: BuildRecord): void {
    entry.record = record;
    entry.persisted = this.onDisk(record.id, (store) => store.write(record)).catch((err: Error) => {
      throw new StorageError(`cannot record the build: ${err.message}`);
    });
  }

  private newEntry(record: BuildRecord): Entry {
    const entry = { record } as Entry;
    this.persist(entry, record);
    this.entries.set(record.id, entry);
    return entry;
  }

  private async remove(entry: Entry): Promise<void> {
    const { logger } = this.deps;
    const id = entry.record.id;
    entry.abort?.abort(new Error('build deleted'));
    await entry.run?.catch(() => {});
    await entry.persisted.catch(() => {});
    this.notifyRemoved(id);
    try {
      await this.onDisk(id, (store) => store.remove(id));
    } catch (err) {
      // Whatever is left is never served again, and resubmitting the request builds it afresh.
      const message = (err as Error).message;
      await this.fail(entry, `deleting the build failed (${message}); delete it again`);
      logger.error({ buildId: id, err }, 'cannot remove build');
      throw new StorageError(`cannot remove the build's files: ${message}`);
    }
    if (this.entries.get(id) === entry) this.entries.delete(id);
    logger.info({ buildId: id }, 'build deleted');
  }

  /** Marks the build failed and issues its record's write; the promise settles when it is on disk (or logged as not). */
  private fail(entry: Entry, error: string): Promise<void> {
    const { artifacts: _dropped, measurements: _unmeasured, ...rest } = entry.record;
    const failed: BuildRecord = { ...rest, state: 'failed', completedAt: new Date().toISOString(), error };
    entry.record = failed;
    entry.persisted = this.onDisk(failed.id, (store) => store.write(failed)).catch((err) =>
      this.deps.logger.error({ buildId: failed.id, err }, 'cannot record build failure'),
    );
    return entry.persisted;
  }

  private notifyRemoved(id: string): void {
    for (const l of this.removedListeners) l(id);
  }

  private runEntry(entry: Entry): Promise<void> {
    // A build deleted (or failed to delete) while it waited in the queue does not run.
    if (this.entries.get(entry.record.id) !== entry || entry.deleting || entry.record.state !== 'pending') return Promise.resolve();
    entry.abort = new AbortController();
    entry.run = this.execute(entry, entry.abort.signal);
    return entry.run;
  }

  private async execute(entry: Entry, signal: AbortSignal): Promise<void> {
    const { logger, observer } = this.deps;
    const id = entry.record.id;
    const started = Date.now();
    const running: BuildRecord = { ...entry.record, state: 'running', startedAt: new Date(started).toISOString() };
    this.persist(entry, running);
    logger.info({ buildId: id }, 'build started');

    try {
      await entry.persisted;
      const { artifacts, measurements } = await this.produce(running, signal);
      signal.throwIfAborted();
      // The bytes are durable and in place before the record says completed.
      const completed: BuildRecord = { ...running, state: 'completed', completedAt: new Date().toISOString(), artifacts, ...(measurements ? { measurements } : {}) };
      await this.onDisk(id, (store) => store.write(completed));
      entry.record = completed;
      entry.persisted = Promise.resolve();
      observer?.finished('completed', (Date.now() - started) / 1000);
      logger.info({ buildId: id, seconds: (Date.now() - started) / 1000 }, 'build completed');
    } catch (err) {
      if (signal.aborted) {
        logger.info({ buildId: id }, `build stopped: ${(signal.reason as Error)?.message ?? 'aborted'}`);
        return;
      }
      const message = (err as Error).message || String(err);
      // Nothing of a failed build stays reachable; the record explains why. The removal and the record
      // are issued at once, before a resubmission (which sees the failed state) can issue its own.
      this.notifyRemoved(id);
      const removed = this.onDisk(id, (store) => store.removeArtifacts(id)).catch((e) =>
        logger.error({ buildId: id, err: e }, 'cannot remove the artifacts of a failed build'),
      );
      await Promise.all([removed, this.fail(entry, message)]);
      observer?.finished('failed', (Date.now() - started) / 1000);
      logger.warn({ buildId: id, error: message }, 'build failed');
    }
  }

  /** Runs the pipeline in a work directory of its own and publishes what it made. */
  private async produce(record: BuildRecord, signal: AbortSignal): Promise<Pick<BuildRecord, 'artifacts' | 'measurements'>> {
    const { catalog, pipeline } = this.deps;
    const { id, request, bases } = record;
    const workDir = await this.store.createWorkDir(id);
    try {
      const [kernel, initramfs] = await Promise.all([
        catalog.resolveKernel(request.kernel, request.architecture),
        catalog.resolveInitramfs(request.initramfs),
      ]);
      if (kernel.sha256 !== bases.kernelSha256 || initramfs.sha256 !== bases.initramfsSha256) {
        throw new Error('a base artifact changed since this build was requested; submit the request again for a new build');
      }
      const produced = await pipeline.run({ id, request, kernelPath: kernel.path, initramfsPath: initramfs.path, workDir, signal });
      signal.throwIfAborted();
      const artifacts = await this.onDisk(id, (store) => store.publish(id, produced));
      return { artifacts, measurements: produced.measurements };
    } finally {
      // tmp/ is emptied at the next start in any case.
      await this.store.removeWorkDir(workDir).catch((err) => this.deps.logger.warn({ buildId: id, err }, 'cannot remove work directory'));
    }
  }
}
