// One cache of in-flight and settled promises by key: concurrent callers of the same key share one
// computation, a rejected computation is evicted so that the next caller tries again, and an entry
// made for another version of its source (a file's stamp, say) is replaced rather than served.
export class PromiseCache<K, V> {
  private readonly entries = new Map<K, { version: string | undefined; promise: Promise<V> }>();

  /**
   * @param keep decides whether a fulfilled value stays cached (default: always); a value it refuses
   *   is handed to the callers that waited for it and then forgotten.
   */
  constructor(private readonly keep: (value: V) => boolean = () => true) {}

  /** The cached promise for `key` at `version`, or the one `make` starts now. */
  get(key: K, make: () => Promise<V>, version?: string): Promise<V> {
    const entry = this.entries.get(key);
    if (entry !== undefined && entry.version === version) return entry.promise;
    const promise = make();
    const made = { version, promise };
    this.entries.set(key, made);
    // Evict only this entry: a newer one under the same key must survive an older one's failure.
    const evict = () => {
      if (this.entries.get(key) === made) this.entries.delete(key);
    };
    promise.then((value) => {
      if (!this.keep(value)) evict();
    }, evict);
    return promise;
  }

  /** The settled or pending promise for `key`, without starting anything. */
  peek(key: K): Promise<V> | undefined {
    return this.entries.get(key)?.promise;
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
