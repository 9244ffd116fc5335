// The larger released shapes (1.1B, 3B) beside the main model: synthetic random-weight
// checkpoints of each size, written once into the cache folder, then load time, peak GPU memory
// and decode speed (at the context lengths asked for) per weight format, on a device of each
// format's own: with --browser-limits, under the 128 MiB binding a browser gives.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { releasedConfig, type ReleasedSize } from '../src/config/released.ts';
import { synthesizeCheckpoint } from '../src/io/synth.ts';
import { syntheticDir } from '../src/cli/default-model.ts';
import { loadPlan } from '../src/index.ts';
import { benchFormat, type FormatResult, type ModelBenchOptions } from './model.ts';

export interface SizeResult {
  size: string;
  dir: string;
  params: number;
  layers: number;
  model_dim: number;
  formats: FormatResult[];
}

/** The synthetic checkpoint of a released size (seed 0, F16), written on first use. */
export async function syntheticModel(size: ReleasedSize, log: (s: string) => void): Promise<string> {
  const dir = syntheticDir(size, 0);
  if (!existsSync(join(dir, 'model.safetensors'))) {
    log(`writing a synthetic OpenELM-${size} checkpoint (random weights) to ${dir} ...`);
    const tmp = `${dir}.partial-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    await synthesizeCheckpoint(tmp, releasedConfig(size), { dtype: 'F16', seed: 0 });
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  return dir;
}

/** Each size in each format: `base` with the size's folder and the format filled in. */
export async function benchSizes(
  sizes: { size: string; dir: string }[],
  formats: { label: string; dtype: ModelBenchOptions['dtype']; foldNorms: boolean }[],
  base: Omit<ModelBenchOptions, 'dir' | 'dtype' | 'label' | 'foldNorms'>,
  log: (s: string) => void,
): Promise<SizeResult[]> {
  const out: SizeResult[] = [];
  for (const s of sizes) {
    const plan = await loadPlan(s.dir);
    const r: SizeResult = { size: s.size, dir: s.dir, params: plan.paramCount, layers: plan.numLayers, model_dim: plan.modelDim, formats: [] };
    for (const f of formats) {
      log(`${s.size} ${f.label}:`);
      r.formats.push(await benchFormat({ ...base, dir: s.dir, dtype: f.dtype, foldNorms: f.foldNorms, label: f.label }, (x) => log(x)));
    }
    out.push(r);
  }
  return out;
}

/** Headline figures of the context runs and the larger sizes, flat, into the result's summary. */
export function summarizeContexts(s: Record<string, number | string>, key: string, f: FormatResult): void {
  for (const c of f.contexts ?? []) {
    s[`${key}.ctx${c.requested}.decode_tok_s`] = c.tokens_per_s.median;
    if (c.breakdown?.roofline_fraction !== undefined) s[`${key}.ctx${c.requested}.roofline_fraction`] = c.breakdown.roofline_fraction;
  }
}

export function summarizeSizes(s: Record<string, number | string>, sizes: SizeResult[]): void {
  for (const z of sizes) {
    for (const f of z.formats) {
      const key = `sizes.${z.size}.${f.dtype}`;
      if (!f.ok) {
        s[`${key}.error`] = f.error ?? 'failed';
        continue;
      }
      if (f.load_ms !== undefined) s[`${key}.load_s`] = f.load_ms / 1000;
      if (f.peak_gpu_bytes !== undefined) s[`${key}.peak_gpu_mib`] = f.peak_gpu_bytes / 2 ** 20;
      if (f.decode) s[`${key}.decode_tok_s`] = f.decode.tokens_per_s.median;
      summarizeContexts(s, key, f);
    }
  }
}
