// The table's sections for decode at growing contexts, the per-kernel breakdown of one step,
// and the larger sizes (--sizes).
import { fmt } from './labels.ts';
import type { FormatResult } from './model.ts';
import type { BenchResult } from './result.ts';

type Table = (head: string[], rows: string[][]) => string;
const pct = (x: number | undefined) => (x === undefined ? '-' : `${(x * 100).toFixed(1)}%`);
const mib = (b: number | undefined) => (b === undefined ? '-' : fmt(b / 2 ** 20));

function contextRows(name: string, f: FormatResult): string[][] {
  return (f.contexts ?? []).map((c) => [
    name,
    `${c.context_tokens}${c.fill === 'positions' ? '*' : ''}`,
    fmt(c.tokens_per_s.median),
    fmt(c.step_ms.median),
    c.breakdown ? fmt(c.breakdown.step_ms) : '-',
    c.breakdown ? mib(c.breakdown.bytes) : '-',
    c.breakdown ? fmt(c.breakdown.gb_s) : '-',
    pct(c.breakdown?.roofline_fraction),
  ]);
}

export function renderSteps(r: BenchResult, table: Table): string[] {
  const out: string[] = [];
  const all: [string, FormatResult][] = [
    ...r.formats.map((f): [string, FormatResult] => [`${f.dtype}`, f]),
    ...(r.sizes ?? []).flatMap((z) => z.formats.map((f): [string, FormatResult] => [`${z.size} ${f.dtype}`, f])),
  ];
  const rows = all.flatMap(([n, f]) => contextRows(n, f));
  if (rows.length > 0) {
    out.push(
      table(['decode at context', 'cached', 'tok/s', 'step ms', 'GPU step ms', 'MiB read', 'GB/s', 'of copy BW'], rows),
      `(* cache filled by position, not by a prefill: same work a step.) GPU step ms: the step's dispatches in one pass (${all.find(([, f]) => f.contexts?.[0]?.breakdown)?.[1].contexts?.[0].breakdown?.method ?? '-'})`,
      '',
    );
  }
  for (const [n, f] of all) {
    for (const c of f.contexts ?? []) {
      const b = c.breakdown;
      if (!b) continue;
      out.push(
        `one decode step, ${n}, ${b.context_tokens} keys (${b.method}, ${b.runs} run${b.runs > 1 ? 's' : ''}): ${fmt(b.step_ms)} ms whole, ${fmt(b.sum_ms)} ms summed per dispatch, ${mib(b.bytes)} MiB read, ${fmt(b.gb_s)} GB/s${b.roofline_fraction !== undefined ? `, ${pct(b.roofline_fraction)} of copy bandwidth (${fmt(b.copy_gb_s!)} GB/s)` : ''}`,
        table(
          ['kernel', 'dispatches', 'ms', 'MiB read', 'GB/s', 'share'],
          b.kinds.map((k) => [k.kind, String(k.dispatches), fmt(k.ms), mib(k.bytes), fmt(k.gb_s), pct(k.share)]),
        ),
        '',
      );
    }
  }
  if (r.sizes?.length) {
    const srows = r.sizes.flatMap((z) =>
      z.formats.map((f) =>
        f.ok
          ? [`${z.size} ${f.dtype}`, `${(z.params / 1e9).toFixed(2)}B`, fmt((f.load_ms ?? NaN) / 1000), mib(f.peak_gpu_bytes), fmt(f.decode?.tokens_per_s.median ?? NaN), mib(f.limits?.maxStorageBufferBindingSize)]
          : [`${z.size} ${f.dtype}: ${f.error}`],
      ),
    );
    out.push(table(['size', 'params', 'load s', 'peak GPU MiB', 'decode tok/s', 'binding MiB'], srows.filter((x) => x.length > 1)), ...srows.filter((x) => x.length === 1).map((x) => `  ! ${x[0]}`), '');
  }
  return out;
}
