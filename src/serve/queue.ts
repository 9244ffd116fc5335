// One GPU runs one generation at a time. Requests wait their turn here in arrival order (fair:
// first come, first served); the wait is bounded, so a burst is refused with a clear 429 instead
// of piling up memory and latency, and a client that leaves while waiting frees its place.
import { ApiError } from './errors.ts';

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export interface QueueState {
  running: number;
  waiting: number;
  max_waiting: number;
}

export class RequestQueue {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  private closedWith?: ApiError;

  constructor(readonly maxWaiting: number) {
    if (!Number.isSafeInteger(maxWaiting) || maxWaiting < 0) throw new Error(`the queue length must be an integer >= 0, got ${maxWaiting}`);
  }

  state(): QueueState {
    return { running: this.running, waiting: this.waiting.length, max_waiting: this.maxWaiting };
  }

  /** Throws the 429 acquire() would give now: lets a request be refused before any work on it. */
  checkRoom(): void {
    if (this.closedWith) throw this.closedWith;
    if (this.running > 0 && this.waiting.length >= this.maxWaiting) {
      throw new ApiError(429, `the server is busy: 1 request is running and ${this.waiting.length} are waiting, the most it queues (--max-queue ${this.maxWaiting}); retry later`, 'rate_limit_error', null, 'queue_full');
    }
  }

  /** Resolves to this request's release function once it may run; refuses when the queue is full. */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    signal.throwIfAborted();
    if (this.running === 0 && this.waiting.length === 0) {
      this.running = 1;
      return Promise.resolve(this.releaser());
    }
    try {
      this.checkRoom();
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  /** Refuses every waiting and future request with `error` (shutdown); the running one finishes. */
  close(error: ApiError): void {
    this.closedWith = error;
    for (const w of this.waiting.splice(0)) {
      w.signal.removeEventListener('abort', w.onAbort);
      w.reject(error);
    }
  }

  /** Resolves once nothing runs. */
  async idle(): Promise<void> {
    while (this.running > 0) await new Promise<void>((r) => this.onIdle.push(r));
  }

  private readonly onIdle: (() => void)[] = [];

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next) {
        next.signal.removeEventListener('abort', next.onAbort);
        next.resolve(this.releaser());
        return;
      }
      this.running = 0;
      for (const r of this.onIdle.splice(0)) r();
    };
  }
}
