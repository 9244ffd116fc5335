// How an `openelm` run ends. The process is never ended with process.exit(): that drops whatever
// stdout still holds for a slow pipe reader (a --json result was cut at 64 KiB) and can pull Dawn
// down while GPU work is in flight. Instead the run sets process.exitCode and lets Node end once
// stdout has drained and the device is gone.
//
// - A reader that closes stdout early (`openelm generate | head -c 5`) is not an error: the run is
//   aborted and ends quietly with exit code 0.
// - SIGINT / SIGTERM abort the run through `signal`; commands stop at their next checkpoint, wait
//   for submitted GPU work and free the model, and the process exits 130 / 143. A second signal
//   ends the process at once. Commands opt in with trapSignals() once they watch `signal`; the
//   others keep Node's default (the signal ends the process).
import { UsageError } from './args.ts';

/** Exit codes: 2 for every usage error (bad option, bad value, bad generate_kwargs), 1 for the rest. */
export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;
const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

export interface RunLifecycle {
  /** Aborted on SIGINT, SIGTERM or a closed stdout. */
  readonly signal: AbortSignal;
  /** From now on SIGINT / SIGTERM abort `signal` instead of ending the process. */
  trapSignals(): void;
  /** Writes to stdout and resolves once the text is handed to the OS (or stdout is gone). */
  write(text: string): Promise<void>;
  /** Records how the run ended: exit code and at most one stderr line. */
  settle(outcome: { ok: true } | { ok: false; error: unknown }): void;
}

function isEpipe(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END';
}

export function startLifecycle(): RunLifecycle {
  const controller = new AbortController();
  let stdoutClosed = false;
  let caught: 'SIGINT' | 'SIGTERM' | undefined;

  let stdoutError: unknown;
  process.stdout.on('error', (e: unknown) => {
    if (!isEpipe(e)) stdoutError ??= e;
    stdoutClosed = true;
    controller.abort(new Error('stdout was closed'));
  });
  let trapped = false;

  return {
    signal: controller.signal,
    trapSignals(): void {
      if (trapped) return;
      trapped = true;
      for (const sig of ['SIGINT', 'SIGTERM'] as const) {
        process.on(sig, () => {
          if (caught) process.exit(SIGNAL_EXIT[sig]); // a second signal: the user means it, stop now
          caught = sig;
          controller.abort(new Error(`interrupted (${sig})`));
        });
      }
    },
    write(text: string): Promise<void> {
      if (stdoutClosed || process.stdout.destroyed) return Promise.resolve();
      return new Promise((resolve) => {
        process.stdout.write(text, () => resolve()); // an error here also reaches the 'error' handler
      });
    },
    settle(outcome): void {
      if (caught) {
        process.stderr.write(`openelm: interrupted by ${caught}\n`);
        process.exitCode = SIGNAL_EXIT[caught];
        return;
      }
      // The reader closing stdout early ends the run quietly; any other stdout failure is reported.
      if (stdoutClosed && stdoutError === undefined) {
        process.exitCode = 0;
        return;
      }
      if (outcome.ok && stdoutError === undefined) {
        process.exitCode = 0;
        return;
      }
      const e = stdoutError !== undefined ? new Error(`cannot write to stdout (${(stdoutError as Error).message})`) : outcome.ok ? undefined : outcome.error;
      const msg = e instanceof Error ? e.message : String(e);
      process.stderr.write(`openelm: ${msg.split('\n')[0]}\n`);
      if (process.env.OPENELM_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
      process.exitCode = e instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
    },
  };
}

/** Lets GPU work already submitted finish before the model's buffers and device are destroyed. */
export async function disposeWhenIdle(model: { gpu: { device: GPUDevice }; dispose(): void }): Promise<void> {
  try {
    await model.gpu.device.queue.onSubmittedWorkDone();
  } finally {
    model.dispose();
  }
}
