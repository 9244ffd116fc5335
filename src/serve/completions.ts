// POST /v1/completions and /v1/chat/completions: the prompt's token ids, a place in the queue, then
// model.generate with the mapped options, answered whole or as server-sent events in OpenAI's
// shapes. A client that goes away aborts its generation (or its place in the queue).
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { OpenElmModel } from '../api/model.ts';
import { resolveGeneration } from '../generate/options.ts';
import { ApiError, asApiError, badField } from './errors.ts';
import type { RequestQueue } from './queue.ts';
import { parseGenRequest, tokenBudget, type Endpoint, type GenRequest } from './request.ts';

export interface GenContext {
  model: OpenElmModel;
  /** The id clients name in `model` (GET /v1/models lists it). */
  modelId: string;
  queue: RequestQueue;
  /** Most new tokens a request may ask for (and the default, when the context leaves that much). */
  maxTokens: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

type FinishReason = 'stop' | 'length';

function promptIds(ctx: GenContext, r: GenRequest): number[] {
  const { model } = ctx;
  try {
    if (r.messages) return model.chatIds(r.messages);
    if (typeof r.prompt === 'string') return model.encode(r.prompt);
  } catch (e) {
    // No chat template, no tokenizer: the model cannot serve this kind of request.
    throw badField(r.messages ? 'messages' : 'prompt', (e as Error).message);
  }
  const ids = r.prompt!;
  const bad = ids.findIndex((id) => id >= model.plan.vocabSize);
  if (bad >= 0) throw badField('prompt', `prompt[${bad}] is token id ${ids[bad]}, outside the model's vocabulary of ${model.plan.vocabSize}`);
  return ids;
}

/** 'length' when the budget ran out, 'stop' for eos or a stop string (the text then ends before it). */
function finishReason(ctx: GenContext, ids: readonly number[], maxNew: number, stops: readonly string[]): FinishReason {
  if (ids.length < maxNew || ids[ids.length - 1] === ctx.model.plan.eosTokenId) return 'stop';
  const tok = ctx.model.tokenizer;
  if (tok && stops.length > 0) {
    const text = tok.decode(ids);
    if (stops.some((s) => text.includes(s))) return 'stop';
  }
  return 'length';
}

function sse(res: ServerResponse, data: unknown): void {
  res.write(`data: ${JSON.stringify(data)}\n\n`);
}

/** Handles one generation request; `signal` aborts when the client disconnects. */
export async function handleGeneration(ctx: GenContext, endpoint: Endpoint, body: unknown, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const r = parseGenRequest(body, endpoint);
  if (r.model !== undefined && r.model !== ctx.modelId) {
    throw new ApiError(404, `the model "${r.model}" does not exist here: this server serves "${ctx.modelId}" (see GET /v1/models)`, 'invalid_request_error', 'model', 'model_not_found');
  }
  ctx.queue.checkRoom(); // a full queue refuses before the template and tokenizer run
  const ids = promptIds(ctx, r);
  const maxNew = tokenBudget(ids.length, r.maxTokens, { contextLength: ctx.model.engine.contextLength, maxTokens: ctx.maxTokens }, endpoint === 'chat' ? 'messages' : 'prompt');
  let cfg;
  try {
    cfg = resolveGeneration({ ...r.options, maxNewTokens: maxNew });
  } catch (e) {
    throw badField('body', (e as Error).message);
  }

  const release = await ctx.queue.acquire(signal);
  try {
    const chat = endpoint === 'chat';
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const head = { id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model: ctx.modelId };
    const usageField = r.includeUsage ? { usage: null } : {};
    const chunk = (text: string | undefined, finish: FinishReason | null, role = false) =>
      chat
        ? { ...head, choices: [{ index: 0, delta: { ...(role ? { role: 'assistant' } : {}), ...(text === undefined ? {} : { content: text }) }, logprobs: null, finish_reason: finish }], ...usageField }
        : { ...head, choices: [{ index: 0, text: text ?? '', logprobs: null, finish_reason: finish }], ...usageField };

    const out: number[] = [];
    let text = '';
    const gen = ctx.model.generate(ids, { ...cfg, signal });
    if (r.stream) {
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
      if (chat) sse(res, chunk('', null, true));
    }
    try {
      for await (const t of gen) {
        out.push(t.id);
        text += t.text;
        if (r.stream && t.text.length > 0) sse(res, chunk(t.text, null));
        if (signal.aborted) break;
      }
    } catch (e) {
      if (signal.aborted) return; // the client left: nobody to answer
      if (!r.stream) throw e;
      // Headers are sent: the error goes into the stream in OpenAI's error shape, then it ends.
      sse(res, asApiError(e).body());
      res.end('data: [DONE]\n\n');
      return;
    }
    if (signal.aborted) return;
    const finish = finishReason(ctx, out, maxNew, cfg.stopStrings);
    const usage: Usage = { prompt_tokens: ids.length, completion_tokens: out.length, total_tokens: ids.length + out.length };
    if (r.stream) {
      sse(res, chunk(chat ? undefined : '', finish));
      if (r.includeUsage) sse(res, { ...head, choices: [], usage });
      res.end('data: [DONE]\n\n');
      return;
    }
    const choice = chat
      ? { index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finish }
      : { index: 0, text, logprobs: null, finish_reason: finish };
    const json = JSON.stringify({ ...head, object: chat ? 'chat.completion' : 'text_completion', choices: [choice], usage });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) });
    res.end(json);
  } finally {
    release();
  }
}
