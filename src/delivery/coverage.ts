// The distinct bytes of a file that readers have received: a sorted set of disjoint half-open
// intervals, merged as they touch. Readers stream in order, so nearly every addition extends the
// interval the previous one ended; that case costs no search.

export class Coverage {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  /** Index of the interval the last addition ended in. */
  private hint = -1;
  private total = 0;

  /** Bytes covered by the union of every range added. */
  get covered(): number {
    return this.total;
  }

  /** Number of disjoint intervals (how fragmented the reads were). */
  get intervals(): number {
    return this.starts.length;
  }

  /** Adds [start, end). */
  add(start: number, end: number): void {
    if (!(end > start)) return;
    const h = this.hint;
    if (h >= 0 && this.starts[h]! <= start && start <= this.ends[h]! && (h + 1 === this.starts.length || end < this.starts[h + 1]!)) {
      if (end > this.ends[h]!) {
        this.total += end - this.ends[h]!;
        this.ends[h] = end;
      }
      return;
    }
    // First interval that ends at or after `start` (it may touch or overlap the new one).
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! < start) lo = mid + 1;
      else hi = mid;
    }
    let last = lo;
    let mergedStart = start;
    let mergedEnd = end;
    let removed = 0;
    while (last < this.starts.length && this.starts[last]! <= end) {
      mergedStart = Math.min(mergedStart, this.starts[last]!);
      mergedEnd = Math.max(mergedEnd, this.ends[last]!);
      removed += this.ends[last]! - this.starts[last]!;
      last++;
    }
    this.starts.splice(lo, last - lo, mergedStart);
    this.ends.splice(lo, last - lo, mergedEnd);
    this.total += mergedEnd - mergedStart - removed;
    this.hint = lo;
  }
}
