// The chat page (demo/chat.html): a multi-turn conversation with an -Instruct model, its chat
// template from tokenizer_config.json, streamed through the worker engine (createWorkerModel).
// Each turn sends the whole conversation; the engine keeps the KV cache of the longest prefix the
// new prompt shares with the last one, and the page shows how many tokens were prefilled and
// reused. Query parameters: model, dtype, cache=0, max_new_tokens, do_sample, temperature, top_k,
// top_p, repetition_penalty, seed, system. window.openelmChat exposes the turns for tests.
import { createWorkerModel, emptyStats, fmtBytes, type ChatMessage, type GenerationStats, type WorkerCallOptions, type WorkerModel } from '../../src/browser.ts';
import { $, clearError, fmt, h, loadPresets, loadProgressText, params, refreshCache, setupCacheButton, setupPicker, showError, showSupport } from './common.ts';

interface TurnRecord {
  prompt_tokens: number;
  /** Prompt tokens whose KV entries were reused from the previous turn. */
  cached_tokens: number;
  new_tokens: number;
  ids: number[];
  text: string;
  stopped: boolean;
  firstTokenMs?: number;
  stats: GenerationStats;
}

const state: {
  model?: WorkerModel;
  modelKey?: string;
  loading?: Promise<WorkerModel>;
  running?: AbortController;
  /** The conversation without the system prompt (it is read from the form at each turn). */
  messages: ChatMessage[];
  turns: TurnRecord[];
  runs: number;
  busy: boolean;
  error?: string;
} = { messages: [], turns: [], runs: 0, busy: false };

let markReady: () => void = () => {};
const ready = new Promise<void>((r) => (markReady = r));
(globalThis as unknown as { openelmChat: unknown }).openelmChat = { state, ready };

const NO_TEMPLATE =
  "This model has no chat template: its folder's tokenizer_config.json has no chat_template (base models ship none). " +
  'Load an -Instruct model (e.g. apple/OpenELM-270M-Instruct) to chat, or use the Generate page for plain text continuation.';

function setBusy(busy: boolean): void {
  state.busy = busy;
  const chatOk = !!state.model?.info.hasChatTemplate;
  $<HTMLButtonElement>('send').disabled = busy || (!!state.model && !chatOk);
  $<HTMLButtonElement>('load').disabled = busy;
  $<HTMLButtonElement>('stop').disabled = !busy;
  const last = state.messages[state.messages.length - 1];
  $<HTMLButtonElement>('regenerate').disabled = busy || !chatOk || last?.role !== 'assistant';
}

function readOptions(): WorkerCallOptions {
  const num = (id: string, what: string, int = false): number => {
    const el = $<HTMLInputElement>(id);
    const v = Number(el.value);
    if (el.value.trim() === '' || !Number.isFinite(v) || (int && !Number.isInteger(v))) throw new Error(`${what} must be ${int ? 'an integer' : 'a number'}, got "${el.value}"`);
    return v;
  };
  return {
    maxNewTokens: num('max-new-tokens', 'max_new_tokens', true),
    doSample: $<HTMLInputElement>('do-sample').checked,
    temperature: num('temperature', 'temperature'),
    topK: num('top-k', 'top_k', true),
    topP: num('top-p', 'top_p'),
    repetitionPenalty: num('repetition-penalty', 'repetition_penalty'),
    seed: num('seed', 'seed', true),
    reuseCache: $<HTMLInputElement>('reuse-cache').checked,
  };
}

