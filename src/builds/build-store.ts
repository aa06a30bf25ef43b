// Builds on disk: the build.json format (checked with zod when read back), where each build's record,
// artifacts and work directories live, and how artifacts are published. The registry is its one user.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ARTIFACT_FILES, ARTIFACT_KINDS, type ArtifactKind } from '../image/artifacts.js';
import { isAtomicTemp, syncDir, writeFileAtomic } from '../storage/atomic-file.js';
import { describeZodError } from '../validation/zod-message.js';
import { BUILD_ID } from './build-id.js';
import type { BuildMeasurements, PipelineResult } from './pipeline.js';
import { normalizedBuildRequestSchema, type NormalizedBuildRequest } from './request.js';

const BUILD_STATES = ['pending', 'running', 'completed', 'failed'] as const;
export type BuildState = (typeof BUILD_STATES)[number];

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
  /** What the UKI is predicted to measure; builds recorded before predictions existed have none. */
  measurements?: BuildMeasurements;
}

export interface StoredBuild {
  record: BuildRecord;
  /** Both artifacts of a completed build are on disk with the recorded sizes. */
  artifactsIntact: boolean;
}

export interface BuildStore {
  /** Empties scratch space and reads every record; a record that is not valid is set aside and logged. */
  readAll(): Promise<StoredBuild[]>;
  /** Replaces the build's record atomically, creating its directory. */
  write(record: BuildRecord): Promise<void>;
  /** Makes the produced files durable and renames them into the build's directory. */
  publish(id: string, produced: PipelineResult): Promise<Record<ArtifactKind, PublishedArtifact>>;
  /** Removes the build's artifacts and keeps its record. */
  removeArtifacts(id: string): Promise<void>;
  /** Removes the build's directory, record and all. */
  remove(id: string): Promise<void>;
  /** A fresh private work directory for one run of the pipeline. */
  createWorkDir(id: string): Promise<string>;
  removeWorkDir(dir: string): Promise<void>;
  artifactPath(id: string, kind: ArtifactKind): string;
}

const RECORD_FILE = 'build.json';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 in hex');
const timestamp = z.iso.datetime();
const published = (kind: ArtifactKind) =>
  z.strictObject({ file: z.literal(ARTIFACT_FILES[kind]), size: z.number().int().min(0), sha256 });

const recordSchema: z.ZodType<BuildRecord> = z
  .strictObject({
    id: z.string().regex(BUILD_ID, 'must be a 64-hex build id'),
    state: z.enum(BUILD_STATES),
    createdAt: timestamp,
    startedAt: timestamp.optional(),
    completedAt: timestamp.optional(),
    error: z.string().optional(),
    request: normalizedBuildRequestSchema,
    bases: z.strictObject({ kernelSha256: sha256, initramfsSha256: sha256 }),
    artifacts: z.strictObject({ uki: published('uki'), iso: published('iso') }).optional(),
    measurements: z.strictObject({ pcr11: z.array(z.strictObject({ phase: z.string(), sha256 })).min(1) }).optional(),
  })
  .superRefine((r, ctx) => {
    if ((r.state === 'completed') !== (r.artifacts !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['artifacts'], message: 'must be present exactly when the state is "completed"' });
    }
    if (r.state === 'failed' && r.error === undefined) ctx.addIssue({ code: 'custom', path: ['error'], message: 'required when the state is "failed"' });
  });

/** The record in `text`, read from builds/<name>/build.json, or why it is not a valid record of build <name>. */
function parseRecord(name: string, text: string): { problem: string } | { record: BuildRecord } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { problem: `not JSON: ${(err as Error).message}` };
  }
  const parsed = recordSchema.safeParse(json);
  if (!parsed.success) return { problem: describeZodError(parsed.error) };
  if (parsed.data.id !== name) return { problem: `id: is "${parsed.data.id}", not the directory's name` };
  return { record: parsed.data };
}

/** The store under a data directory: builds/<id>/, tmp/ for work directories, quarantine/ for records set aside. */
export class FileBuildStore implements BuildStore {
  private readonly buildsDir: string;
  private readonly tmpDir: string;
  private readonly quarantineDir: string;

