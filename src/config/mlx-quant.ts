// The `quantization` entry MLX (mlx-lm's convert / nn.quantize) writes into config.json:
// {"group_size": G, "bits": B} (plus "mode": "affine" in newer versions), optionally followed by
// per-module overrides keyed by the module's path ("transformer.layers.0.attn.qkv_proj": false, or
// {"group_size", "bits"}). We take the affine mode with B = 4 or 8 and G = 32, 64 or 128; an
// override that repeats the model's settings is accepted, any other (a module left in floats, or
// quantized differently) is refused: every matrix of the model must share one format.
import { describeValue, isObject } from '../util/json.ts';

export interface MlxQuantization {
  bits: 4 | 8;
  groupSize: number;
}

const BITS = [4, 8];
const GROUPS = [32, 64, 128];

/** undefined when config.json has no `quantization` entry; else the settings, or one clear line. */
export function parseMlxQuantization(o: Record<string, unknown>, file: string): MlxQuantization | undefined {
  const q = o.quantization;
  if (q === undefined || q === null) return undefined;
  const fail = (msg: string): never => {
    throw new Error(`${file}: quantization${msg}`);
  };
  if (!isObject(q)) return fail(` must be an object {"group_size", "bits"} (MLX's layout), got ${describeValue(q)}`);
  const e = q as Record<string, unknown>;
  const mode = e.mode ?? 'affine';
  if (mode !== 'affine') fail(`.mode must be "affine" (MLX's scale-and-bias codes), got ${describeValue(mode)}`);
  if (!BITS.includes(e.bits as number)) fail(`.bits must be 4 or 8, got ${describeValue(e.bits)}`);
  if (!GROUPS.includes(e.group_size as number)) fail(`.group_size must be 32, 64 or 128, got ${describeValue(e.group_size)}`);
  const out: MlxQuantization = { bits: e.bits as 4 | 8, groupSize: e.group_size as number };
  for (const [key, v] of Object.entries(e)) {
    if (key === 'bits' || key === 'group_size' || key === 'mode') continue;
    if (v === false) fail(`."${key}" is false: checkpoints with modules left unquantized are not supported (every matrix must be ${out.bits}-bit)`);
    if (!isObject(v)) fail(`."${key}" must be false or {"group_size", "bits"}, got ${describeValue(v)}`);
    const ov = v as Record<string, unknown>;
    const same = ov.bits === out.bits && ov.group_size === out.groupSize && (ov.mode ?? 'affine') === 'affine';
    if (!same) {
      fail(`."${key}" quantizes that module with bits ${describeValue(ov.bits)}, group_size ${describeValue(ov.group_size)}: mixed quantization is not supported (every matrix must be ${out.bits}-bit, groups of ${out.groupSize})`);
    }
  }
  return out;
}
