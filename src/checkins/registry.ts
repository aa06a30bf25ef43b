// Checkin records (an id the orchestrator registers, the addresses a booted server PUTs) and their
// journal: a change is appended before it is applied and acknowledged, and the journal is compacted at start.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../storage/atomic-file.js';
import { StorageError } from '../storage/errors.js';
import { writeAllAt } from '../storage/write-all.js';

export interface CheckinRecord {
  id: string;
  addresses: string[];
  timestamp: string;
}

type JournalOp = { op: 'set'; record: CheckinRecord } | { op: 'delete'; id: string } | { op: 'purge' };

interface PendingChange {
  line: string;
  op: JournalOp;
  resolve: () => void;
  reject: (e: Error) => void;
}

const JOURNAL = 'checkins.jsonl';

export class CheckinRegistry {
  private readonly records = new Map<string, CheckinRecord>();
  private readonly file: string;
  private journal: fs.FileHandle | null = null;
  /** Bytes of the journal that hold complete, acknowledged lines. */
  private journalBytes = 0;
  private pending: PendingChange[] = [];
  private flushing: Promise<void> | null = null;
  private journalLines = 0;

  constructor(private readonly deps: { dataDir: string; logger: Logger }) {
    this.file = path.join(deps.dataDir, JOURNAL);
  }

  get size(): number {
    return this.records.size;
  }

  get(id: string): CheckinRecord | undefined {
    return this.records.get(id);
  }

  list(): CheckinRecord[] {
    return [...this.records.values()];
  }

  /** Creates the id, or resets it to the given addresses if it exists. Throws StorageError if it can't be recorded. */
  register(id: string, addresses: string[]): Promise<void> {
    return this.append({ op: 'set', record: { id, addresses, timestamp: new Date().toISOString() } });
  }

  /** Updates a registered id; false (and nothing written) if it was never registered. */
  async update(id: string, addresses: string[]): Promise<boolean> {
    if (!this.records.has(id)) return false;
    await this.append({ op: 'set', record: { id, addresses, timestamp: new Date().toISOString() } });
    return true;
  }

  async delete(id: string): Promise<boolean> {
    if (!this.records.has(id)) return false;
    await this.append({ op: 'delete', id });
    return true;
  }

  async purge(): Promise<void> {
    await this.append({ op: 'purge' });
  }

  /** Replays the journal, then rewrites it compactly. Call once, before listening. */
  async load(): Promise<void> {
    await fs.mkdir(this.deps.dataDir, { recursive: true });
    const text = await fs.readFile(this.file, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return '';
      throw e;
    });
    for (const line of text.split('\n')) {
      if (!line) continue;
      let op: JournalOp;
      try {
        op = JSON.parse(line) as JournalOp;
      } catch {
        continue; // a line torn by a crash mid-write was never acknowledged
      }
      this.apply(op);
    }
    await this.compact();
    this.deps.logger.info({ checkins: this.records.size }, 'checkin records loaded');
  }

  async close(): Promise<void> {
    await this.flushing;
    await this.journal?.close();
    this.journal = null;
  }

  /** The one place a change reaches memory: at load (replay) and after its journal write succeeded. */
  private apply(op: JournalOp): void {
    if (op.op === 'set') this.records.set(op.record.id, op.record);
    else if (op.op === 'delete') this.records.delete(op.id);
    else if (op.op === 'purge') this.records.clear();
  }

  private async compact(): Promise<void> {
    const snapshot = Buffer.from([...this.records.values()].map((record) => JSON.stringify({ op: 'set', record }) + '\n').join(''));
    // The new file replaces the old by rename; until that succeeded the old journal stays in use.
    await writeFileAtomic(this.file, snapshot);
    const previous = this.journal;
    // r+ with explicit positions (not O_APPEND): a failed write can be cut back off with truncate.
    this.journal = await fs.open(this.file, 'r+');
    await previous?.close();
    this.journalLines = this.records.size;
    this.journalBytes = snapshot.length;
  }

  private append(op: JournalOp): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.pending.push({ line: JSON.stringify(op) + '\n', op, resolve, reject }));
    this.flushing ??= this.flushLoop();
    return done;
  }

  private async flushLoop(): Promise<void> {
    // Every change queued in this turn of the event loop joins the same write.
    await new Promise((r) => setImmediate(r));
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      const data = Buffer.from(batch.map((c) => c.line).join(''));
      try {
        if (!this.journal) throw new Error('checkin journal is not open');
        await writeAllAt(this.journal, data, this.journalBytes);
        this.journalBytes += data.length;
        this.journalLines += batch.length;
      } catch (err) {
        // Cut off whatever part of the batch reached the file, so the next write starts on a line boundary.
        await this.journal?.truncate(this.journalBytes).catch(() => {});
        this.deps.logger.error({ err }, 'cannot write checkin journal');
        const failure = new StorageError(`cannot record the checkin: ${(err as Error).message}`);
        for (const c of batch) c.reject(failure);
        continue;
      }
      for (const c of batch) {
        this.apply(c.op);
        c.resolve();
      }
      if (this.journalLines > 2 * this.records.size + 10_000) {
        await this.compact().catch((err) => this.deps.logger.warn({ err }, 'checkin journal compaction failed; will retry'));
      }
    }
    this.flushing = null;
  }
}
