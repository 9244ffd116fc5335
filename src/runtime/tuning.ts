// Kernel choices timed once per adapter and shape, then remembered: `tune` returns the stored
// choice when one exists for (adapter, engine version, decision, shape), else times every
// candidate, stores the fastest and returns it. The store (io/tuning-store.ts) is injected by the
// entry points (a JSON file in the cache folder in Node, localStorage in browsers) so this module
// stays browser-safe.
import { ENGINE_LIMITS, type DeviceFeatures, type EngineLimit } from '../gpu/device.ts';
import type { Gpu } from '../gpu/gpu.ts';
import type { TuningKey, TuningRecord, TuningStore } from '../io/tuning-store.ts';

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
 * the earlier candidate. A single candidate is returned untimed. A decision is one call, e.g.
 *   tune(opts.tuningStore ?? null, gpuTuningKey(gpu, 'attention', `kv=${kvHeads}:d=${headDim}:L=${L}`),
 *        ['single', 'split'], (cs) => timeEach(cs))
 * with a shape string holding whatever the timing depends on besides the adapter.
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
