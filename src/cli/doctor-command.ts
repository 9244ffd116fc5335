// `openelm doctor`: the GPU self-check on the command line (the library's runDoctor). Exit 1 when a
// check fails, 2 for a usage error; --json prints the report as one JSON object.
import { createGpu, loadPlan, resolveModelSource } from '../index.ts';
import { WEIGHT_FORMATS, type WeightFormat as DType } from '../weights/gpu-weight.ts';

// The model check converts a float checkpoint: the formats it converts to.
const DTYPES: readonly string[] = WEIGHT_FORMATS;
import { openCheckpoint } from '../io/node-source.ts';
import { defaultNodeTuningStore } from '../io/node-tuning-store.ts';
import { checkLine, formatReport, reportJson, runDoctor, type DoctorModel } from '../doctor/doctor.ts';
import { KERNEL_NAMES, setKernelVariant, type KernelName } from '../gpu/kernel-variants.ts';
import { parseKernelVariant } from './kernel-variant.ts';
import { UsageError, type Parsed, type Spec } from './args.ts';

const spec: Spec = {
  model: { kind: 'string', value: 'DIR|ID', help: 'also check this model whole (a folder in the Hugging Face layout or a hub id) against the float64 CPU forward; needs about 16 bytes of RAM a parameter (float64 copies). Default: a small synthetic model built in memory' },
  hf_access_token: { kind: 'string', value: 'TOKEN', help: 'Hugging Face token for gated models (else $HF_TOKEN)' },
  dtype: { kind: 'string', value: 'FORMAT', help: `weight format the model check runs beside f32: ${DTYPES.join(' | ')} (default f16)` },
  'kernel-variant': { kind: 'list', value: 'KERNEL=FILE...', help: `check your own WGSL in place of a built-in kernel (${KERNEL_NAMES.join(', ')}); same bindings, entry point and defines as shaders/KERNEL.wgsl` },
  only: { kind: 'string', value: 'NAMES', help: 'comma-separated kernel checks to run (e.g. matmul,attention,attention_split); the model check always runs' },
  retune: { kind: 'flag', help: 'time the kernel choices again instead of reporting those remembered for this GPU (in <cache>/tuning.json), and remember the new ones; also OPENELM_RETUNE=1' },
  json: { kind: 'flag', help: 'print the report as one JSON object (attach it to a bug report)' },
  help: { kind: 'flag', help: 'show this help' },
};

const CHECK_NAMES = ['matmul', 'attention', 'attention_split', 'qkv_prepare', 'embedding', 'argmax', 'sample', 'spec_accept'];

async function openDoctorModel(p: Parsed): Promise<DoctorModel | undefined> {
  const source = p.values.get('model');
  if (source === undefined) return undefined;
  const dir = await resolveModelSource(source, { token: p.values.get('hf_access_token') });
  return { name: source, plan: await loadPlan(dir), tensors: await openCheckpoint(dir) };
}

async function runDoctorCommand(p: Parsed): Promise<void> {
  const json = p.flags.has('json');
  const dtype = p.values.get('dtype') ?? 'f16';
  if (!DTYPES.includes(dtype)) throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got "${dtype}"`);
  const only = p.values.get('only')?.split(',').map((s) => s.trim());
  const unknown = only?.find((n) => !CHECK_NAMES.includes(n));
  if (unknown !== undefined) throw new UsageError(`--only: "${unknown}" is not one of ${CHECK_NAMES.join(', ')}`);
  // Read every variant before touching the GPU, so a bad option fails at once.
  const variants = (p.lists.get('kernel-variant') ?? []).map((s) => parseKernelVariant<KernelName>(s, KERNEL_NAMES, ''));
  const model = await openDoctorModel(p);
  const gpu = await createGpu();
  for (const v of variants) setKernelVariant(v.kernel, v.code, v.file);
  try {
    const report = await runDoctor(gpu, {
      model,
      dtype: dtype as DType,
      only,
      tuningStore: defaultNodeTuningStore({ retune: p.flags.has('retune') }),
      log: json ? undefined : (line) => process.stderr.write(`${line}\n`),
      onCheck: json ? undefined : (c, i, n) => process.stderr.write(`[${i + 1}/${n}] ${checkLine(c)}\n`),
    });
    if (json) process.stdout.write(`${reportJson(report)}\n`);
    else process.stdout.write(`${formatReport(report)}\n`);
    const failed = report.checks.filter((c) => !c.pass);
    if (!report.pass) {
      const first = failed[0] ? `${failed[0].name} ${failed[0].variant} ${failed[0].format}` : `model check (${report.model_check.dtypes.filter((d) => !d.pass).map((d) => d.dtype).join(', ')})`;
      throw new Error(`doctor: ${failed.length} kernel check(s) failed${report.model_check.pass ? '' : ' and the model check failed'}; first: ${first}`);
    }
  } finally {
    for (const v of variants) setKernelVariant(v.kernel, null);
    gpu.destroy();
  }
}

export const doctorCommand = {
  summary: 'check this GPU: every kernel variant against its CPU reference, a whole model against a float64 forward, and the choices made here',
  spec,
  run: runDoctorCommand,
};
