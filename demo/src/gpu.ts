// The "Check this GPU" page (demo/gpu.html): the library's runDoctor in the browser, a table of its
// checks, the model check, the choices, and the report as JSON (download link; also
// window.openelmDoctor.report), and what this browser offers (window.openelmDoctor.features). Query parameters: dtype, only (kernel checks, e.g. matmul,attention), autorun=1, retune=1 (time the kernel choices again).
import { browserFeatures, browserTuningStore, createGpu, retuningStore, reportJson, runDoctor, type BrowserFeature, type CheckResult, type DoctorReport } from '../../src/browser.ts';
import { $, clearError, h, params, showError, showSupport } from './common.ts';

declare global {
  interface Window {
    openelmDoctor?: { report?: DoctorReport; error?: string; features?: BrowserFeature[] };
  }
}

const fmtErr = (e: number | null): string => (e === null ? 'NaN/inf' : e === 0 ? '0' : e.toExponential(2));

function checkRow(c: CheckResult): HTMLTableRowElement {
  const tol = c.rel_tolerance !== undefined ? `${c.tolerance} + ${c.rel_tolerance}·|ref|` : String(c.tolerance);
  return h(
    'tr',
    { class: c.pass ? 'pass' : 'fail' },
    h('td', {}, c.pass ? 'PASS' : 'FAIL'),
    h('td', {}, c.name),
    h('td', {}, c.variant),
    h('td', {}, c.format),
    h('td', { class: 'num' }, fmtErr(c.max_error)),
    h('td', {}, tol),
    h('td', { class: 'num' }, c.ms.toFixed(0)),
    h('td', {}, c.error ?? ''),
  );
}

function table(head: string[], rows: HTMLTableRowElement[]): HTMLTableElement {
  return h('table', {}, h('thead', {}, h('tr', {}, ...head.map((t) => h('th', {}, t)))), h('tbody', {}, ...rows));
}

function show(r: DoctorReport): void {
  const failed = r.checks.filter((c) => !c.pass).length;
  $('summary').replaceChildren(
    h('p', { class: r.pass ? 'pass' : 'fail' }, `${r.pass ? 'PASS' : 'FAIL'}: ${r.checks.length - failed}/${r.checks.length} kernel checks passed, model check ${r.model_check.pass ? 'passed' : 'FAILED'} (${(r.ms / 1000).toFixed(1)} s)`),
  );
  $('results').replaceChildren(table(['', 'kernel', 'variant', 'format', 'max error', 'tolerance', 'ms', ''], r.checks.map(checkRow)));
  const m = r.model_check;
  $('model').replaceChildren(
    h('h3', {}, `Model check (${m.model}, ${m.positions} positions against the float64 CPU forward)`),
    table(
      ['', 'format', 'max |logit error|', 'tolerance', 'top-1 agrees', 'ms'],
      m.dtypes.map((d) =>
        h('tr', { class: d.pass ? 'pass' : 'fail' }, h('td', {}, d.pass ? 'PASS' : 'FAIL'), h('td', {}, d.dtype), h('td', { class: 'num' }, fmtErr(d.max_abs)), h('td', {}, d.tolerance.toExponential(2)), h('td', {}, `${d.top1_agree}/${m.positions}`), h('td', { class: 'num' }, String(d.ms))),
      ),
    ),
  );
  $('choices').replaceChildren(h('h3', {}, 'Choices on this adapter'), h('ul', {}, ...Object.entries(r.choices).map(([k, c]) => h('li', {}, h('strong', {}, `${k} = ${String(c.value)}`), `: ${c.why}`))));
  const json = reportJson(r);
  $('json').textContent = JSON.stringify(JSON.parse(json), null, 2);
  const a = $<HTMLAnchorElement>('download');
  if (a.href.startsWith('blob:')) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
  a.download = 'openelm-doctor.json';
  a.hidden = false;
}

async function run(): Promise<void> {
  clearError();
  const button = $<HTMLButtonElement>('run');
  const status = $('status');
  const progress = $<HTMLProgressElement>('progress');
  button.disabled = true;
  progress.hidden = false;
  window.openelmDoctor = { features: window.openelmDoctor?.features };
  const gpu = await createGpu();
  try {
    const dtype = $<HTMLSelectElement>('dtype').value as 'f16' | 'q8' | 'q4';
    const only = params.get('only')?.split(',').map((x) => x.trim()).filter(Boolean);
    const report = await runDoctor(gpu, {
      dtype,
      only,
      // Timed choices are kept in localStorage, as loads keep them; retune=1 times them again.
      tuningStore: params.get('retune') === '1' ? retuningStore(browserTuningStore()) : browserTuningStore(),
      onCheck: (c, i, n) => {
        progress.value = (i + 1) / (n + 1);
        status.textContent = `${i + 1}/${n}: ${c.name} ${c.variant} ${c.format} ${c.pass ? 'passed' : 'FAILED'}`;
      },
      log: (line) => (status.textContent = line),
    });
    show(report);
    status.textContent = '';
    window.openelmDoctor.report = report;
  } catch (e) {
    window.openelmDoctor.error = e instanceof Error ? e.message : String(e);
    showError(e);
  } finally {
    gpu.destroy();
    progress.hidden = true;
    button.disabled = false;
  }
}

/** #features: every feature the engine and its storage use, found by feature detection. */
function showFeatures(list: BrowserFeature[]): void {
  const missing = list.filter((f) => !f.ok);
  $('features-summary').textContent =
    missing.length === 0 ? 'Everything the engine uses is here.' : `Missing here: ${missing.map((f) => `${f.name}${f.required ? ' (required)' : ''}`).join(', ')}.`;
  $('features').replaceChildren(
    table(
      ['', 'feature', 'needed', 'what it means here'],
      list.map((f) => h('tr', { class: f.ok ? 'pass' : f.required ? 'fail' : 'warn', 'data-feature': f.name }, h('td', { class: f.ok ? 'yes' : 'no' }, f.ok ? '✓' : '✗'), h('td', {}, f.name), h('td', {}, f.required ? 'required' : 'optional'), h('td', {}, f.detail))),
    ),
  );
}

async function main(): Promise<void> {
  const support = await showSupport();
  const features = browserFeatures(support);
  showFeatures(features);
  window.openelmDoctor = { ...window.openelmDoctor, features };
  const button = $<HTMLButtonElement>('run');
  const d = params.get('dtype');
  if (d && ['f16', 'q8', 'q4'].includes(d)) $<HTMLSelectElement>('dtype').value = d;
  if (!support.available) {
    button.disabled = true;
    return;
  }
  button.addEventListener('click', () => void run());
  if (params.get('autorun') === '1') await run();
}

main().catch(showError);
