// Runs a check inside WebGPU error scopes, so a broken kernel's validation or memory errors become
// the check's failure instead of uncaptured errors (which Dawn in Node also prints to stdout, where
// they would corrupt --json output).
import type { Gpu } from '../gpu/gpu.ts';

/** Calls `fn` with validation and out-of-memory scopes pushed; the first error caught is returned beside its value. */
export async function withErrorScope<T>(gpu: Gpu, fn: () => Promise<T>): Promise<{ value?: T; error?: string }> {
  gpu.device.pushErrorScope('validation');
  gpu.device.pushErrorScope('out-of-memory');
  let value: T | undefined;
  let thrown: string | undefined;
  try {
    value = await fn();
  } catch (e) {
    thrown = (e as Error).message;
  }
  const oom = await gpu.device.popErrorScope();
  const validation = await gpu.device.popErrorScope();
  const scoped = validation ?? oom;
  const error = scoped ? `GPU error: ${scoped.message}` : thrown;
  return { value, error: error?.trim().split('\n')[0] };
}
