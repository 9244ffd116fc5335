// The checkpoint the CLI uses when no --model is given: random weights in the exact OpenELM-270M
// shape, written once to the cache and reused.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { releasedConfig } from '../config/released.ts';
import { SYNTH_SCHEME, synthesizeCheckpoint } from '../io/synth.ts';
import { cacheRoot } from '../io/hub.ts';

export { cacheRoot };

export function syntheticDir(size: string, seed: number): string {
  return join(cacheRoot(), `synthetic-OpenELM-${size}-F16-seed${seed}-v${SYNTH_SCHEME}`);
}

/** The embedded default: a random-weight checkpoint of the OpenELM-270M shape, made once and cached. */
export async function defaultModel(quiet: boolean): Promise<string> {
  const dir = syntheticDir('270M', 0);
  if (!existsSync(join(dir, 'model.safetensors'))) {
    if (!quiet) process.stderr.write(`writing a synthetic OpenELM-270M checkpoint (random weights) to ${dir} ...\n`);
    const tmp = `${dir}.partial-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    await synthesizeCheckpoint(tmp, releasedConfig('270M'), { dtype: 'F16', seed: 0 });
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  process.stderr.write(`no --model given: using RANDOM WEIGHTS in the exact OpenELM-270M shape (${dir}); output is meaningless text\n`);
  return dir;
}
