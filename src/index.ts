// Node entry point of the library: `import { loadModel } from 'openelm-webgpu'`.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfig } from './config/config.ts';
import { derivePlan } from './config/plan.ts';
import { acquireDevice } from './gpu/device.ts';
import { Gpu } from './gpu/gpu.ts';
import { nodeGpu } from './gpu/node-gpu.ts';
import { openCheckpoint } from './io/node-source.ts';
import { OpenElmModel, type ModelOptions } from './runtime/model.ts';

export { OpenElmModel, DTYPES, type DType, type ModelOptions, type GenerateOptions } from './runtime/model.ts';
export type { GenerationStats } from './generate/greedy.ts';
export type { ModelPlan, LayerPlan } from './config/plan.ts';

export interface LoadOptions extends ModelOptions {
  /** Reuse a device (several models on one GPU); by default each model gets its own. */
  gpu?: Gpu;
}

/** Reads and validates `dir/config.json` and derives the layer plan. */
export async function loadPlan(dir: string) {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new Error(`${file}: cannot read the model's config.json (is ${dir} a model folder in the Hugging Face layout?)`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return derivePlan(parseConfig(json, file), file);
}

export async function createGpu(): Promise<Gpu> {
  return new Gpu(await acquireDevice(await nodeGpu()));
}

/** Loads a model from a folder in the Hugging Face layout onto the GPU. */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<OpenElmModel> {
  const plan = await loadPlan(dir);
  const tensors = await openCheckpoint(dir);
  const gpu = opts.gpu ?? (await createGpu());
  try {
    return await OpenElmModel.create(gpu, plan, tensors, { ...opts, ownsGpu: !opts.gpu });
  } catch (e) {
    if (!opts.gpu) gpu.destroy();
    throw e;
  }
}
