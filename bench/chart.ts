// The benchmark result as an SVG chart (no dependencies): grouped bars of tokens/s per engine and
// format (log scale: the engines differ by orders of magnitude here), of matmul GB/s at the decode
// shapes against the adapter's copy bandwidth, and of matmul GFLOP/s at the prefill shapes.
// Bars show medians; whiskers the min-max range of the runs.
import { fmt, matmulLabel } from './labels.ts';
import type { BenchResult } from './result.ts';
import type { Stat } from './stats.ts';

interface Bar {
  series: string;
  value: number;
  min?: number;
  max?: number;
}
interface Group {
  label: string;
  bars: Bar[];
}

// 20 distinguishable colours (strong, then light), so a full run's series do not repeat one.
const PALETTE = [
  '#1f77b4', '#2ca02c', '#17becf', '#9467bd', '#ff7f0e', '#d62728', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22',
  '#aec7e8', '#98df8a', '#9edae5', '#c5b0d5', '#ffbb78', '#ff9896', '#c49c94', '#f7b6d2', '#c7c7c7', '#dbdb8d',
];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function bar(series: string, s: Stat | undefined): Bar[] {
  return s && s.median > 0 ? [{ series, value: s.median, min: s.min, max: s.max }] : [];
}

/** A tick label: at most 3 significant digits, no trailing zeros. */
function tick(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 10000) return `${Number((v / 1000).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

function ticksLinear(max: number): number[] {
  const raw = max / 5;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = 0; v <= max * 1.0001 + step; v += step) {
    out.push(v);
    if (v >= max) break;
  }
  return out;
}

function panel(
  x0: number,
  y0: number,
  w: number,
  h: number,
  title: string,
  groups: Group[],
  series: string[],
  color: (s: string) => string,
  opts: { log?: boolean; ref?: { value: number; label: string } } = {},
): string {
  const parts: string[] = [];
  parts.push(`<text x="${x0}" y="${y0 + 16}" font-size="15" font-weight="bold">${esc(title)}</text>`);
  const plotX = x0 + 60;
  const plotY = y0 + 50;
  const plotW = w - 70;
  const plotH = h - 136;
  const values = groups.flatMap((g) => g.bars.flatMap((b) => [b.value, b.max ?? b.value, b.min ?? b.value])).filter((v) => v > 0);
  if (opts.ref) values.push(opts.ref.value);
  if (groups.length === 0 || values.length === 0) {
    parts.push(`<text x="${plotX}" y="${plotY + 20}" font-size="12" fill="#666">no data</text>`);
    return parts.join('\n');
  }
  let yOf: (v: number) => number;
  let ticks: number[];
  if (opts.log) {
    const lo = Math.floor(Math.log10(Math.min(...values)));
    const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...values) * 1.3)));
    yOf = (v) => plotY + plotH - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * plotH;
    ticks = [];
    const mults = hi - lo > 3 ? [1] : [1, 2, 5];
    for (let e = lo; e <= hi; e++) for (const m of mults) if (e + Math.log10(m) <= hi) ticks.push(m * 10 ** e);
  } else {
    ticks = ticksLinear(Math.max(...values) * 1.1);
    const top = ticks[ticks.length - 1];
    yOf = (v) => plotY + plotH - (v / top) * plotH;
  }
  for (const t of ticks) {
    const y = yOf(t).toFixed(1);
    parts.push(`<line x1="${plotX}" x2="${plotX + plotW}" y1="${y}" y2="${y}" stroke="#ddd" stroke-width="1"/>`);
    parts.push(`<text x="${plotX - 6}" y="${Number(y) + 4}" font-size="11" text-anchor="end" fill="#444">${esc(tick(t))}</text>`);
  }
  parts.push(`<line x1="${plotX}" x2="${plotX}" y1="${plotY}" y2="${plotY + plotH}" stroke="#333"/>`);
  parts.push(`<line x1="${plotX}" x2="${plotX + plotW}" y1="${plotY + plotH}" y2="${plotY + plotH}" stroke="#333"/>`);
  if (opts.log) parts.push(`<text x="${plotX + plotW}" y="${plotY - 6}" font-size="10" text-anchor="end" fill="#666">log scale</text>`);
  const gw = plotW / groups.length;
  groups.forEach((g, gi) => {
    const present = series.filter((s) => g.bars.some((b) => b.series === s));
    const bw = Math.min(60, (gw * 0.8) / Math.max(1, present.length));
    const start = plotX + gi * gw + (gw - bw * present.length) / 2;
    present.forEach((s, si) => {
      const b = g.bars.find((x) => x.series === s)!;
      const x = start + si * bw;
      const y = yOf(b.value);
      const base = plotY + plotH;
      parts.push(`<rect x="${(x + 1).toFixed(1)}" y="${y.toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${Math.max(0, base - y).toFixed(1)}" fill="${color(s)}"><title>${esc(`${s} ${g.label}: ${fmt(b.value)}`)}</title></rect>`);
      if (b.min !== undefined && b.max !== undefined && b.max > b.min) {
        const cx = (x + bw / 2).toFixed(1);
        parts.push(`<line x1="${cx}" x2="${cx}" y1="${yOf(b.max).toFixed(1)}" y2="${yOf(b.min).toFixed(1)}" stroke="#222" stroke-width="1"/>`);
      }
      parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${(Math.min(y, b.max !== undefined ? yOf(b.max) : y) - 4).toFixed(1)}" font-size="10" text-anchor="middle">${esc(fmt(b.value))}</text>`);
    });
    parts.push(`<text x="${(plotX + gi * gw + gw / 2).toFixed(1)}" y="${plotY + plotH + 16}" font-size="12" text-anchor="middle">${esc(g.label)}</text>`);
  });
  if (opts.ref) {
    const y = yOf(opts.ref.value).toFixed(1);
    parts.push(`<line x1="${plotX}" x2="${plotX + plotW}" y1="${y}" y2="${y}" stroke="#d62728" stroke-dasharray="6 4" stroke-width="1.5"/>`);
    parts.push(`<text x="${plotX + plotW - 4}" y="${Number(y) - 5}" font-size="11" text-anchor="end" fill="#d62728">${esc(opts.ref.label)}</text>`);
  }
  // Legend under the plot: the series this panel shows, wrapped into rows.
  let lx = plotX;
  let ly = plotY + plotH + 36;
  for (const s of series.filter((x) => groups.some((g) => g.bars.some((b) => b.series === x)))) {
    const width = 16 + s.length * 7 + 18;
    if (lx > plotX && lx + width > plotX + plotW) {
      lx = plotX;
      ly += 18;
    }
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${color(s)}"/>`);
    parts.push(`<text x="${lx + 16}" y="${ly}" font-size="12">${esc(s)}</text>`);
    lx += width;
  }
  return parts.join('\n');
}

