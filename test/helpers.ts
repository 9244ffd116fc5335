// Shared test helpers: one GPU device for the whole test file, seeded random data, comparisons.
import { acquireDevice } from '../src/gpu/device.ts';
import { Gpu } from '../src/gpu/gpu.ts';
import { nodeGpu } from '../src/gpu/node-gpu.ts';
import { seededRandom } from '../src/util/random.ts';
import { medianSubmitMs } from '../src/gpu/dispatch.ts';

let shared: Promise<Gpu> | undefined;
export function testGpu(): Promise<Gpu> {
  shared ??= nodeGpu().then(acquireDevice).then((a) => new Gpu(a));
  return shared;
}

/** Deterministic PRNG (src/util/random.ts, the one the generator samples with) so failures reproduce. */
export const rng = seededRandom;

/** Median wall ms of `runs` submits of `ds`, each waited for. Reported by timing tests, never asserted. */
export const timeDispatches = medianSubmitMs;


export function randn(r: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Fails with the worst index when |a-b| > atol + rtol*|b| anywhere. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol = 0, what = 'values'): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    const excess = Number.isNaN(d) ? Infinity : d - (atol + rtol * Math.abs(expected[i]));
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    throw new Error(`${what}: index ${worst} is ${actual[worst]}, expected ${expected[worst]} (atol ${atol}, rtol ${rtol})`);
  }
}

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root: the nearest folder above this (bundled) test file with a package.json. */
export const repoRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
})();

/** The reference fixtures: test/fixtures in the repository, or $OPENELM_FIXTURES (another folder of fixtures). */
export function fixtureDir(name: string): string {
  return join(process.env.OPENELM_FIXTURES ?? resolve(repoRoot, 'test/fixtures'), name);
}

export interface FixturePrompt {
  name: string;
  input_ids: number[];
  logits_positions: number[];
  logits: string;
  residual_last: string;
  greedy: { tokens: number[]; step_logits: string; step_margins: number[] };
}

export interface Fixture {
  dir: string;
  manifest: { prompts: FixturePrompt[]; derived_config: Record<string, unknown>; tolerances: Record<string, unknown> };
  array(name: string): Float32Array;
}

export function loadFixture(name: string): Fixture {
  const dir = fixtureDir(name);
  const manifest = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
  const bin = readFileSync(join(dir, manifest.arrays_layout.file));
  return {
    dir,
    manifest,
    array(n: string): Float32Array {
      const a = manifest.arrays_layout.arrays[n];
      if (!a) throw new Error(`fixture ${name} has no array ${n}`);
      const start = bin.byteOffset + a.offset; // copy: a Buffer's offset need not be 4-aligned
      return new Float32Array(bin.buffer.slice(start, start + 4 * a.count));
    },
  };
}

/** A safetensors file from a header (object or raw text) and data bytes; `len` overrides N. */
export function rawFile(header: unknown, data: Uint8Array | number = 0, len?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + d.length);
  new DataView(out.buffer).setBigUint64(0, len ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(d, 8 + json.length);
  return out;
}

/** A small OpenELM config with Llama-2's 32000-token vocabulary, so real text fits it (random weights). */
export const LLAMA_VOCAB_CONFIG = {
  model_type: 'openelm', num_transformer_layers: 2, model_dim: 64, head_dim: 16, num_gqa_groups: 2,
  qkv_multipliers: [0.5, 1.0], ffn_multipliers: [0.5, 1.0], ffn_dim_divisor: 16, vocab_size: 32000,
  max_context_length: 128, rope_freq_constant: 10000, rope_max_length: 256, share_input_output_layers: true,
  normalize_qk_projections: true, ffn_with_glu: true, bos_token_id: 1, eos_token_id: 2,
};

/** A small chat template in the shape of the OpenELM-Instruct ones (Zephyr-style role tags). */
export const CHAT_TEMPLATE =
  '{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}';
