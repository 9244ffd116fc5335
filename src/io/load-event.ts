// The progress events of a browser model load (browser.ts loadModel's onLoadProgress), here below
// the entry points so the worker proxy (src/worker) can forward them without importing browser.ts.
import type { StorageReport } from './model-store.ts';

export interface LoadEvent {
  /**
   * files: config and weight headers; gpu: requesting the device; weights: each tensor read
   * (download or cache), converted or quantized, and uploaded; tokenizer; done.
   */
  stage: 'files' | 'gpu' | 'weights' | 'tokenizer' | 'done';
  /** One line for people. */
  message: string;
  /** Weight bytes read so far, and in all (every weight file). */
  bytesRead: number;
  bytesTotal: number;
  /** Bytes that came over the network / from the cache (all files, config included). */
  networkBytes: number;
  cacheBytes: number;
  tensorsDone: number;
  tensorsTotal: number;
  /** Where the files are kept (OPFS, the Cache API or nowhere), and whether the browser agreed to persist them. */
  storage?: StorageReport;
}
