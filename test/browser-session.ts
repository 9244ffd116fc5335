// Headless Chromium and the demo server for the browser tests: one way to start each, so every
// test runs the browser with the same flags (WebGPU on SwiftShader, no background networking,
// which this machine's closed network would refuse) and reads the server's URL the same way.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';
import { repoRoot } from './helpers.ts';

export const CHROMIUM = process.env.OPENELM_CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS: readonly string[] = ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--no-sandbox'];

/** Starts scripts/demo.mjs on a free port with `args` (e.g. --model NAME=DIR); resolves to its base URL. */
export async function startDemoServer(args: readonly string[] = [], env: Record<string, string> = {}): Promise<{ server: ChildProcess; base: string }> {
  const server = spawn(process.execPath, [join(repoRoot, 'scripts/demo.mjs'), '--port', '0', '--json', ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const base = await new Promise<string>((resolve, reject) => {
    let buf = '';
    server.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve((JSON.parse(buf.split('\n')[0]) as { url: string }).url);
    });
    server.on('exit', (code) => reject(new Error(`scripts/demo.mjs exited with ${code}`)));
  });
  return { server, base };
}

/** A headless Chromium with its own profile folder (storage survives a reload, not a new profile). */
export async function launchChromium(profile: string, opts: { viewport?: { width: number; height: number }; args?: readonly string[] } = {}): Promise<BrowserContext> {
  const { chromium } = await import('playwright-core');
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    ...(opts.viewport ? { viewport: opts.viewport } : {}),
    args: [...CHROMIUM_ARGS, ...(opts.args ?? [])],
  });
}