async function ensureModel(picker: ReturnType<typeof setupPicker>, signal?: AbortSignal): Promise<WorkerModel> {
  const key = picker.key();
  if (state.model && state.modelKey === key) return state.model;
  if (state.loading && state.modelKey === key) return state.loading;
  state.model?.dispose();
  state.model = undefined;
  state.modelKey = key;
  const bar = $<HTMLProgressElement>('load-progress');
  bar.hidden = false;
  bar.removeAttribute('value');
  const t0 = performance.now();
  state.loading = createWorkerModel(picker.source(), {
    dtype: picker.dtype() as 'f16',
    cache: picker.cache(),
    signal,
    onLoadProgress: (e) => {
      if (e.bytesTotal > 0) {
        bar.max = e.bytesTotal;
        bar.value = e.bytesRead;
      }
      $('load-status').textContent = loadProgressText(e);
    },
  });
  try {
    const m = await state.loading;
    state.model = m;
    const p = m.info.plan;
    $('load-status').textContent = `${p.numLayers} layers, ${(p.paramCount / 1e6).toFixed(1)}M parameters, ${m.dtype} weights, ${fmtBytes(m.info.gpuBytes)} on the GPU, loaded in ${fmt((performance.now() - t0) / 1000, 2)} s (in a worker)`;
    const note = $('no-template');
    note.hidden = m.info.hasChatTemplate;
    note.textContent = m.info.hasChatTemplate ? '' : NO_TEMPLATE;
    void refreshCache();
    return m;
  } catch (e) {
    state.modelKey = undefined;
    $('load-status').textContent = 'not loaded';
    throw e;
  } finally {
    bar.hidden = true;
    state.loading = undefined;
  }
}

/** The conversation as the template sees it: the system prompt (when given), then the turns. */
function conversation(): ChatMessage[] {
  const system = $<HTMLTextAreaElement>('system').value.trim();
  return system ? [{ role: 'system', content: system }, ...state.messages] : [...state.messages];
}

function bubble(role: ChatMessage['role'], text: string): { el: HTMLElement; body: HTMLElement; foot: HTMLElement } {
  const body = h('span', { class: 'body' }, text);
  const foot = h('span', { class: 'turn-stats' });
  const el = h('div', { class: `msg ${role}` }, h('span', { class: 'role' }, role), body, foot);
  $('messages').append(el);
  el.scrollIntoView({ block: 'end' });
  return { el, body, foot };
}

function render(): void {
  $('messages').replaceChildren();
  let turn = 0;
  for (const m of state.messages) {
    const b = bubble(m.role, m.content.trim());
    if (m.role === 'assistant') {
      const t = state.turns[turn++];
      if (t) b.foot.textContent = turnLine(t);
    }
  }
}

function turnLine(t: TurnRecord): string {
  const fresh = t.prompt_tokens - t.cached_tokens;
  return `prefilled ${fresh} new tokens, reused ${t.cached_tokens} · ${t.new_tokens} generated${t.stopped ? ' (stopped)' : ''} · first token ${fmt(t.firstTokenMs)} ms · decode ${fmt(t.stats.decode_tokens_per_s, 2)} tokens/s`;
}

/** Generates the assistant's reply to the conversation as it stands (its last message is the user's). */
async function reply(picker: ReturnType<typeof setupPicker>, regenerate: boolean): Promise<void> {
  clearError();
  const ctrl = new AbortController();
  state.running = ctrl;
  setBusy(true);
  const t0 = performance.now();
  const stats = emptyStats();
  const rec: TurnRecord = { prompt_tokens: 0, cached_tokens: 0, new_tokens: 0, ids: [], text: '', stopped: false, stats };
  let b: ReturnType<typeof bubble> | undefined;
  const convo = state.messages; // "New chat" replaces it: a reply to the old one is dropped
  try {
    const opts = readOptions();
    const model = await ensureModel(picker, ctrl.signal);
    if (!model.info.hasChatTemplate) throw new Error(NO_TEMPLATE);
    $('run-status').textContent = regenerate ? 'regenerating…' : 'thinking…';
    b = bubble('assistant', '');
    try {
      for await (const t of model.chat(conversation(), { ...opts, stats, signal: ctrl.signal })) {
        if (rec.ids.length === 0) rec.firstTokenMs = performance.now() - t0;
        rec.ids.push(t.id);
        rec.text += t.text;
        b.body.textContent = rec.text.trimStart();
        rec.prompt_tokens = stats.prompt_tokens;
        rec.cached_tokens = stats.prompt_cached_tokens;
        rec.new_tokens = rec.ids.length;
        b.foot.textContent = turnLine(rec);
        b.el.scrollIntoView({ block: 'end' });
      }
    } catch (e) {
      if (!ctrl.signal.aborted) throw e;
      rec.stopped = true;
    }
    rec.prompt_tokens = stats.prompt_tokens;
    rec.cached_tokens = stats.prompt_cached_tokens;
    rec.new_tokens = rec.ids.length;
    b.foot.textContent = turnLine(rec);
    // The reply as decoded (leading space and all), so the next turn's prompt re-encodes it as
    // closely as possible to the tokens in the cache.
    if (state.messages !== convo) return;
    state.messages.push({ role: 'assistant', content: rec.text });
    state.turns.push(rec);
    $('run-status').textContent = `${rec.stopped ? 'stopped' : 'done'}: ${rec.ids.length} tokens in ${fmt((performance.now() - t0) / 1000, 2)} s`;
    $('chat-stats').textContent = `last turn: prompt ${rec.prompt_tokens} tokens, prefilled ${rec.prompt_tokens - rec.cached_tokens} new, reused ${rec.cached_tokens} from the KV cache; ${fmtBytes(model.info.gpuBytes)} on the GPU`;
  } catch (e) {
    b?.el.remove();
    // The user's message stays in the box so it can be sent again.
    if (!regenerate && state.messages[state.messages.length - 1]?.role === 'user') {
      const m = state.messages.pop()!;
      $<HTMLTextAreaElement>('user-input').value = m.content;
      render();
    }
    if (ctrl.signal.aborted) $('run-status').textContent = 'stopped while loading';
    else {
      $('run-status').textContent = 'failed';
      state.error = (e as Error).message;
      showError(e);
    }
  } finally {
    state.runs++;
    state.running = undefined;
    setBusy(false);
  }
}

