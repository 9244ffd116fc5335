// Download size, load time, peak memory and page-load-to-first-token of model folders in headless
// Chromium, one fresh browser (and profile) a model (so each process's peak resident size is that model's):
// the demo page (demo/index.html) loads the folder over HTTP from the demo server with the Cache
// API off, generates one token, and reports its figures (window.openelmDemo.state.load). The model
// loads on the page's thread (worker=0): performance.memory sees only the page's heap, not a worker's.
//
//   node scripts/build.mjs && node scripts/browser-load.mjs --model NAME=DIR[@DTYPE] ... [--ids 1,5,9] [--json]
//
// DTYPE is the weight format asked for (default: the folder's own for a compact checkpoint, else
// q4), so a float folder is measured quantized on load. Any folder works: a float checkpoint, one
// from `openelm convert`, or an MLX-quantized one.
// Figures: file_bytes (weight files on disk), download_bytes (fetched by the page), load_ms,
// page_to_first_token_ms, peak_js_heap_bytes (performance.memory with --enable-precise-memory-info,
// sampled every 10 ms and at each load event), peak_gpu_bytes (the engine's own allocations), and
// the peak resident size (VmHWM) of the renderer and GPU processes (everything, including the
// shared memory WebGPU uploads pass through, so these move less than the JS heap does).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startDemoServer, storedFormat } from './demo.mjs';

const CHROMIUM = process.env.OPENELM_CHROMIUM ?? '/usr/bin/chromium';

function parse(argv) {
  const models = [];
  let ids = '1,5,9';
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--model') {
      const v = value();
      const m = /^([A-Za-z0-9_.-]+)=(.+?)(?:@(f32|f16|q8|q4|mlx4|mlx8|auto))?$/.exec(v);
      if (!m) throw new Error(`--model takes NAME=DIR or NAME=DIR@DTYPE, got "${v}"`);
      const dir = resolve(m[2]);
      let stored;
      try {
        stored = storedFormat(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
      } catch (e) {
        throw new Error(`--model ${v}: cannot read ${join(dir, 'config.json')} (${e.message})`);
      }
      models.push({ name: m[1], dir, dtype: m[3] ?? stored ?? 'q4' });
    } else if (a === '--ids') ids = value();
    else if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: node scripts/browser-load.mjs --model NAME=DIR[@DTYPE] ... [--ids 1,5,9] [--json]');
      process.exit(0);
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  if (models.length === 0) throw new Error('give at least one --model NAME=DIR');
  return { models, ids, json };
}

function weightFileBytes(dir) {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((a, f) => a + statSync(join(dir, f)).size, 0);
}

/** Peak resident size (VmHWM) of a process, in bytes; undefined once it is gone. */
function peakRss(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function measure(chromium, base, m, ids) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--enable-unsafe-webgpu', '--enable-precise-memory-info', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--no-sandbox'],
  });
  try {
    const page = await (await browser.newContext()).newPage();
    const url = `${base}demo/?model=/models/${m.name}/&ids=${ids}&max_new_tokens=1&dtype=${m.dtype}&cache=0&worker=0&autorun=1`;
    await page.goto(url);
    await page.waitForFunction(() => (globalThis.openelmDemo?.state.runs ?? 0) >= 1, null, { timeout: 3_600_000, polling: 500 });
    const s = await page.evaluate(() => {
      const st = globalThis.openelmDemo.state;
      return { error: st.error, load: st.load, ttft: st.pageToFirstTokenMs, ids: st.lastRun?.ids, dtype: st.model?.dtype };
    });
    if (s.error) throw new Error(`${m.name}: ${s.error}`);
    const cdp = await browser.newBrowserCDPSession();
    const { processInfo } = await cdp.send('SystemInfo.getProcessInfo');
    const rss = (type) => Math.max(0, ...processInfo.filter((p) => p.type === type).map((p) => peakRss(p.id) ?? 0));
    return {
      name: m.name,
      dir: m.dir,
      dtype: s.dtype,
      file_bytes: weightFileBytes(m.dir),
      download_bytes: s.load.download_bytes,
      load_ms: Math.round(s.load.load_ms),
      page_to_first_token_ms: Math.round(s.ttft),
      peak_js_heap_bytes: s.load.peak_js_heap_bytes,
      gpu_bytes_after_load: s.load.gpu_bytes_after_load,
      peak_gpu_bytes: s.load.peak_gpu_bytes,
      renderer_peak_rss_bytes: rss('renderer'),
      gpu_process_peak_rss_bytes: rss('GPU'),
      first_ids: s.ids,
    };
  } finally {
    await browser.close();
  }
}

const MB = (n) => (n === undefined ? '–' : `${(n / 1e6).toFixed(1)} MB`);

async function main() {
  const { models, ids, json } = parse(process.argv.slice(2));
  const { chromium } = await import('playwright-core');
  const server = await startDemoServer({ port: 0, models: Object.fromEntries(models.map((m) => [m.name, m.dir])) });
  const runs = [];
  try {
    for (const m of models) {
      if (!json) console.error(`${m.name} (${m.dtype}) ...`);
      runs.push(await measure(chromium, server.url, m, ids));
    }
  } finally {
    await server.close();
  }
  const result = { schema: 'openelm-webgpu/browser-load/1', when: new Date().toISOString(), chromium: CHROMIUM, ids, runs };
  if (json) {
    console.log(JSON.stringify(result));
    return;
  }
  console.log('model | dtype | weight files | downloaded | load | page load to first token | peak JS heap | peak GPU (engine) | renderer peak RSS | GPU process peak RSS');
  for (const r of runs) {
    console.log(
      [r.name, r.dtype, MB(r.file_bytes), MB(r.download_bytes), `${(r.load_ms / 1000).toFixed(1)} s`, `${(r.page_to_first_token_ms / 1000).toFixed(1)} s`, MB(r.peak_js_heap_bytes), MB(r.peak_gpu_bytes), MB(r.renderer_peak_rss_bytes), MB(r.gpu_process_peak_rss_bytes)].join(' | '),
    );
  }
}

main().catch((e) => {
  console.error(`browser-load: ${e.message}`);
  process.exit(1);
});
