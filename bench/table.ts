// The benchmark result as text for people: model figures per engine and format, kernel figures,
// and the ours/theirs ratios.
import { fmt, layerRange, matmulLabel } from './labels.ts';
import type { BenchResult } from './result.ts';
import { renderSteps } from './table-steps.ts';
import type { Stat } from './stats.ts';

/** "median (spread%)" with spread = (max - min) / median. */
function ms(s: Stat | undefined): string {
  if (!s) return '-';
  return s.n > 1 ? `${fmt(s.median)} (${Math.round(s.rel_spread * 100)}%)` : fmt(s.median);
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export function renderTable(r: BenchResult): string {
  const out: string[] = [];
  const m = r.machine;
  const adapter = [m.adapter.vendor, m.adapter.architecture, m.adapter.description].filter(Boolean).join(' / ');
  out.push(
    `openelm bench: ${r.model.synthetic ? 'synthetic (random weights) ' : ''}${r.model.dir} (${(r.model.params / 1e6).toFixed(1)}M parameters)`,
    `machine: ${m.cpu_model} x${m.cores}, load ${m.loadavg_start.join(' ')} -> ${m.loadavg_end.join(' ')}; adapter: ${adapter}${m.adapter.isFallback ? ' (fallback)' : ''}`,
    '',
  );
  const Ls = r.options.prompt_lengths as number[];
  const head = ['engine', 'load s', ...Ls.flatMap((L) => [`prefill${L} tok/s`, `TTFT${L} ms`]), 'decode tok/s', 'step ms', 'disp/tok', 'JS enc ms', 'submit ms', 'peak GPU MiB'];
  const rows: string[][] = [];
  for (const f of r.formats) {
    if (!f.ok) {
      rows.push([`ours ${f.dtype}: ${f.error}`]);
      continue;
    }
    rows.push([
      `ours ${f.dtype}`,
      fmt((f.load_ms ?? NaN) / 1000),
      ...Ls.flatMap((L) => {
        const p = f.prefill?.find((x) => x.prompt_tokens === L);
        return [ms(p?.tokens_per_s), ms(p?.ttft_ms)];
      }),
      ms(f.decode?.tokens_per_s),
      ms(f.decode?.step_ms),
      String(f.dispatches_per_token ?? '-'),
      ms(f.decode?.js_encode_ms),
      ms(f.decode?.submit_ms),
      fmt((f.peak_gpu_bytes ?? NaN) / 2 ** 20),
    ]);
  }
  for (const name of ['llama-cpu', 'llama-vulkan'] as const) {
    const p = r.peers[name];
    if (!p) continue;
    if (!p.ok && p.formats.every((f) => !f.ok)) {
      rows.push([`${name}: ${p.error ?? p.formats.find((f) => f.error)?.error ?? 'failed'}`]);
      continue;
    }
    for (const f of p.formats) {
      if (!f.ok) {
        rows.push([`${name} ${f.format}: ${f.error}`]);
        continue;
      }
      rows.push([
        `${name} ${f.format}`,
        fmt((f.load_ms ?? NaN) / 1000),
        ...Ls.flatMap((L) => {
          const q = f.prefill?.find((x) => x.prompt_tokens === L);
          return [ms(q?.tokens_per_s), ms(q?.ttft_ms)];
        }),
        ms(f.decode?.tokens_per_s),
        ms(f.decode?.step_ms),
        '-',
        '-',
        '-',
        '-',
      ]);
    }
  }
  // Error rows span the table: print them after it.
  const full = rows.filter((x) => x.length > 1);
  const notes = rows.filter((x) => x.length === 1).map((x) => `  ! ${x[0]}`);
  out.push(table(head, full), ...notes, '(n%) = spread of the runs: (max - min) / median', '');

  const k = r.kernels;
  if (k) {
    out.push(`kernels (${k.copy?.method ?? 'n/a'}): copy ${k.copy ? `${fmt(k.copy.bytes / 2 ** 20)} MiB in ${ms(k.copy.ms)} ms = ${fmt(k.copy.gb_s)} GB/s` : '-'}${k.error ? `; error: ${k.error}` : ''}`);
    const all = [...k.matmul, ...(r.peers.tfjs?.matmul ?? [])];
    const krows = all.map((x) => [
      x.name,
      matmulLabel(x),
      `${x.T}x${x.K} . ${x.K}x${x.N}`,
      ms(x.ms),
      fmt(x.gb_s),
      fmt(x.gflop_s),
      x.fraction_of_copy === undefined ? '-' : `${(x.fraction_of_copy * 100).toFixed(0)}%`,
    ]);
    out.push(table(['matmul', 'engine', 'shape', 'ms', 'GB/s', 'GFLOP/s', 'of copy'], krows), '');
    if (k.attention.length > 0) {
      const arows = k.attention.map((a) => [`${a.numQ}/${a.numKv} heads x ${a.headDim}`, layerRange(a.layers), String(a.context), ms(a.ms), fmt(a.gb_s)]);
      out.push(table(['attention (decode)', 'layers', 'context', 'ms', 'GB/s KV'], arows), '');
    }
    if (k.chooser.length > 0) out.push(table(['chooser', 'logits', 'ms'], k.chooser.map((c) => [c.name, String(c.n), ms(c.ms)])), '');
    if (r.peers.tfjs && !r.peers.tfjs.ok) out.push(`  ! tfjs: ${r.peers.tfjs.error}`, '');
  }
  out.push(...renderSteps(r, table));
  if (r.comparisons.length > 0) {
    out.push('ours vs peers (speedup > 1 means ours is faster: tokens/s ours/theirs, kernel ms theirs/ours):');
    out.push(
      table(
        ['what', 'ours', 'theirs', 'speedup', 'same greedy ids'],
        r.comparisons.map((c) => [
          `${c.what} (${c.unit})${c.same_format ? '' : ' [formats differ]'}`,
          `${c.ours.label}: ${fmt(c.ours.value)}`,
          `${c.theirs.label}: ${fmt(c.theirs.value)}`,
          `${fmt(c.speedup)}x`,
          c.greedy_agreement ? `${c.greedy_agreement.same_prefix}/${c.greedy_agreement.of}` : '',
        ]),
      ),
      '',
    );
  }
  if (r.files) out.push(`wrote ${r.files.json}`, `      ${r.files.svg}`);
  return out.join('\n');
}
