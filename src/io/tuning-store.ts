// The tuner's memory, as data: what a remembered kernel choice holds, the store contract, the
// JSON text both the Node file and the browser's localStorage item hold, and the two stores that
// need no platform (in memory; one that ignores what another holds). runtime/tuning.ts decides
// what to remember; node-tuning-store.ts and browser-tuning-store.ts keep it.

export interface TuningKey {
  /** adapterId() of the adapter the choice was timed on. */
  adapter: string;
  engine: number;
  /** Which choice: 'gemv', 'attention', ... */
  decision: string;
  /** The shape it was timed for, e.g. 'q4:N=10240:K=1280'. */
  shape: string;
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

