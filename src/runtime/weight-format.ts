// The weight format a load runs in. Float checkpoints take any float-convertible format (f16 by
// default); a checkpoint stored quantized loads only in its own format: `openelm convert`'s q8/q4
// (config.json's openelm_webgpu) or MLX's mlx4/mlx8 (config.json's quantization).
import type { ModelPlan } from '../config/plan.ts';
import { STORED_FORMAT_KEY } from '../config/stored-format.ts';
import { affineFormat } from '../weights/affine.ts';
import { WEIGHT_FORMATS, type GpuWeightFormat } from '../weights/gpu-weight.ts';

/** 'auto' (or none) is the checkpoint's own format: stored q8/q4, mlx4/mlx8, else f16. */
export function resolveWeightFormat(plan: ModelPlan, dtype: string | undefined, file = 'config.json'): GpuWeightFormat {
  const auto = dtype === undefined || dtype === 'auto';
  const q = plan.quantization;
  if (q) {
    const own = affineFormat(q.bits);
    if (auto || dtype === own) return own;
    throw new Error(`${file}: the checkpoint is MLX-quantized (${q.bits}-bit, groups of ${q.groupSize}) and loads only as ${own} (dtype auto), got dtype ${dtype}`);
  }
  const stored = plan.stored?.format;
  if (stored) {
    if (auto || dtype === stored) return stored;
    throw new Error(`${file}: this checkpoint is stored in ${stored} (${STORED_FORMAT_KEY}.format, written by openelm convert); load it with dtype ${stored} or auto, not ${dtype}`);
  }
  if (auto) return 'f16';
  if ((WEIGHT_FORMATS as readonly string[]).includes(dtype)) return dtype as GpuWeightFormat;
  if (dtype === 'mlx4' || dtype === 'mlx8') throw new Error(`${file}: dtype ${dtype} needs an MLX-quantized checkpoint (a "quantization" entry in config.json); this one holds floats: use ${WEIGHT_FORMATS.join(', ')} or auto`);
  throw new Error(`dtype must be one of auto, ${WEIGHT_FORMATS.join(', ')}, mlx4, mlx8, got ${dtype}`);
}
