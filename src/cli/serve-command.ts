// `openelm serve`: the OpenAI-compatible HTTP server (src/serve) over one loaded model, until
// SIGINT/SIGTERM, which stop it gracefully (waiting requests get 503, the running one may finish).
import { basename, resolve } from 'node:path';
import { isHubId } from '../io/hub.ts';
import { SERVE_DEFAULTS, startServer } from '../serve/server.ts';
import { disposeWhenIdle, type RunLifecycle } from './lifecycle.ts';
import { intOption, UsageError, type Parsed, type Spec } from './args.ts';
import type { Command, OpenModel } from './eval-commands.ts';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export function serveCommand(common: Spec, openModel: OpenModel, life: RunLifecycle): Command {
  // Token ids on the command line and --json output mean nothing for a server.
  const { 'input-ids': _ids, json: _json, ...shared } = common;
  const spec: Spec = {
    ...shared,
    tokenizer: { kind: 'string', value: 'DIR|FILE', help: "tokenizer.json / tokenizer.model, or a folder with one (and its tokenizer_config.json chat template). Default: the model folder's, else the built-in Llama-2 tokenizer" },
    host: { kind: 'string', value: 'HOST', help: `address to listen on (default ${SERVE_DEFAULTS.host}: this machine only; 0.0.0.0 exposes the server to the network, so set --api-key)` },
    port: { kind: 'string', value: 'PORT', help: `TCP port (default ${SERVE_DEFAULTS.port}; 0 picks a free one, printed at start)` },
    'api-key': { kind: 'string', value: 'KEY', help: 'require "Authorization: Bearer KEY" on /v1/ routes (else $OPENELM_API_KEY; default: no key)' },
    'model-name': { kind: 'string', value: 'NAME', help: 'the model id clients send and GET /v1/models lists (default: the hub id, or the folder name)' },
    'max-queue': { kind: 'string', value: 'N', help: `requests that may wait while one runs; more get 429 (default ${SERVE_DEFAULTS.maxQueue})` },
    'max-tokens': { kind: 'string', value: 'N', help: `most new tokens a request may ask for, and the default when the context leaves room (default ${SERVE_DEFAULTS.maxTokens})` },
    'max-body': { kind: 'string', value: 'BYTES', help: `largest request body; larger gets 413 (default ${SERVE_DEFAULTS.maxBodyBytes})` },
  };
  return {
    summary: 'serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health)',
    spec,
    run: async (p: Parsed) => {
      life.trapSignals();
      const host = p.values.get('host') ?? SERVE_DEFAULTS.host;
      const port = intOption(p, 'port', 0, SERVE_DEFAULTS.port);
      if (port > 65535) throw new UsageError(`--port must be an integer in 0..65535, got "${port}"`);
      const maxQueue = intOption(p, 'max-queue', 0, SERVE_DEFAULTS.maxQueue);
      const maxTokens = intOption(p, 'max-tokens', 1, SERVE_DEFAULTS.maxTokens);
      const maxBodyBytes = intOption(p, 'max-body', 1, SERVE_DEFAULTS.maxBodyBytes);
      const apiKey = p.values.get('api-key') ?? (process.env.OPENELM_API_KEY || undefined);
      if (apiKey !== undefined && apiKey.trim() === '') throw new UsageError('--api-key must not be empty');
      const { model, dir } = await openModel(p);
      try {
        const source = p.values.get('model');
        const modelId = p.values.get('model-name') ?? (source !== undefined && isHubId(source) ? source : basename(resolve(dir)));
        life.signal.throwIfAborted();
        const server = await startServer({ model, modelId, host, port, apiKey, maxQueue, maxTokens, maxBodyBytes, onRequest: (line) => process.stderr.write(`${line}\n`) }).catch((e: NodeJS.ErrnoException) => {
          throw new Error(`cannot listen on ${host}:${port} (${e.code ?? e.message})${e.code === 'EADDRINUSE' ? ': the port is taken; pick another with --port' : ''}`);
        });
        process.stderr.write(`openelm serve: model "${modelId}" (${model.dtype}, context ${model.engine.contextLength}) on ${server.url}/v1${apiKey ? ' (API key required)' : ''}\n`);
        if (!LOOPBACK.test(host) && !apiKey) process.stderr.write(`openelm serve: warning: listening on ${host} without --api-key; anyone who can reach this port can use the model\n`);
        await new Promise<void>((r) => (life.signal.aborted ? r() : life.signal.addEventListener('abort', () => r(), { once: true })));
        process.stderr.write('openelm serve: shutting down (waiting requests get 503; the running one has 10 s to finish)\n');
        await server.close(10_000);
      } finally {
        await disposeWhenIdle(model);
      }
    },
  };
}
