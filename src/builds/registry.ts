// The build registry: one record per build id, its state machine (pending → running → completed |
// failed), singleflight deduplication, persistence next to the artifacts, atomic publishing, and the
// reload of all of it at start-up.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { BaseArtifactCatalog } from '../catalog/base-artifacts.js';
import { isAtomicTemp, syncDir, writeFileAtomic } from '../storage/atomic-file.js';
import { StorageError } from '../storage/errors.js';
import { BUILD_ID, computeBuildId } from './build-id.js';
import { ARTIFACT_FILES, type ArtifactKind } from '../image/artifacts.js';
import type { BuildPipeline } from './pipeline.js';
import type { BuildQueue } from './queue.js';
import type { NormalizedBuildRequest } from './request.js';

export type BuildState = 'pending' | 'running' | 'completed' | 'failed';

export interface PublishedArtifact {
  file: string;
  size: number;
  sha256: string;
}

export interface BuildRecord {
  id: string;
  state: BuildState;
  createdAt: string;
  startedAt?: string;
  completedAt?: string;
  error?: string;
  request: NormalizedBuildRequest;
  bases: { kernelSha256: string; initramfsSha256: string };
  artifacts?: Record<ArtifactKind, PublishedArtifact>;
}


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

const RECORD_FILE = 'build.json';

export class BuildRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly removedListeners: Array<(id: string) => void> = [];
  readonly buildsDir: string;
  readonly tmpDir: string;

  constructor(
    private readonly deps: {
      dataDir: string;
      catalog: BaseArtifactCatalog;
      queue: BuildQueue;
      pipeline: BuildPipeline;
      logger: Logger;
      observer?: BuildObserver;
    },
  ) {
    this.buildsDir = path.join(deps.dataDir, 'builds');
    this.tmpDir = path.join(deps.dataDir, 'tmp');
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
    return path.join(this.buildsDir, id, ARTIFACT_FILES[kind]);
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
    const entry: Entry = { record, persisted: this.persist(record) };
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
          await fs.rm(path.join(this.buildsDir, id), { recursive: true, force: true }).catch(() => {});
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
      await fs.rm(path.join(this.buildsDir, id), { recursive: true, force: true });
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
    await fs.rm(this.tmpDir, { recursive: true, force: true });
    await fs.mkdir(this.tmpDir, { recursive: true });
    await fs.mkdir(this.buildsDir, { recursive: true });

    for (const name of await fs.readdir(this.buildsDir)) {
      const dir = path.join(this.buildsDir, name);
      if (!BUILD_ID.test(name)) continue;
      const record = await readRecord(path.join(dir, RECORD_FILE));
      if (!record || record.id !== name) {
        logger.warn({ buildId: name }, 'discarding build directory without a valid record');
        await fs.rm(dir, { recursive: true, force: true });
        continue;
      }
      for (const f of await fs.readdir(dir)) if (isAtomicTemp(f)) await fs.rm(path.join(dir, f), { force: true });

      let requeue = record.state === 'pending' || record.state === 'running';
      if (record.state === 'completed' && !(await this.artifactsIntact(record))) {
        logger.warn({ buildId: name }, 'completed build is missing artifacts; building again');
        requeue = true;
      }
      if (requeue) {
        const fresh: BuildRecord = { id: record.id, state: 'pending', createdAt: record.createdAt, request: record.request, bases: record.bases };
        const entry: Entry = { record: fresh, persisted: this.persist(fresh) };
        this.entries.set(name, entry);
        await entry.persisted;
        this.deps.queue.enqueue(() => this.runEntry(entry));
      } else {
        this.entries.set(name, { record, persisted: Promise.resolve() });
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

  private async artifactsIntact(record: BuildRecord): Promise<boolean> {
    if (!record.artifacts) return false;
    for (const kind of Object.keys(ARTIFACT_FILES) as ArtifactKind[]) {
      const st = await fs.stat(this.artifactPath(record.id, kind)).catch(() => null);
      if (!st || st.size !== record.artifacts[kind].size) return false;
    }
    return true;
  }

  private persist(record: BuildRecord): Promise<void> {
    const dir = path.join(this.buildsDir, record.id);
    return fs.mkdir(dir, { recursive: true }).then(() => writeFileAtomic(path.join(dir, RECORD_FILE), JSON.stringify(record)));
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
    entry.persisted = this.persist(running);
    logger.info({ buildId: id }, 'build started');

    let workDir: string | null = null;
    try {
      await entry.persisted;
      workDir = await fs.mkdtemp(path.join(this.tmpDir, `${id.slice(0, 16)}-`));
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
      const dir = path.join(this.buildsDir, id);
      const artifacts = {} as Record<ArtifactKind, PublishedArtifact>;
      for (const kind of Object.keys(ARTIFACT_FILES) as ArtifactKind[]) {
        const handle = await fs.open(produced[kind].path, 'r');
        await handle.sync().finally(() => handle.close());
        await fs.rename(produced[kind].path, this.artifactPath(id, kind));
        artifacts[kind] = { file: ARTIFACT_FILES[kind], size: produced[kind].size, sha256: produced[kind].sha256 };
      }
      await syncDir(dir);
      signal.throwIfAborted();
      const completed: BuildRecord = { ...running, state: 'completed', completedAt: new Date().toISOString(), artifacts };
      await this.persist(completed);
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
      await Promise.all(
        (Object.keys(ARTIFACT_FILES) as ArtifactKind[]).map((k) => fs.rm(this.artifactPath(id, k), { force: true })),
      );
      entry.persisted = this.persist(failed).catch((e) => logger.error({ buildId: id, err: e }, 'cannot record build failure'));
      observer?.finished('failed', (Date.now() - started) / 1000);
      logger.warn({ buildId: id, error: message }, 'build failed');
    } finally {
      if (workDir) await fs.rm(workDir, { recursive: true, force: true });
    }
  }
}

async function readRecord(file: string): Promise<BuildRecord | null> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as BuildRecord;
    const states: BuildState[] = ['pending', 'running', 'completed', 'failed'];
    if (typeof parsed.id !== 'string' || !states.includes(parsed.state) || typeof parsed.request !== 'object' || !parsed.bases) return null;
    return parsed;
  } catch {
    return null;
  }
}
