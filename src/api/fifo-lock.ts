// One model has one KV cache and one set of activation buffers, so two calls that interleave their
// GPU passes corrupt each other. A FifoLock serialises them: each caller waits for every earlier
// one, in the order they asked, so calls complete in call order and never interleave.

export class FifoLock {
  private tail: Promise<void> = Promise.resolve();

  /** Resolves, after every earlier holder has released, to this holder's release function. */
  acquire(): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const prev = this.tail;
    this.tail = prev.then(() => mine);
    let released = false;
    return prev.then(() => () => {
      if (!released) release();
      released = true;
    });
  }

  /** Runs `f` while holding the lock. */
  async run<T>(f: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await f();
    } finally {
      release();
    }
  }

  /**
   * Wraps an async generator so it holds the lock from its first next() until it finishes, throws
   * or is return()ed (a `break` out of for-await does that).
   */
  async *hold<T>(make: () => AsyncGenerator<T>): AsyncGenerator<T> {
    const release = await this.acquire();
    try {
      yield* make();
    } finally {
      release();
    }
  }
}
