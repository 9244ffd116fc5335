// Kernel choices timed once per adapter and shape, then remembered: `tune` returns the stored
// choice when one exists for (adapter, engine version, decision, shape), else times every
// candidate, stores the fastest and returns it. The store is injected by the entry points (a JSON
// file in the cache folder in Node, localStorage in browsers) so this module stays browser-safe.
import { ENGINE_LIMITS, type DeviceFeatures, type EngineLimit } from '../gpu/device.ts';
import type { Gpu } from '../gpu/gpu.ts';

/** What the tuner reads of a device (a Gpu, or a stand-in in tests). */
export interface AdapterFacts {
  info: Gpu['info'];
  features: DeviceFeatures;
  limits: Pick<GPUSupportedLimits, EngineLimit>;
}

/**
 * Bump when a kernel that a tuned decision chooses between changes: choices remembered by an
 * older engine are then measured again.
 */
export const TUNING_ENGINE_VERSION = 1;

/** What makes one adapter's timings differ from another's, as far as the kernels can tell. */
export interface AdapterIdentity {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallback: boolean;
  /** Features kernels compile differently for. timestamp-query is left out: it changes no kernel. */
  features: string[];
  limits: Record<EngineLimit, number>;
}

export function adapterIdentity(gpu: AdapterFacts): AdapterIdentity {
  const limits = {} as Record<EngineLimit, number>;
  for (const name of ENGINE_LIMITS) limits[name] = Number(gpu.limits[name]);
  const features: string[] = [];
  if (gpu.features.shaderF16) features.push('shader-f16');
  if (gpu.features.subgroups) features.push('subgroups');
  const { vendor, architecture, device, description, isFallback } = gpu.info;
  return { vendor, architecture, device, description, isFallback, features, limits };
}

/** One line naming the adapter: equal lines mean the same adapter for the tuner. */
export function adapterId(a: AdapterIdentity): string {
  const name = [a.vendor, a.architecture, a.device, a.description].join('/') + (a.isFallback ? ' (fallback)' : '');
  const limits = ENGINE_LIMITS.map((k) => `${k}=${a.limits[k]}`).join(',');
  return `${name} [${[...a.features].sort().join(',')}] ${limits}`;
}

export interface TuningKey {
  /** adapterId() of the adapter the choice was timed on. */
  adapter: string;
  engine: number;
  /** Which choice: 'gemv', 'attention', ... */
  decision: string;
  /** The shape it was timed for, e.g. 'q4:N=10240:K=1280'. */
  shape: string;
}

export function tuningKey(adapter: AdapterIdentity, decision: string, shape: string, engine = TUNING_ENGINE_VERSION): TuningKey {
  return { adapter: adapterId(adapter), engine, decision, shape };
}

/** The key for a decision on `gpu`'s adapter. */
export function gpuTuningKey(gpu: AdapterFacts, decision: string, shape: string): TuningKey {
  return tuningKey(adapterIdentity(gpu), decision, shape);
}

export function keyString(k: TuningKey): string {
  return `${k.decision} ${k.shape} engine=${k.engine} ${k.adapter}`;
}

/** A remembered choice: its key's parts, the choice, each candidate's time then, and when. */
export interface TuningRecord extends TuningKey {
  choice: string;
  ms: Record<string, number>;
  /** ISO time of the measurement. */
  at: string;
}

/**
 * Small JSON records by key. Implementations never reject for a storage problem (a store that
 * cannot read or write simply remembers nothing): a load must not fail because of it.
 */
export interface TuningStore {
  /** Where the records live, for people (a file path, 'localStorage', 'memory'). */
  readonly where: string;
  get(key: string): Promise<TuningRecord | undefined>;
  set(key: string, record: TuningRecord): Promise<void>;
  entries(): Promise<[string, TuningRecord][]>;
}

function isRecord(v: unknown): v is TuningRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  const ms = r.ms;
  return (
    typeof r.adapter === 'string' &&
    typeof r.engine === 'number' &&
    typeof r.decision === 'string' &&
    typeof r.shape === 'string' &&
    typeof r.choice === 'string' &&
    typeof r.at === 'string' &&
    typeof ms === 'object' &&
    ms !== null &&
    Object.values(ms).every((x) => typeof x === 'number' && Number.isFinite(x))
  );
}

