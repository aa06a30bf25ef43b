// Checkin records: the rendezvous between the orchestrator (registers an id) and a booted server (PUTs
// its addresses). Every change is appended to a journal before it is acknowledged, so a restart in the
// middle of an inspection keeps the registration; changes arriving together share one write.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../storage/atomic-file.js';

export interface CheckinRecord {
  id: string;
  addresses: string[];
  timestamp: string;
}

type JournalOp = { op: 'set'; record: CheckinRecord } | { op: 'delete'; id: string } | { op: 'purge' };

const JOURNAL = 'checkins.jsonl';

export class CheckinRegistry {
  private readonly records = new Map<string, CheckinRecord>();
  private readonly file: string;
  private journal: fs.FileHandle | null = null;
  private pending: string[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
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

  /** Creates the id, or resets it to the given addresses if it exists. */
  register(id: string, addresses: string[]): Promise<void> {
    return this.set({ id, addresses, timestamp: new Date().toISOString() });
  }

  /** Updates a registered id; false (and nothing written) if it was never registered. */
  async update(id: string, addresses: string[]): Promise<boolean> {
    if (!this.records.has(id)) return false;
    await this.set({ id, addresses, timestamp: new Date().toISOString() });
    return true;
  }

  async delete(id: string): Promise<boolean> {
    if (!this.records.delete(id)) return false;
    await this.append({ op: 'delete', id });
    return true;
  }

  async purge(): Promise<void> {
    this.records.clear();
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
      if (op.op === 'set') this.records.set(op.record.id, op.record);
      else if (op.op === 'delete') this.records.delete(op.id);
      else if (op.op === 'purge') this.records.clear();
    }
    await this.compact();
    this.deps.logger.info({ checkins: this.records.size }, 'checkin records loaded');
  }

  async close(): Promise<void> {
    await this.flushing;
    await this.journal?.close();
    this.journal = null;
  }

  private set(record: CheckinRecord): Promise<void> {
    this.records.set(record.id, record);
    return this.append({ op: 'set', record });
  }

  private async compact(): Promise<void> {
    await this.journal?.close();
    const lines = [...this.records.values()].map((record) => JSON.stringify({ op: 'set', record }) + '\n');
    await writeFileAtomic(this.file, lines.join(''));
    this.journalLines = lines.length;
    this.journal = await fs.open(this.file, 'a');
  }

  private append(op: JournalOp): Promise<void> {
    this.pending.push(JSON.stringify(op) + '\n');
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.flushing ??= this.flushLoop();
    return done;
  }

  private async flushLoop(): Promise<void> {
    // Let every change queued in this turn of the event loop join the same write.
    await new Promise((r) => setImmediate(r));
    while (this.pending.length > 0) {
      const batch = this.pending.join('');
      const waiters = this.waiters;
      this.journalLines += this.pending.length;
      this.pending = [];
      this.waiters = [];
      try {
        if (!this.journal) throw new Error('checkin journal is not open');
        await this.journal.write(batch);
        if (this.journalLines > 2 * this.records.size + 10_000) await this.compact();
        for (const w of waiters) w.resolve();
      } catch (err) {
        this.deps.logger.error({ err }, 'cannot write checkin journal');
        for (const w of waiters) w.reject(err as Error);
      }
    }
    this.flushing = null;
  }
}
