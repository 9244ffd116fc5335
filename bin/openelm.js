#!/usr/bin/env node
// The `openelm` command: a thin launcher for the bundled CLI (built by `npm run build`, which
// `npm ci` runs through the prepare script).
import { existsSync } from 'node:fs';
const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('openelm: dist/cli.js is missing; run `npm run build` in the openelm-webgpu folder first');
  process.exit(1);
}
await import(cli.href);