const FILE_FORMAT = 1;

/**
 * The records in a store's text (`{"format": 1, "entries": {key: record}}`). Throws with the reason
 * when the text is not such an object; an entry that is not a record is dropped.
 */
export function parseTuningText(text: string): Map<string, TuningRecord> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON (${(e as Error).message})`);
  }
  const o = v as { format?: unknown; entries?: unknown } | null;
  if (typeof o !== 'object' || o === null || o.format !== FILE_FORMAT || typeof o.entries !== 'object' || o.entries === null) {
    throw new Error(`not a tuning file of format ${FILE_FORMAT}`);
  }
  const out = new Map<string, TuningRecord>();
  for (const [k, r] of Object.entries(o.entries)) if (isRecord(r)) out.set(k, r);
  return out;
}

export function tuningText(entries: Map<string, TuningRecord>): string {
  return `${JSON.stringify({ format: FILE_FORMAT, entries: Object.fromEntries(entries) }, null, 1)}\n`;
}

/** Records in memory only (tests; callers that want remembering within one process). */
export function memoryTuningStore(): TuningStore {
  const m = new Map<string, TuningRecord>();
  return {
    where: 'memory',
    get: (key) => Promise.resolve(m.get(key)),
    set: (key, record) => {
      m.set(key, record);
      return Promise.resolve();
    },
    entries: () => Promise.resolve([...m]),
  };
}

/** `store` with remembered choices ignored: every decision is timed again and overwrites its record. */
export function retuningStore(store: TuningStore): TuningStore {
  return {
    where: `${store.where} (retune: remembered choices ignored and replaced)`,
    get: () => Promise.resolve(undefined),
    set: (key, record) => store.set(key, record),
    entries: () => store.entries(),
  };
}

export interface Tuned<C extends string> {
  choice: C;
  /** Median ms per candidate, measured now or when the remembered choice was made. */
  ms: Partial<Record<C, number>>;
  /** True when the choice came from the store rather than from timing now. */
  remembered: boolean;
  /** When it was measured (ISO time). */
  at: string;
  key: TuningKey;
}

/**
 * The fastest of `candidates` for `key`: remembered when `store` holds a record for the key with
 * a time for every candidate (a new candidate means timing again), else `measure` times all of
 * them (one call, so they can share their setup), the result is stored and returned. Ties go to
 * the earlier candidate. A single candidate is returned untimed.
 */
export async function tune<C extends string>(
  store: TuningStore | null,
  key: TuningKey,
  candidates: readonly C[],
  measure: (candidates: readonly C[]) => Promise<Record<C, number>>,
): Promise<Tuned<C>> {
  if (candidates.length === 0) throw new Error(`tuning ${key.decision}: no candidates`);
  const now = new Date().toISOString();
  if (candidates.length === 1) return { choice: candidates[0], ms: {}, remembered: false, at: now, key };
  const k = keyString(key);
  const known = store ? await store.get(k).catch(() => undefined) : undefined;
  if (known && candidates.includes(known.choice as C) && candidates.every((c) => Number.isFinite(known.ms[c]))) {
    const ms: Partial<Record<C, number>> = {};
    for (const c of candidates) ms[c] = known.ms[c];
    return { choice: known.choice as C, ms, remembered: true, at: known.at, key };
  }
  const ms = await measure(candidates);
  let best = candidates[0];
  for (const c of candidates) {
    if (!Number.isFinite(ms[c])) throw new Error(`tuning ${key.decision} ${key.shape}: no time measured for ${c}`);
    if (ms[c] < ms[best]) best = c;
  }
  if (store) await store.set(k, { ...key, choice: best, ms: { ...ms }, at: now }).catch(() => {});
  return { choice: best, ms, remembered: false, at: now, key };
}

/** The records `store` holds for this adapter and engine version (what doctor reports). */
export async function rememberedFor(store: TuningStore, adapter: AdapterIdentity): Promise<TuningRecord[]> {
  const id = adapterId(adapter);
  const all = await store.entries().catch(() => []);
  return all.map(([, r]) => r).filter((r) => r.adapter === id && r.engine === TUNING_ENGINE_VERSION);
}
