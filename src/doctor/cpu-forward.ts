// An independent CPU forward pass of OpenELM in float64, written from the model's steps (README,
// "How it works") with no shared code with the GPU path (beyond the plan). Checked against the
// PyTorch fixture, it then serves as the reference for shapes the fixture does not cover (untied
// heads, one KV head per query head, odd head_dim, no q/k norm, no GLU).
import type { ModelPlan } from '../config/plan.ts';

export type Tensors = Map<string, Float64Array>;

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]);
}

function linear(w: Float64Array, x: Float64Array, out: number): Float64Array {
  const k = x.length;
  const y = new Float64Array(out);
  for (let n = 0; n < out; n++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += w[n * k + j] * x[j];
    y[n] = s;
  }
  return y;
}

function rope(v: Float64Array, pos: number, theta: number): Float64Array {
  const hd = v.length;
  const half = hd / 2;
  const out = new Float64Array(hd);
  for (let i = 0; i < half; i++) {
    const ang = pos * Math.pow(theta, (-2 * i) / hd);
    const c = Math.cos(ang);
    const s = Math.sin(ang);
    out[i] = v[i] * c - v[i + half] * s;
    out[i + half] = v[i + half] * c + v[i] * s;
  }
  return out;
}

const silu = (a: number) => a / (1 + Math.exp(-a));

/** Runs `ids` through the model from position 0; returns logits of every position and the last residuals. */
export function cpuForward(plan: ModelPlan, t: Tensors, ids: readonly number[]): { logits: Float64Array[]; residualLast: Float64Array[] } {
  const D = plan.modelDim;
  const hd = plan.headDim;
  const eps = plan.rmsNormEps;
  const get = (n: string) => {
    const v = t.get(n);
    if (!v) throw new Error(`cpuForward: missing ${n}`);
    return v;
  };
  const emb = get('transformer.token_embeddings.weight');
  let xs = ids.map((id) => emb.slice(id * D, (id + 1) * D));
  const residualLast = [xs[xs.length - 1]];
  plan.layers.forEach((l, li) => {
    const p = `transformer.layers.${li}`;
    const nq = l.numQueryHeads;
    const nkv = l.numKvHeads;
    const keys: Float64Array[][] = [];
    const vals: Float64Array[][] = [];
    const qs: Float64Array[][] = [];
    xs.forEach((x, pos) => {
      const qkv = linear(get(`${p}.attn.qkv_proj.weight`), rmsnorm(x, get(`${p}.attn_norm.weight`), eps), l.qkvOut);
      const head = (h: number) => qkv.slice(h * hd, (h + 1) * hd);
      const norm = (v: Float64Array, which: string) => (plan.normalizeQk ? rmsnorm(v, get(`${p}.attn.${which}.weight`), eps) : v);
      qs.push(Array.from({ length: nq }, (_, h) => rope(norm(head(h), 'q_norm'), pos, plan.ropeTheta)));
      keys.push(Array.from({ length: nkv }, (_, h) => rope(norm(head(nq + h), 'k_norm'), pos, plan.ropeTheta)));
      vals.push(Array.from({ length: nkv }, (_, h) => head(nq + nkv + h)));
    });
    const group = nq / nkv;
    xs = xs.map((x, pos) => {
      const attn = new Float64Array(nq * hd);
      for (let h = 0; h < nq; h++) {
        const kvh = Math.floor(h / group);
        const scores = Array.from({ length: pos + 1 }, (_, j) => {
          let s = 0;
          for (let d = 0; d < hd; d++) s += qs[pos][h][d] * keys[j][kvh][d];
          return s / Math.sqrt(hd);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= pos; j++) for (let d = 0; d < hd; d++) attn[h * hd + d] += (e[j] / z) * vals[j][kvh][d];
      }
      const o = linear(get(`${p}.attn.out_proj.weight`), attn, D);
      const hres = x.map((v, i) => v + o[i]);
      const y = linear(get(`${p}.ffn.proj_1.weight`), rmsnorm(hres, get(`${p}.ffn_norm.weight`), eps), l.proj1Out);
      const act = new Float64Array(l.ffnDim).map((_, i) => (plan.ffnWithGlu ? silu(y[i]) * y[l.ffnDim + i] : silu(y[i])));
      const f = linear(get(`${p}.ffn.proj_2.weight`), act, D);
      return hres.map((v, i) => v + f[i]);
    });
    residualLast.push(xs[xs.length - 1]);
  });
  const head = plan.tiedEmbeddings ? emb : get('lm_head.weight');
  const logits = xs.map((x) => linear(head, rmsnorm(x, get('transformer.norm.weight'), eps), plan.vocabSize));
  return { logits, residualLast };
}
