// Starts `openelm serve` as a separate process on a free port, on a small synthetic chat model
// (LLAMA_VOCAB_CONFIG with CHAT_TEMPLATE), and the same model in this process to compare against.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, type OpenElmModel } from '../src/index.ts';
import { synthesizeCheckpoint } from '../src/io/synth.ts';
import { cliEnv } from './cli-spawn.ts';
import { CHAT_TEMPLATE, LLAMA_VOCAB_CONFIG, repoRoot, testGpu } from './helpers.ts';

/** Kernels pinned on both sides, so the server and the in-process model compute the same floats. */
export const PINNED = { dtype: 'f32', gemv: 'rows', prefillMatmul: 'register' } as const;

export async function chatModelDir(seed = 5): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'openelm-serve-model-'));
  await synthesizeCheckpoint(dir, LLAMA_VOCAB_CONFIG, { dtype: 'F16', seed });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: CHAT_TEMPLATE, bos_token: '<s>', eos_token: '</s>' }));
  return dir;
}

export async function localModel(dir: string): Promise<OpenElmModel> {
  return loadModel(dir, { ...PINNED, gpu: await testGpu(), tuningStore: null });
}

export interface Served {
  child: ChildProcessWithoutNullStreams;
  url: string;
  pid: number;
  stderr: () => string;
  /** SIGTERM, then the exit code (or signal) once the process ends. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function serve(dir: string, extra: readonly string[] = [], env: Record<string, string | undefined> = {}): Promise<Served> {
  const tmp = mkdtempSync(join(tmpdir(), 'openelm-serve-'));
  const args = [join(repoRoot, 'bin/openelm.js'), 'serve', '--model', dir, '--port', '0', '--dtype', PINNED.dtype, '--gemv', PINNED.gemv, '--prefill-matmul', PINNED.prefillMatmul, ...extra];
  const child = spawn(process.execPath, args, { cwd: tmp, env: cliEnv(tmp, env) });
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`openelm serve did not start in 120 s:\n${err}`));
    }, 120_000);
    child.stdout.resume();
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /on (http:\/\/[^\s/]+)\/v1/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({
          child,
          url: m[1],
          pid: child.pid!,
          stderr: () => err,
          stop: () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            return exited;
          },
        });
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`openelm serve exited (${code}) before listening:\n${err}`));
    });
  });
}
