// The tuner's memory in Node: one JSON file in the cache folder (<cache>/tuning.json). Writes go
// to a temporary file renamed over the old one, so a reader (or a second process writing at the
// same time) sees the old file or the new one, never half of one. A file that cannot be read or
// parsed is ignored with one warning line and replaced at the next write.
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { cacheRoot } from './hub.ts';
import { parseTuningText, retuningStore, tuningText, type TuningRecord, type TuningStore } from './tuning-store.ts';

export const TUNING_FILE = 'tuning.json';

export interface NodeTuningStoreOptions {
  /** Default $OPENELM_TUNING_FILE, else <cache root>/tuning.json (cache root: $OPENELM_CACHE, else ~/.cache/openelm-webgpu). */
  file?: string;
  /** Where the warning line goes (default stderr). */
  warn?: (line: string) => void;
}

// Writes to one file from this process run one after another, so no update is lost between them.
const queues = new Map<string, Promise<void>>();

export function nodeTuningStore(opts: NodeTuningStoreOptions = {}): TuningStore {
  const file = opts.file ?? (process.env.OPENELM_TUNING_FILE || join(cacheRoot(), TUNING_FILE));
  const warnLine = opts.warn ?? ((line: string) => process.stderr.write(`${line}\n`));
  let warned = false;
  const warn = (what: string) => {
    if (warned) return;
    warned = true;
    warnLine(`openelm: ${what}; kernel choices are timed again and the file rewritten`);
  };

  const read = async (): Promise<Map<string, TuningRecord>> => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`cannot read ${file} (${(e as Error).message})`);
      return new Map();
    }
    try {
      return parseTuningText(text);
    } catch (e) {
      warn(`ignoring ${file}: ${(e as Error).message}`);
      return new Map();
    }
  };

  const write = async (key: string, record: TuningRecord): Promise<void> => {
    // Read again just before writing: another process may have added records since.
    const entries = await read();
    entries.set(key, record);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      await mkdir(dirname(file), { recursive: true });
      await writeFile(tmp, tuningText(entries));
      await rename(tmp, file);
    } catch (e) {
      warn(`cannot write ${file} (${(e as Error).message})`);
      await unlink(tmp).catch(() => {});
    }
  };

  // `where` ends up in doctor reports that users attach to bug reports: no user name in it.
  const home = homedir();
  const where = home && file.startsWith(home + sep) ? `~${file.slice(home.length)}` : file;
  return {
    where,
    get: async (key) => (await read()).get(key),
    set: (key, record) => {
      const next = (queues.get(file) ?? Promise.resolve()).then(() => write(key, record));
      queues.set(file, next);
      return next;
    },
    entries: async () => [...(await read())],
  };
}

/**
 * The store loads use by default in Node: the cache folder's file, with remembered choices
 * ignored (timed again and replaced) when `retune` is set or OPENELM_RETUNE=1.
 */
export function defaultNodeTuningStore(opts: { retune?: boolean } = {}): TuningStore {
  const store = nodeTuningStore();
  return opts.retune || process.env.OPENELM_RETUNE === '1' ? retuningStore(store) : store;
}