  constructor(dataDir: string, private readonly logger: Logger) {
    this.buildsDir = path.join(dataDir, 'builds');
    this.tmpDir = path.join(dataDir, 'tmp');
    this.quarantineDir = path.join(dataDir, 'quarantine');
  }

  artifactPath(id: string, kind: ArtifactKind): string {
    return path.join(this.buildsDir, id, ARTIFACT_FILES[kind]);
  }

  async readAll(): Promise<StoredBuild[]> {
    await fs.rm(this.tmpDir, { recursive: true, force: true });
    await fs.mkdir(this.tmpDir, { recursive: true });
    await fs.mkdir(this.buildsDir, { recursive: true });

    const builds: StoredBuild[] = [];
    for (const name of await fs.readdir(this.buildsDir)) {
      if (!BUILD_ID.test(name)) continue;
      const dir = path.join(this.buildsDir, name);
      const text = await fs.readFile(path.join(dir, RECORD_FILE), 'utf8').catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return null;
        throw e;
      });
      if (text === null) {
        // The directory is made just before the first record is written: this submission was never acknowledged.
        this.logger.warn({ buildId: name }, 'discarding build directory without a record');
        await fs.rm(dir, { recursive: true, force: true });
        continue;
      }
      const read = parseRecord(name, text);
      if ('problem' in read) {
        await this.quarantine(name, read.problem);
        continue;
      }
      for (const f of await fs.readdir(dir)) if (isAtomicTemp(f)) await fs.rm(path.join(dir, f), { force: true });
      builds.push({ record: read.record, artifactsIntact: await this.artifactsIntact(read.record) });
    }
    return builds;
  }

  async write(record: BuildRecord): Promise<void> {
    const dir = path.join(this.buildsDir, record.id);
    await fs.mkdir(dir, { recursive: true });
    await writeFileAtomic(path.join(dir, RECORD_FILE), JSON.stringify(record));
  }

  async publish(id: string, produced: PipelineResult): Promise<Record<ArtifactKind, PublishedArtifact>> {
    const artifacts = {} as Record<ArtifactKind, PublishedArtifact>;
    for (const kind of ARTIFACT_KINDS) {
      const handle = await fs.open(produced[kind].path, 'r');
      await handle.sync().finally(() => handle.close());
      await fs.rename(produced[kind].path, this.artifactPath(id, kind));
      artifacts[kind] = { file: ARTIFACT_FILES[kind], size: produced[kind].size, sha256: produced[kind].sha256 };
    }
    await syncDir(path.join(this.buildsDir, id));
    return artifacts;
  }

  async removeArtifacts(id: string): Promise<void> {
    await Promise.all(ARTIFACT_KINDS.map((kind) => fs.rm(this.artifactPath(id, kind), { force: true })));
  }

  async remove(id: string): Promise<void> {
    await fs.rm(path.join(this.buildsDir, id), { recursive: true, force: true });
  }

  createWorkDir(id: string): Promise<string> {
    return fs.mkdtemp(path.join(this.tmpDir, `${id.slice(0, 16)}-`));
  }

  async removeWorkDir(dir: string): Promise<void> {
    await fs.rm(dir, { recursive: true, force: true });
  }

  private async artifactsIntact(record: BuildRecord): Promise<boolean> {
    if (!record.artifacts) return false;
    for (const kind of ARTIFACT_KINDS) {
      const st = await fs.stat(this.artifactPath(record.id, kind)).catch(() => null);
      if (!st || st.size !== record.artifacts[kind].size) return false;
    }
    return true;
  }

  /** Moves a build directory whose record cannot be trusted out of builds/, keeping it for inspection. */
  private async quarantine(name: string, problem: string): Promise<void> {
    await fs.mkdir(this.quarantineDir, { recursive: true });
    const to = path.join(this.quarantineDir, `${name}.${Date.now()}`);
    await fs.rename(path.join(this.buildsDir, name), to);
    this.logger.error({ buildId: name, problem, movedTo: to }, 'build record is not valid; set aside');
  }
}