async function send(picker: ReturnType<typeof setupPicker>): Promise<void> {
  if (state.busy) return;
  const input = $<HTMLTextAreaElement>('user-input');
  const text = input.value.trim();
  if (!text) {
    showError(new Error('type a message first'));
    return;
  }
  input.value = '';
  state.messages.push({ role: 'user', content: text });
  bubble('user', text);
  await reply(picker, false);
}

async function regenerate(picker: ReturnType<typeof setupPicker>): Promise<void> {
  if (state.busy || state.messages[state.messages.length - 1]?.role !== 'assistant') return;
  state.messages.pop();
  state.turns.pop();
  render();
  await reply(picker, true);
}

async function main(): Promise<void> {
  const support = await showSupport();
  // Models with a chat template first (the picker starts on the first preset).
  const chatty = (v: string) => /synth-chat|instruct|\/chat\//i.test(v);
  const presets = (await loadPresets()).sort((a, b) => Number(chatty(b.value)) - Number(chatty(a.value)));
  const picker = setupPicker(presets, () => {});
  for (const [name, id] of [
    ['max_new_tokens', 'max-new-tokens'],
    ['temperature', 'temperature'],
    ['top_k', 'top-k'],
    ['top_p', 'top-p'],
    ['repetition_penalty', 'repetition-penalty'],
    ['seed', 'seed'],
    ['system', 'system'],
  ]) {
    const v = params.get(name);
    if (v !== null) $<HTMLInputElement>(id).value = v;
  }
  if (params.get('do_sample') === 'true' || params.get('do_sample') === '1') $<HTMLInputElement>('do-sample').checked = true;
  $('send').addEventListener('click', () => void send(picker));
  $('user-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      void send(picker);
    }
  });
  $('stop').addEventListener('click', () => state.running?.abort());
  $('regenerate').addEventListener('click', () => void regenerate(picker));
  $('new-chat').addEventListener('click', () => {
    state.running?.abort();
    state.messages = [];
    state.turns = [];
    render();
    $('chat-stats').textContent = '';
    setBusy(state.busy);
  });
  $('load').addEventListener('click', async () => {
    clearError();
    const ctrl = new AbortController();
    state.running = ctrl;
    setBusy(true);
    try {
      await ensureModel(picker, ctrl.signal);
    } catch (e) {
      if (!ctrl.signal.aborted) showError(e);
    } finally {
      state.running = undefined;
      setBusy(false);
    }
  });
  setupCacheButton();
  await refreshCache();
  setBusy(false);
  if (!support.available) {
    $<HTMLButtonElement>('send').disabled = true;
    $<HTMLButtonElement>('load').disabled = true;
  }
  markReady();
}

main().catch(showError);
