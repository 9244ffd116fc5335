// The tuner's memory in browsers: one localStorage item holding the same JSON as the Node file.
// No localStorage (workers, some private modes), a throwing one (blocked storage, quota) or an
// unreadable item all mean the same, silently: nothing is remembered and choices are timed again.
import { parseTuningText, tuningText, type TuningRecord, type TuningStore } from './tuning-store.ts';

export const TUNING_ITEM = 'openelm-webgpu-tuning';

/** The page's localStorage, or undefined where reading it is refused or it does not exist. */
function pageStorage(): Storage | undefined {
  try {
    return (globalThis as { localStorage?: Storage }).localStorage ?? undefined;
  } catch {
    return undefined;
  }
}

export function browserTuningStore(storage: Storage | undefined = pageStorage(), item = TUNING_ITEM): TuningStore {
  const read = (): Map<string, TuningRecord> => {
    try {
      const text = storage?.getItem(item);
      return text ? parseTuningText(text) : new Map();
    } catch {
      return new Map();
    }
  };
  return {
    where: storage ? 'localStorage' : 'nowhere (no localStorage)',
    get: (key) => Promise.resolve(read().get(key)),
    set: (key, record) => {
      const entries = read();
      entries.set(key, record);
      try {
        storage?.setItem(item, tuningText(entries));
      } catch {
        // Full or blocked storage: this choice is simply not remembered.
      }
      return Promise.resolve();
    },
    entries: () => Promise.resolve([...read()]),
  };
}
