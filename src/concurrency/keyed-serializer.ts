// Runs tasks one after another per key (a build id, say) while different keys run freely: two
// writers of the same file can not interleave, and a failed task does not block the next one.
export class KeyedSerializer<K> {
  private readonly tails = new Map<K, Promise<unknown>>();

  run<T>(key: K, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.then(() => undefined, () => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Resolves once every task queued so far for `key` has settled. */
  async idle(key: K): Promise<void> {
    await this.tails.get(key);
  }

  get pending(): number {
    return this.tails.size;
  }
}
