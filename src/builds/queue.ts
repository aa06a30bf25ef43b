// Bounded build queue: at most `concurrency` jobs run; at most `capacity` wait. A full queue refuses
// new work at once (the API answers 503) instead of growing without bound.
export class QueueFullError extends Error {
  constructor(capacity: number) {
    super(`build queue is full (${capacity} waiting); retry later`);
  }
}

export interface QueueTicket {
  /** Hands the job to the queue; the slot reserved by reserve() becomes a running or waiting job. */
  start(job: () => Promise<void>): void;
  /** Gives the reserved slot back without running anything. */
  cancel(): void;
}

export class BuildQueue {
  private running = 0;
  /** Slots promised to submissions that are still persisting their record. */
  private reserved = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly concurrency: number, private readonly capacity: number) {}

  get depth(): number {
    return this.waiting.length;
  }

  get active(): number {
    return this.running;
  }

  private hasRoom(): boolean {
    return this.running + this.waiting.length + this.reserved < this.concurrency + this.capacity;
  }

  /** Reserves a place or throws QueueFullError, so the caller can persist first and still never overfill. */
  reserve(): QueueTicket {
    if (!this.hasRoom()) throw new QueueFullError(this.capacity);
    this.reserved++;
    let used = false;
    const release = () => {
      if (used) throw new Error('queue ticket used twice');
      used = true;
      this.reserved--;
    };
    return {
      start: (job) => {
        release();
        this.enqueue(job);
      },
      cancel: release,
    };
  }

  /** Runs `job` when a slot is free, regardless of capacity: for builds accepted before a restart. */
  enqueue(job: () => Promise<void>): void {
    const start = () => {
      this.running++;
      job()
        .catch(() => {})
        .finally(() => {
          this.running--;
          this.waiting.shift()?.();
        });
    };
    if (this.running < this.concurrency) start();
    else this.waiting.push(start);
  }
}
