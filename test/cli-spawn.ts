// Runs `node bin/openelm.js ...` as a separate process, the way a user or a pipeline does, with a
// private TMPDIR and no XDG_RUNTIME_DIR so a test can tell whether the run left files behind.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './helpers.ts';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

export interface CliOptions {
  /** Folder used as TMPDIR (and cwd) for the child; a fresh one by default. */
  tmp?: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  /** Called once the child runs, to read slowly, close stdout early or send signals. */
  drive?: (child: ChildProcessWithoutNullStreams) => void;
}

export function cliEnv(tmp: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp, ...extra };
  delete env.XDG_RUNTIME_DIR;
  delete env.OPENELM_DEBUG;
  for (const [k, v] of Object.entries(extra)) if (v === undefined) delete env[k];
  return env;
}

export function runCli(args: readonly string[], o: CliOptions = {}): Promise<CliRun> {
  const tmp = o.tmp ?? mkdtempSync(join(tmpdir(), 'openelm-cli-'));
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/openelm.js'), ...args], { cwd: tmp, env: cliEnv(tmp, o.env) });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.on('error', () => {}); // a driver may close our end early on purpose
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
    o.drive?.(child);
  });
}

/** Entries a run left in its TMPDIR (none expected). */
export function leftovers(tmp: string, ignore: readonly string[] = []): string[] {
  return readdirSync(tmp).filter((f) => !ignore.includes(f));
}
