// `openelm convert`: a compact q8/q4 checkpoint from a model folder or hub id (src/convert/compact.ts).
import { resolveModelSource } from '../index.ts';
import { convertCheckpoint } from '../convert/compact.ts';
import { STORED_FORMATS, type StoredFormat } from '../config/stored-format.ts';
import { fmtBytes } from '../gpu/gpu.ts';
import { progressBar } from '../io/progress.ts';
import { UsageError, type Parsed, type Spec } from './args.ts';

const spec: Spec = {
  model: { kind: 'string', value: 'DIR|ID', help: 'the model to convert: a folder in the Hugging Face layout (float weights, single file or shards) or a hub id' },
  hf_access_token: { kind: 'string', value: 'TOKEN', help: 'Hugging Face token for gated models (else $HF_TOKEN)' },
  dtype: { kind: 'string', value: 'q4|q8', help: 'the stored weight format (the same values --dtype q4/q8 quantizes to on load)' },
  out: { kind: 'string', value: 'DIR', help: 'a new or empty folder for the converted checkpoint' },
  'fold-norms': { kind: 'flag', help: "multiply the layers' RMSNorm gains into qkv_proj / proj_1 before quantizing (faster kernels, less accurate with outlier gains; see README)" },
  json: { kind: 'flag', help: 'print one JSON object: files written and their sizes, time' },
  help: { kind: 'flag', help: 'show this help' },
};

async function runConvert(p: Parsed): Promise<void> {
  const json = p.flags.has('json');
  const source = p.values.get('model');
  if (source === undefined) throw new UsageError('--model DIR|ID is required (the float checkpoint to convert)');
  const out = p.values.get('out');
  if (out === undefined) throw new UsageError('--out DIR is required (a new or empty folder)');
  const dtype = p.values.get('dtype');
  if (dtype === undefined || !(STORED_FORMATS as readonly string[]).includes(dtype)) {
    throw new UsageError(`--dtype must be ${STORED_FORMATS.join(' or ')}${dtype === undefined ? ' (required)' : `, got "${dtype}"`}`);
  }
  const bar = progressBar(process.stderr);
  let dir: string;
  try {
    dir = await resolveModelSource(source, { token: p.values.get('hf_access_token'), onProgress: json ? undefined : bar });
  } finally {
    bar.end();
  }
  let last = 0;
  const r = await convertCheckpoint(dir, out, {
    format: dtype as StoredFormat,
    foldNorms: p.flags.has('fold-norms'),
    onProgress: json
      ? undefined
      : (done, total) => {
          const pct = Math.floor((100 * done) / total);
          if (pct >= last + 10 || done === total) process.stderr.write(`converting: ${done}/${total} tensors\n`);
          if (pct >= last + 10) last = pct;
        },
  });
  if (json) {
    process.stdout.write(`${JSON.stringify({ source: dir, ...r, ms: Math.round(r.ms) })}\n`);
    return;
  }
  for (const f of r.files) process.stdout.write(`${f.name.padEnd(40)} ${fmtBytes(f.bytes)}\n`);
  process.stdout.write(
    `wrote a ${r.format}${r.fold_norms ? ' (folded norms)' : ''} checkpoint to ${out}: weights ${fmtBytes(r.weight_bytes)} from ${fmtBytes(r.source_weight_bytes)} ` +
      `(${((100 * r.weight_bytes) / r.source_weight_bytes).toFixed(1)}%) in ${(r.ms / 1000).toFixed(1)} s\n`,
  );
}

export const convertCommand = {
  summary: 'write a compact checkpoint: weights stored quantized (q4/q8) in the engine\'s GPU layout, loaded without a float copy',
  spec,
  run: runConvert,
};
