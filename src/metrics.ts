// Prometheus metrics with prom-client, on a registry owned by each Metrics instance (never the global
// one): the service's counters and build-duration histogram, gauges read from their owners at scrape
// time, and prom-client's default Node process metrics (memory, CPU, event-loop lag, GC, handles).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const DURATION_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600];

export interface GaugeSources {
  buildsByState(): Record<string, number>;
  queueDepth(): number;
  buildsRunning(): number;
  checkins(): number;
  /** Each build file with reads (delivery/tracker.ts): one sample per gauge below. */
  deliveries?(): Iterable<DeliverySample>;
}

export interface DeliverySample {
  build: string;
  file: string;
  bytesServed: number;
  coveredRatio: number;
  rateBytesPerSecond: number;
  /** Unix seconds of the last read. */
  lastRead: number;
}

/** Increments of one label set not yet added to its prom-client counter. */
interface PendingCell {
  labels: Record<string, string>;
  pending: number;
}

/**
 * A prom-client counter fed from plain number cells. Counting happens on every artifact response and
 * every chunk written; prom-client's `inc` builds a label-hash string on every call, even through a
 * cached child (an order of magnitude more than a cached cell's `+=` in a micro-benchmark). So callers
 * keep one cell per label set and add to it, and the cells are added to the counter when it is
 * collected.
 */
class BatchedCounter {
  private readonly cells: PendingCell[] = [];

  constructor(name: string, help: string, labelNames: string[], registry: Registry) {
    const cells = this.cells;
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        for (const cell of cells) {
          if (cell.pending === 0) continue;
          this.inc(cell.labels, cell.pending);
          cell.pending = 0;
        }
      },
    });
  }

  /** A new cell for one label set; the caller caches it. */
  cell(labels: Record<string, string>): PendingCell {
    const cell = { labels, pending: 0 };
    this.cells.push(cell);
    return cell;
  }
}

export class Metrics {
  /** Text format 0.0.4, as `render()` writes it. */
  readonly contentType: string;
  private readonly registry = new Registry();
  private readonly duration: Histogram<'result'>;
  private readonly httpRequests: BatchedCounter;
  private readonly artifactBytes: BatchedCounter;
  /** route → method → status → cell: no string is built per request. */
  private readonly requestCells = new Map<string, Map<string, Map<number, PendingCell>>>();
  private readonly byteCells = new Map<string, PendingCell>();
  private sources: GaugeSources | null = null;

  constructor() {
    this.contentType = this.registry.contentType;
    this.duration = new Histogram({
      name: 'uod_build_duration_seconds',
      help: 'Wall time of finished builds.',
      labelNames: ['result'],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
    this.artifactBytes = new BatchedCounter('uod_artifact_bytes_served_total', 'Artifact body bytes written to clients.', ['file'], this.registry);
    this.httpRequests = new BatchedCounter('uod_http_requests_total', 'HTTP requests answered, by route and status.', ['method', 'route', 'status'], this.registry);
    collectDefaultMetrics({ register: this.registry });
  }

  /** Registers the gauges, read from their owners at every scrape. Call once. */
  setSources(sources: GaugeSources): void {
    if (this.sources) throw new Error('metrics sources are already set');
    this.sources = sources;
    const registers = [this.registry];
    new Gauge({
      name: 'uod_builds',
      help: 'Builds known to the service, by state.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(sources.buildsByState())) this.set({ state }, n);
      },
    });
    const scalar = (name: string, help: string, read: () => number) =>
      new Gauge({ name, help, registers, collect() { this.set(read()); } });
    scalar('uod_build_queue_depth', 'Builds waiting for a build slot.', () => sources.queueDepth());
    scalar('uod_builds_running', 'Builds executing now.', () => sources.buildsRunning());
    scalar('uod_checkins', 'Registered checkin ids.', () => sources.checkins());
    const deliveries = sources.deliveries?.bind(sources);
    if (!deliveries) return;
    // One series per build file that was read; a deleted build's series go with it.
    const perFile = (name: string, help: string, read: (s: DeliverySample) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['build', 'file'],
        registers,
        collect() {
          this.reset();
          for (const s of deliveries()) this.set({ build: s.build, file: s.file }, read(s));
        },
      });
    perFile('uod_delivery_bytes_served', 'Artifact body bytes sent to readers of this build file, re-reads included.', (s) => s.bytesServed);
    perFile('uod_delivery_covered_ratio', 'Share of the build file (0 to 1) covered by the distinct ranges readers received.', (s) => s.coveredRatio);
    perFile('uod_delivery_rate_bytes_per_second', 'Bytes per second sent to readers of the build file over the last 5 s.', (s) => s.rateBytesPerSecond);
    perFile('uod_delivery_last_read_timestamp_seconds', 'When a reader last received bytes of the build file (Unix time).', (s) => s.lastRead);
  }

  countRequest(method: string, route: string, status: number): void {
    let byMethod = this.requestCells.get(route);
    if (!byMethod) this.requestCells.set(route, (byMethod = new Map()));
    let byStatus = byMethod.get(method);
    if (!byStatus) byMethod.set(method, (byStatus = new Map()));
    let cell = byStatus.get(status);
    if (!cell) byStatus.set(status, (cell = this.httpRequests.cell({ method, route, status: String(status) })));
    cell.pending++;
  }

  countArtifactBytes(file: string, bytes: number): void {
    let cell = this.byteCells.get(file);
    if (!cell) this.byteCells.set(file, (cell = this.artifactBytes.cell({ file })));
    cell.pending += bytes;
  }

  observeBuild(result: 'completed' | 'failed', seconds: number): void {
    this.duration.observe({ result }, seconds);
  }

  /**
   * The exposition text (format 0.0.4, see `contentType`). prom-client separates families with an
   * empty line; the format allows it, but the service has always written one line per sample or
   * comment (and openapi.yaml says so), so empty lines are dropped.
   */
  async render(): Promise<string> {
    return (await this.registry.metrics()).replace(/\n\n+/g, '\n');
  }
}
