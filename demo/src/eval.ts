// The evaluation page (demo/eval.html): pick a model, a task and its JSONL data; scores every item
// as `openelm eval` does (same library code), with progress, a summary table, the items and the
// JSON to download (also window.openelmEval.result). Stop keeps the finished items.
// Query parameters: model, dtype, task, data (a URL of the JSONL file), limit, reuse=0, cache=0, autorun=1.
import { evaluate, isTaskName, loadItems, loadModel, summarizeEval, TASK_NAMES, TASKS, type EvalReport, type OpenElmModel, type TaskName, type WeightFormat } from '../../src/browser.ts';
import { $, clearError, fmt, h, loadPresets, loadProgressText, params, refreshCache, setupCacheButton, setupPicker, showError, showSupport } from './common.ts';

type PageResult = EvalReport & { interrupted?: true; items_per_s: number };
const state: { running: boolean; result?: PageResult; error?: string; done?: Promise<PageResult | undefined> } = { running: false };
(globalThis as unknown as { openelmEval: unknown }).openelmEval = state;

function status(s: string): void {
  $('eval-status').textContent = s;
}

async function dataText(): Promise<{ text: string; name: string }> {
  const input = $<HTMLInputElement>('data-file');
  const file = input.files?.[0];
  if (file) return { text: await file.text(), name: file.name };
  const url = params.get('data');
  if (url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status} fetching the data`);
    return { text: await r.text(), name: url };
  }
  throw new Error('choose the task\'s JSONL data file');
}

const pct = (v: number | null, e: number | null) => (v === null ? '–' : `${fmt(100 * v, 2)}${e === null ? '' : ` ± ${fmt(100 * e, 2)}`}`);

function showResult(r: PageResult): void {
  const table = h(
    'table',
    {},
    h('thead', {}, h('tr', {}, ...['task', 'items', 'acc (%)', 'acc_norm (%)', 'items/s'].map((c) => h('th', {}, c)))),
    h('tbody', {}, h('tr', {}, h('td', {}, r.task + (r.interrupted ? ' (stopped)' : '')), h('td', {}, String(r.n)), h('td', {}, pct(r.acc, r.acc_stderr)), h('td', {}, pct(r.acc_norm, r.acc_norm_stderr)), h('td', {}, fmt(r.items_per_s, 3)))),
  );
  $('summary').replaceChildren(table);
  const rows = r.items.slice(0, 500).map((it, i) =>
    h('tr', {}, h('td', {}, String(i + 1)), h('td', {}, String(it.gold)), h('td', {}, String(it.pred)), h('td', {}, it.pred_norm === null ? '–' : String(it.pred_norm)), h('td', { class: 'mono' }, it.loglikelihoods.map((l) => l.toFixed(3)).join(', '))),
  );
  $('items').replaceChildren(
    h('table', {}, h('thead', {}, h('tr', {}, ...['#', 'gold', 'pred', 'pred_norm', 'log-likelihoods'].map((c) => h('th', {}, c)))), h('tbody', {}, ...rows)),
    ...(r.items.length > 500 ? [h('p', { class: 'muted' }, `first 500 of ${r.items.length} items; the JSON has all`)] : []),
  );
  const a = $<HTMLAnchorElement>('download');
  if (a.href.startsWith('blob:')) URL.revokeObjectURL(a.href);
  // Non-finite numbers (broken weights) become null, as in the CLI: the file stays valid JSON.
  const json = JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 1);
  a.href = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
  a.download = `eval-${r.task}.json`;
  a.hidden = false;
}

let stopper: AbortController | undefined;

async function run(picker: ReturnType<typeof setupPicker>): Promise<PageResult | undefined> {
  if (state.running) return undefined;
  clearError();
  state.running = true;
  state.error = undefined;
  const button = $<HTMLButtonElement>('run-eval');
  const stop = $<HTMLButtonElement>('stop-eval');
  button.disabled = true;
  let model: OpenElmModel | undefined;
  try {
    const task = $<HTMLSelectElement>('task').value as TaskName;
    const limitText = $<HTMLInputElement>('limit').value.trim();
    const limit = limitText === '' ? Infinity : Number(limitText);
    if (!(limit === Infinity || (Number.isInteger(limit) && limit >= 1))) throw new Error(`items must be a positive whole number, got "${limitText}"`);
    const { text, name } = await dataText();
    const items = loadItems(task, text, name, limit);
    const bar = $<HTMLProgressElement>('load-progress');
    bar.hidden = false;
    model = await loadModel(picker.source(), {
      dtype: picker.dtype() as WeightFormat,
      cache: picker.cache(),
      onLoadProgress: (e) => {
        if (e.bytesTotal > 0) {
          bar.max = e.bytesTotal;
          bar.value = e.bytesRead;
        }
        status(loadProgressText(e));
      },
    });
    bar.hidden = true;
    void refreshCache();
    const prog = $<HTMLProgressElement>('eval-progress');
    prog.max = items.length;
    prog.value = 0;
    prog.hidden = false;
    stopper = new AbortController();
    stop.disabled = false;
    const t0 = performance.now();
    const rate = (n: number) => n / Math.max(1e-3, (performance.now() - t0) / 1000);
    status(`0/${items.length} items`);
    const done = await evaluate(model, task, items, {
      reuseContext: $<HTMLInputElement>('reuse').checked,
      signal: stopper.signal,
      onItem: (d, n) => {
        prog.value = d;
        status(`${d}/${n} items, ${rate(d).toFixed(2)} items/s`);
      },
    });
    const result: PageResult = { ...summarizeEval(task, done), ...(done.length < items.length ? { interrupted: true as const } : {}), items_per_s: rate(done.length) };
    state.result = result;
    showResult(result);
    status(`${done.length} of ${items.length} items in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return result;
  } catch (e) {
    state.error = e instanceof Error ? e.message : String(e);
    showError(e);
    status('');
    return undefined;
  } finally {
    model?.dispose();
    stop.disabled = true;
    button.disabled = false;
    state.running = false;
  }
}

async function main(): Promise<void> {
  const support = await showSupport();
  const select = $<HTMLSelectElement>('task');
  select.replaceChildren(...TASK_NAMES.map((t) => h('option', { value: t }, t)));
  const showLayout = () => {
    const t = TASKS[select.value as TaskName];
    $('layout').textContent = `${t.layout} — from ${t.source}`;
  };
  select.addEventListener('change', showLayout);
  const qTask = params.get('task');
  if (qTask && isTaskName(qTask)) select.value = qTask;
  showLayout();
  if (params.get('limit')) $<HTMLInputElement>('limit').value = params.get('limit')!;
  if (params.get('reuse') === '0') $<HTMLInputElement>('reuse').checked = false;
  const picker = setupPicker(await loadPresets(), () => {});
  setupCacheButton();
  void refreshCache();
  $('run-eval').addEventListener('click', () => {
    state.done = run(picker);
  });
  $('stop-eval').addEventListener('click', () => stopper?.abort());
  if (params.get('autorun') === '1' && support.available) state.done = run(picker);
}

main().catch(showError);
