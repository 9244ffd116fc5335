// The result's derived parts: ours/theirs ratios against the peers, and the headline figures
// flat (`summary`).
import type { GgmlTypeName } from './gguf.ts';
import type { LlamaPeerResult } from './llama.ts';
import { matmulLabel } from './labels.ts';
import type { BenchResult, Comparison } from './result.ts';
import { summarizeContexts, summarizeSizes } from './sizes.ts';

/** The GGUF format llama.cpp runs for each of our formats. */
export const GGML_OF: Record<string, GgmlTypeName> = { f32: 'F32', f16: 'F16', q8: 'Q8_0', q4: 'Q4_0', 'q8-folded': 'Q8_0', 'q4-folded': 'Q4_0' };

export function compare(r: BenchResult): Comparison[] {
  const out: Comparison[] = [];
  for (const [name, peer] of Object.entries(r.peers)) {
    if (!peer || name === 'tfjs') continue;
    const lp = peer as LlamaPeerResult;
    for (const f of r.formats) {
      if (!f.ok) continue;
      // Same format when the peer ran it, else every format it ran (marked as differing).
      const okFormats = lp.formats.filter((x) => x.ok);
      const match = okFormats.filter((x) => x.format === GGML_OF[f.dtype]);
      for (const lf of match.length > 0 ? match : okFormats) {
        const same = GGML_OF[f.dtype] === lf.format;
        const label = `llama.cpp ${lp.backend} ${lf.format}`;
        for (const p of f.prefill ?? []) {
          const q = lf.prefill?.find((x) => x.prompt_tokens === p.prompt_tokens);
          if (!q) continue;
          out.push(mk(`prefill ${p.prompt_tokens} tokens`, 'tokens/s', `ours ${f.dtype}`, p.tokens_per_s.median, label, q.tokens_per_s.median, same));
        }
        if (f.decode && lf.decode) {
          const c = mk('decode', 'tokens/s', `ours ${f.dtype}`, f.decode.tokens_per_s.median, label, lf.decode.tokens_per_s.median, same);
          const a = f.decode.ids;
          const b = lf.decode.ids;
          const n = Math.min(a.length, b.length);
          let k = 0;
          while (k < n && a[k] === b[k]) k++;
          c.greedy_agreement = { same_prefix: k, of: n };
          out.push(c);
        }
      }
    }
  }
  const tf = r.peers.tfjs;
  if (tf?.ok && r.kernels) {
    for (const t of tf.matmul) {
      // tfjs runs f32: compare with our f32 and f16 (the default format) kernels.
      for (const m of r.kernels.matmul.filter((x) => x.name === t.name && (x.dtype === 'f32' || x.dtype === 'f16'))) {
        // Kernels compare by time on the same shape (GB/s would penalise f16, which reads half the bytes).
        out.push({
          what: `matmul ${t.name}`,
          unit: 'ms',
          ours: { label: matmulLabel(m), value: m.ms.median },
          theirs: { label: `tfjs ${t.dtype}`, value: t.ms.median },
          speedup: t.ms.median / m.ms.median,
          same_format: m.dtype === t.dtype,
        });
      }
    }
  }
  return out;
}

function mk(what: string, unit: string, ol: string, ov: number, tl: string, tv: number, same: boolean): Comparison {
  return { what, unit, ours: { label: ol, value: ov }, theirs: { label: tl, value: tv }, speedup: ov / tv, same_format: same };
}

export function summarize(r: BenchResult): Record<string, number | string> {
  const s: Record<string, number | string> = {};
  for (const f of r.formats) {
    const k = `ours.${f.dtype}`;
    if (!f.ok) {
      s[`${k}.error`] = f.error ?? 'failed';
      continue;
    }
    if (f.load_ms !== undefined) s[`${k}.load_s`] = f.load_ms / 1000;
    for (const p of f.prefill ?? []) {
      s[`${k}.prefill${p.prompt_tokens}_tok_s`] = p.tokens_per_s.median;
      s[`${k}.ttft${p.prompt_tokens}_ms`] = p.ttft_ms.median;
    }
    if (f.decode) {
      s[`${k}.decode_tok_s`] = f.decode.tokens_per_s.median;
      s[`${k}.decode_step_ms`] = f.decode.step_ms.median;
      s[`${k}.js_encode_ms`] = f.decode.js_encode_ms.median;
      s[`${k}.submit_ms`] = f.decode.submit_ms.median;
    }
    if (f.dispatches_per_token !== undefined) s[`${k}.dispatches_per_token`] = f.dispatches_per_token;
    if (f.peak_gpu_bytes !== undefined) s[`${k}.peak_gpu_mib`] = f.peak_gpu_bytes / 2 ** 20;
    summarizeContexts(s, k, f);
  }
  summarizeSizes(s, r.sizes ?? []);
  if (r.kernels?.copy) s['kernels.copy_gb_s'] = r.kernels.copy.gb_s;
  for (const m of r.kernels?.matmul ?? []) {
    // e.g. kernels.ours.f16.proj_1_GEMV.ms, kernels.ours.f16.coalesced.proj_1_GEMV.ms, and
    // kernels.ours.f16[my.wgsl].proj_1_GEMV.ms for a lab variant.
    const key = `kernels.${matmulLabel(m).replace(/ /g, '.').replace('.[', '[')}.${m.name.replace(/\s+/g, '_')}`;
    s[`${key}.gb_s`] = m.gb_s;
    s[`${key}.ms`] = m.ms.median;
  }
  for (const a of r.kernels?.attention ?? []) s[`kernels.attention.${a.numQ}_${a.numKv}_heads.ctx${a.context}.ms`] = a.ms.median;
  for (const c of r.kernels?.chooser ?? []) s[`kernels.chooser.${c.name.replace(/\s+/g, '_')}.ms`] = c.ms.median;
  const tf = r.peers.tfjs;
  if (tf) {
    if (!tf.ok) s['tfjs.error'] = tf.error ?? 'failed';
    for (const m of tf.matmul) {
      s[`kernels.tfjs.f32.${m.name.replace(/\s+/g, '_')}.gb_s`] = m.gb_s;
      s[`kernels.tfjs.f32.${m.name.replace(/\s+/g, '_')}.ms`] = m.ms.median;
    }
  }
  for (const name of ['llama-cpu', 'llama-vulkan'] as const) {
    const p = r.peers[name];
    if (!p) continue;
    if (p.error && !p.ok) s[`${name}.error`] = p.error;
    for (const f of p.formats) {
      if (!f.ok) continue;
      for (const q of f.prefill ?? []) s[`${name}.${f.format}.prefill${q.prompt_tokens}_tok_s`] = q.tokens_per_s.median;
      if (f.decode) s[`${name}.${f.format}.decode_tok_s`] = f.decode.tokens_per_s.median;
    }
  }
  for (const c of r.comparisons) s[`speedup.${c.what.replace(/\s+/g, '_')}.${c.ours.label.replace(/\s+/g, '_')}_vs_${c.theirs.label.replace(/\s+/g, '_')}`] = c.speedup;
  return s;
}
