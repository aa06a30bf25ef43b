// The build registry: one record per build id, its state machine (pending → running → completed |
// failed), singleflight deduplication, and the reload of unfinished builds at start-up. What is on
// disk, and how, is the BuildStore's.
import type { Logger } from 'pino';
import type { BaseArtifactCatalog } from '../catalog/base-artifacts.js';
import type { ArtifactKind } from '../image/artifacts.js';
import { StorageError } from '../storage/errors.js';
import { FileBuildStore, type BuildRecord, type BuildState, type BuildStore } from './build-store.js';
import { computeBuildId } from './build-id.js';
import type { BuildPipeline } from './pipeline.js';
import type { BuildQueue } from './queue.js';
import type { NormalizedBuildRequest } from './request.js';

export type { BuildRecord, BuildState } from './build-store.js';

export interface BuildObserver {
  finished(state: 'completed' | 'failed', seconds: number): void;
}

interface Entry {
  record: BuildRecord;
  /** Settles once the record's current state is on disk. */
  persisted: Promise<void>;
  abort?: AbortController;
  run?: Promise<void>;
  deleting?: Promise<void>;
}

export class BuildRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly removedListeners: Array<(id: string) => void> = [];
  private readonly store: BuildStore;

  constructor(
    private readonly deps: ({ store: BuildStore } | { dataDir: string }) & {
      catalog: BaseArtifactCatalog;
      queue: BuildQueue;
      pipeline: BuildPipeline;
      logger: Logger;
      observer?: BuildObserver;
    },
  ) {
    this.store = 'store' in deps ? deps.store : new FileBuildStore(deps.dataDir, deps.logger);
  }

  /** Called with the id whenever a build's files leave the disk (delete, purge, re-run). */
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
    const id = computeBuildId(request, bases);

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

    // From the lookup above to entries.set below nothing awaits: concurrent identical submissions
    // find this entry and share the build.
    const ticket = this.deps.queue.reserve();
    const record: BuildRecord = { id, state: 'pending', createdAt: new Date().toISOString(), request, bases };
    const previous = this.entries.get(id);
    const entry: Entry = { record, persisted: this.store.write(record) };
    this.entries.set(id, entry);
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
          await this.store.remove(id).catch(() => {});
        }
      }
      throw new StorageError(`cannot record the build: ${(err as Error).message}`);
    }
    this.deps.logger.info({ buildId: id }, 'build accepted');
    ticket.start(() => this.runEntry(entry));
    return record;
  }

  async delete(id: string): Promise<boolean> {
    const entry = this.entries.get(id);
    if (!entry) return false;
    entry.deleting ??= (async () => {
      entry.abort?.abort(new Error('build deleted'));
      await entry.run?.catch(() => {});
      await entry.persisted.catch(() => {});
      this.notifyRemoved(id);
      await this.store.remove(id);
      this.entries.delete(id);
      this.deps.logger.info({ buildId: id }, 'build deleted');
    })();
    await entry.deleting;
    return true;
  }

  async purge(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((id) => this.delete(id)));
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
        const entry: Entry = { record: fresh, persisted: this.store.write(fresh) };
        this.entries.set(record.id, entry);
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

  private notifyRemoved(id: string): void {
    for (const l of this.removedListeners) l(id);
  }

  private runEntry(entry: Entry): Promise<void> {
    if (this.entries.get(entry.record.id) !== entry || entry.deleting) return Promise.resolve();
    entry.abort = new AbortController();
    entry.run = this.execute(entry, entry.abort.signal);
    return entry.run;
  }

  private async execute(entry: Entry, signal: AbortSignal): Promise<void> {
    const { logger, catalog, pipeline, observer } = this.deps;
    const id = entry.record.id;
    const started = Date.now();
    const running: BuildRecord = { ...entry.record, state: 'running', startedAt: new Date(started).toISOString() };
    entry.record = running;
    entry.persisted = this.store.write(running);
    logger.info({ buildId: id }, 'build started');

    let workDir: string | null = null;
    try {
      await entry.persisted;
      workDir = await this.store.createWorkDir(id);
      const { request, bases } = running;
      const [kernel, initramfs] = await Promise.all([
        catalog.resolveKernel(request.kernel, request.architecture),
        catalog.resolveInitramfs(request.initramfs),
      ]);
      if (kernel.sha256 !== bases.kernelSha256 || initramfs.sha256 !== bases.initramfsSha256) {
        throw new Error('a base artifact changed since this build was requested; submit the request again for a new build');
      }
      const produced = await pipeline.run({ id, request, kernelPath: kernel.path, initramfsPath: initramfs.path, workDir, signal });
      signal.throwIfAborted();

      // Publish: make the bytes durable, then move them into place; the record flips to completed last.
      const artifacts = await this.store.publish(id, produced);
      signal.throwIfAborted();
      const completed: BuildRecord = { ...running, state: 'completed', completedAt: new Date().toISOString(), artifacts };
      await this.store.write(completed);
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
      const failed: BuildRecord = { ...running, state: 'failed', completedAt: new Date().toISOString(), error: message };
      delete failed.artifacts;
      entry.record = failed;
      // Nothing of a failed build stays reachable; the record explains why.
      this.notifyRemoved(id);
      await this.store.removeArtifacts(id);
      entry.persisted = this.store.write(failed).catch((e) => logger.error({ buildId: id, err: e }, 'cannot record build failure'));
      observer?.finished('failed', (Date.now() - started) / 1000);
      logger.warn({ buildId: id, error: message }, 'build failed');
    } finally {
      if (workDir) await this.store.removeWorkDir(workDir);
    }
  }
}
