// What the readers of each build's artifacts did, kept in memory while the build exists: bytes
// served per file, the share of the file covered by distinct ranges (a union: BMCs read some ranges
// twice), first and last read, the current rate, and the readers' addresses. The artifact server
// reports each chunk it writes; the API and /metrics read views. Nothing here survives a restart.
import type { ArtifactKind } from '../image/artifacts.js';
import { Coverage } from './coverage.js';

/** The rate is over the last RATE_WINDOW_S seconds, in one-second buckets. */
const RATE_WINDOW_S = 5;
/** A fleet's BMCs and firmware: more distinct readers than this of one file are counted, not listed. */
const MAX_READERS = 32;

export interface FileDelivery {
  /** The file's size, the denominator of the share covered. */
  size: number;
  /** Body bytes written to readers, re-reads included. */
  bytesServed: number;
  /** Distinct bytes of the file that reached a reader. */
  coveredBytes: number;
  /** coveredBytes / size, as a percentage with two decimals (100 for an empty file read once). */
  coveredPercent: number;
  /** ISO 8601, or null before the first byte. */
  firstReadAt: string | null;
  lastReadAt: string | null;
  /** Bytes per second over the last few seconds (0 when nothing was read in that time). */
  rateBytesPerSecond: number;
  /** Distinct reader addresses, in the order they first read (at most MAX_READERS). */
  readers: string[];
  /** Distinct readers in all, listed or not. */
  readerCount: number;
}

class FileState {
  readonly coverage = new Coverage();
  bytesServed = 0;
  firstReadMs = 0;
  lastReadMs = 0;
  readonly readers: string[] = [];
  private readonly seen = new Set<string>();
  /** Bytes per whole second, for the last RATE_WINDOW_S seconds: [second, bytes]. */
  private readonly buckets: Array<[number, number]> = [];

  constructor(readonly size: number) {}

  reader(address: string): void {
    if (this.seen.has(address)) return;
    this.seen.add(address);
    if (this.readers.length < MAX_READERS) this.readers.push(address);
  }

  get readerCount(): number {
    return this.seen.size;
  }

  served(offset: number, bytes: number, nowMs: number): void {
    if (this.firstReadMs === 0) this.firstReadMs = nowMs;
    this.lastReadMs = nowMs;
    this.bytesServed += bytes;
    this.coverage.add(offset, offset + bytes);
    const second = Math.floor(nowMs / 1000);
    const last = this.buckets.at(-1);
    if (last !== undefined && last[0] === second) last[1] += bytes;
    else {
      this.buckets.push([second, bytes]);
      if (this.buckets.length > RATE_WINDOW_S + 1) this.buckets.shift();
    }
  }

  /** Bytes in the last RATE_WINDOW_S one-second buckets (the current one included) per second of them; fewer seconds at the start of a transfer. */
  rate(nowMs: number): number {
    const second = Math.floor(nowMs / 1000);
    const from = second - RATE_WINDOW_S + 1;
    let bytes = 0;
    for (const [s, b] of this.buckets) if (s >= from && s <= second) bytes += b;
    if (bytes === 0) return 0;
    const seconds = Math.min(RATE_WINDOW_S, second - Math.floor(this.firstReadMs / 1000) + 1);
    return Math.round(bytes / seconds);
  }
}

export class DeliveryTracker {
  private readonly builds = new Map<string, Map<ArtifactKind, FileState>>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The state of one file of one build, made on its first read; the artifact server keeps it for the
   * response and calls `served` per chunk.
   */
  file(buildId: string, file: ArtifactKind, size: number): FileState {
    let files = this.builds.get(buildId);
    if (files === undefined) {
      files = new Map();
      this.builds.set(buildId, files);
    }
    let state = files.get(file);
    if (state === undefined) {
      state = new FileState(size);
      files.set(file, state);
    }
    return state;
  }

  /** Records `bytes` written from `offset` of `state`'s file. */
  served(state: FileState, offset: number, bytes: number): void {
    state.served(offset, bytes, this.now());
  }

  /** The build's delivery per file, given its published files' sizes; a file nobody read yet has zeros. */
  view(buildId: string, files: Record<ArtifactKind, { size: number }>): Record<ArtifactKind, FileDelivery> {
    const states = this.builds.get(buildId);
    const nowMs = this.now();
    const one = (file: ArtifactKind): FileDelivery => {
      const s = states?.get(file);
      const size = s?.size ?? files[file].size;
      if (s === undefined) {
        return { size, bytesServed: 0, coveredBytes: 0, coveredPercent: 0, firstReadAt: null, lastReadAt: null, rateBytesPerSecond: 0, readers: [], readerCount: 0 };
      }
      const covered = s.coverage.covered;
      return {
        size,
        bytesServed: s.bytesServed,
        coveredBytes: covered,
        coveredPercent: size === 0 ? (s.readerCount > 0 ? 100 : 0) : Math.floor((covered / size) * 10_000) / 100,
        firstReadAt: s.firstReadMs ? new Date(s.firstReadMs).toISOString() : null,
        lastReadAt: s.lastReadMs ? new Date(s.lastReadMs).toISOString() : null,
        rateBytesPerSecond: s.rate(nowMs),
        readers: [...s.readers],
        readerCount: s.readerCount,
      };
    };
    return { uki: one('uki'), iso: one('iso') };
  }

  /** Every build file with reads, for /metrics. */
  *samples(): Generator<{ build: string; file: ArtifactKind; bytesServed: number; coveredRatio: number; rateBytesPerSecond: number; lastRead: number }> {
    const nowMs = this.now();
    for (const [build, files] of this.builds) {
      for (const [file, s] of files) {
        yield {
          build,
          file,
          bytesServed: s.bytesServed,
          coveredRatio: s.size === 0 ? 1 : s.coverage.covered / s.size,
          rateBytesPerSecond: s.rate(nowMs),
          lastRead: s.lastReadMs / 1000,
        };
      }
    }
  }

  /** Forgets a removed build. */
  forget(buildId: string): void {
    this.builds.delete(buildId);
  }
}

export type { FileState };
