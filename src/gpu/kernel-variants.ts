// The kernel lab's switchboard: a researcher's WGSL file can stand in for a built-in kernel. The
// variant must declare the same bindings, entry point, overrides and `#if` defines as the file it
// replaces (its `#include` lines resolve as the built-in's do); the benchmark harness checks it against the CPU reference before timing it.

// Exactly the kernels the engine dispatches, each a shaders/NAME.wgsl with its kernels/NAME.ts
// (test/unit/kernel-names.test.ts checks both ways).
export const KERNEL_NAMES = ['argmax', 'attention', 'attention_split', 'embedding', 'logprob', 'matmul', 'matmul_gemv', 'matmul_q', 'matmul_tiled', 'matmul_affine', 'qkv_prepare', 'sample', 'spec_accept'] as const;
export type KernelName = (typeof KERNEL_NAMES)[number];

const variants = new Map<KernelName, { code: string; origin: string }>();

export function isKernelName(name: string): name is KernelName {
  return (KERNEL_NAMES as readonly string[]).includes(name);
}

/** Makes every pipeline built from now on for `kernel` use `code` (null restores the built-in). */
export function setKernelVariant(kernel: KernelName, code: string | null, origin = 'variant'): void {
  if (code === null) variants.delete(kernel);
  else variants.set(kernel, { code, origin });
}

/** Where the source of `kernel` comes from now: 'built-in' or the variant's origin. */
export function kernelOrigin(kernel: KernelName): string {
  return variants.get(kernel)?.origin ?? 'built-in';
}

/** The WGSL source a wrapper should compile for `kernel`: the variant if one is set. */
export function shaderSource(kernel: KernelName, builtIn: string): string {
  return variants.get(kernel)?.code ?? builtIn;
}
