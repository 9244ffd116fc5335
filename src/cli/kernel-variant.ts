// `--kernel-variant KERNEL=FILE`: a researcher's WGSL file to stand in for a built-in kernel
// (src/gpu/kernel-variants.ts), shared by `openelm bench` and `openelm doctor`.
import { readFileSync } from 'node:fs';
import { UsageError } from './args.ts';

export interface KernelVariantFile<K extends string> {
  kernel: K;
  file: string;
  code: string;
}

/** Parses and reads KERNEL=FILE; `allowed` are the kernels the command can swap, `hint` says what to do otherwise. */
export function parseKernelVariant<K extends string>(spec: string, allowed: readonly K[], hint: string): KernelVariantFile<K> {
  const m = /^([a-z_]+)=(.+)$/.exec(spec);
  if (!m) throw new UsageError(`--kernel-variant must be KERNEL=FILE, got "${spec}"`);
  const kernel = m[1];
  if (!(allowed as readonly string[]).includes(kernel)) throw new UsageError(`--kernel-variant: "${kernel}" is not one of ${allowed.join(', ')}${hint ? `; ${hint}` : ''}`);
  try {
    return { kernel: kernel as K, file: m[2], code: readFileSync(m[2], 'utf8') };
  } catch (e) {
    throw new UsageError(`--kernel-variant: cannot read ${m[2]} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