export function renderChart(r: BenchResult): string {
  const W = 980;
  // Panel height: the plot, its labels and up to three rows of legend.
  const H = 380;
  const series: string[] = [];
  const seen = (s: string) => {
    if (!series.includes(s)) series.push(s);
    return s;
  };
  const color = (s: string) => PALETTE[series.indexOf(s) % PALETTE.length];

  // Panel 1: tokens/s.
  const Ls = r.options.prompt_lengths as number[];
  const tokGroups: Group[] = [...Ls.map((L) => ({ label: `prefill ${L} tokens`, bars: [] as Bar[] })), { label: 'decode', bars: [] }];
  const tokSeries: string[] = [];
  for (const f of r.formats) {
    if (!f.ok) continue;
    const s = seen(`ours ${f.dtype}`);
    tokSeries.push(s);
    Ls.forEach((L, i) => tokGroups[i].bars.push(...bar(s, f.prefill?.find((p) => p.prompt_tokens === L)?.tokens_per_s)));
    tokGroups[Ls.length].bars.push(...bar(s, f.decode?.tokens_per_s));
  }
  for (const name of ['llama-cpu', 'llama-vulkan'] as const) {
    for (const f of r.peers[name]?.formats ?? []) {
      if (!f.ok) continue;
      const s = seen(`${name.replace('llama', 'llama.cpp')} ${f.format}`);
      tokSeries.push(s);
      Ls.forEach((L, i) => tokGroups[i].bars.push(...bar(s, f.prefill?.find((p) => p.prompt_tokens === L)?.tokens_per_s)));
      tokGroups[Ls.length].bars.push(...bar(s, f.decode?.tokens_per_s));
    }
  }

  // Panels 2 and 3: matmul.
  const mm = [...(r.kernels?.matmul ?? []), ...(r.peers.tfjs?.matmul ?? [])];
  const kSeries: string[] = [];
  for (const m of mm) {
    const s = seen(matmulLabel(m));
    if (!kSeries.includes(s)) kSeries.push(s);
  }
  const groupsOf = (kind: 'gemv' | 'gemm', pick: (m: (typeof mm)[number]) => number): Group[] => {
    const names = [...new Set(mm.filter((m) => m.kind === kind).map((m) => m.name))];
    return names.map((n) => ({
      label: `${n} (${mm.find((m) => m.name === n)!.K}->${mm.find((m) => m.name === n)!.N})`,
      bars: mm.filter((m) => m.name === n).map((m) => ({ series: matmulLabel(m), value: pick(m) })),
    }));
  };
  const copy = r.kernels?.copy;
  const gemv = groupsOf('gemv', (m) => m.gb_s);
  const params = r.model.params / 1e6;
  const model = `${r.model.synthetic ? 'synthetic (random-weight) ' : ''}OpenELM, ${params.toFixed(params < 10 ? 1 : 0)}M parameters`;
  const adapter = [r.machine.adapter.vendor, r.machine.adapter.description].filter(Boolean).join(' ') || 'WebGPU';
  const body = [
    `<text x="20" y="26" font-size="17" font-weight="bold">${esc(`openelm-webgpu bench: ${model}`)}</text>`,
    `<text x="20" y="44" font-size="12" fill="#555">${esc(`${adapter} on ${r.machine.cpu_model} x${r.machine.cores}; ${r.started_at}`)}</text>`,
    `<text x="20" y="60" font-size="12" fill="#555">${esc(`bars: medians, whiskers: min-max of the runs; kernels timed by ${copy?.method ?? 'n/a'}`)}</text>`,
    panel(20, 70, W - 40, H, 'Tokens per second (higher is better)', tokGroups.filter((g) => g.bars.length > 0), tokSeries, color, { log: true }),
    panel(20, 70 + H, W - 40, H, 'Matmul at decode shapes (1 token): GB/s of weights read', gemv, kSeries, color, {
      ref: copy ? { value: copy.gb_s, label: `buffer copy ${fmt(copy.gb_s)} GB/s` } : undefined,
      // Kernels far below the copy line would be slivers on a linear axis.
      log: !!copy && copy.gb_s > 5 * Math.max(0, ...gemv.flatMap((g) => g.bars.map((b) => b.value))),
    }),
    panel(20, 70 + 2 * H, W - 40, H, `Matmul at prefill shapes (${r.options.gemm_tokens} tokens): GFLOP/s`, groupsOf('gemm', (m) => m.gflop_s), kSeries, color),
  ];
  const height = 70 + 3 * H + 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="${W}" height="${height}" fill="white"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
