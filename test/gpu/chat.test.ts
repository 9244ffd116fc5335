// model.chat: the template from tokenizer_config.json rendered and encoded as the CLI's --chat
// does, then the same tokens as generate() on those ids; bad conversations get one clear line.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadModel, type OpenElmModel } from '../../src/index.ts';
import { synthesizeCheckpoint } from '../../src/io/synth.ts';
import { chatTemplateFromConfig, encodeChat, renderChat, type ChatMessage } from '../../src/tokenizer/chat.ts';
import { CHAT_TEMPLATE, fixtureDir, LLAMA_VOCAB_CONFIG, testGpu } from '../helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'openelm-chat-'));
let model: OpenElmModel;
before(async () => {
  await synthesizeCheckpoint(tmp, LLAMA_VOCAB_CONFIG, { dtype: 'F16', seed: 5 });
  writeFileSync(join(tmp, 'tokenizer_config.json'), JSON.stringify({ chat_template: CHAT_TEMPLATE, bos_token: '<s>', eos_token: '</s>' }));
  model = await loadModel(tmp, { dtype: 'f32', gpu: await testGpu(), tuningStore: null });
});
after(() => {
  model.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const conversation: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name a colour.' },
  { role: 'assistant', content: 'Blue.' },
  { role: 'user', content: 'Another one?' },
];

test('chatIds renders the folder template and encodes its special tokens as ids', () => {
  const t = chatTemplateFromConfig({ chat_template: CHAT_TEMPLATE }, 'x')!;
  const ids = model.chatIds(conversation);
  assert.deepEqual(ids, encodeChat(model.tokenizer!, t, renderChat(t, conversation)));
  assert.equal(ids[0], 1);
  assert.equal(ids.filter((id) => id === 2).length, conversation.length, 'one eos after each message');
});

test('chat streams the same tokens and text as generate on the rendered ids', async () => {
  const opts = { maxNewTokens: 6, stopAtEos: false };
  const viaChat = await model.chatText(conversation, opts);
  const viaIds = await model.generateText(model.chatIds(conversation), opts);
  assert.deepEqual(viaChat.ids, viaIds.ids);
  assert.equal(viaChat.text, viaIds.text);
  assert.equal(viaChat.stats.prompt_tokens, model.chatIds(conversation).length);
  const streamed: number[] = [];
  for await (const t of model.chat(conversation, opts)) streamed.push(t.id);
  assert.deepEqual(streamed, viaChat.ids);
});

test('bad conversations and models without a template are refused with one line', async () => {
  const bad: [unknown, RegExp][] = [
    [[], /messages must be a non-empty array/],
    ['hi', /messages must be a non-empty array/],
    [[{ role: 'robot', content: 'x' }], /messages\[0\]\.role must be one of system, user, assistant, got "robot"/],
    [[{ role: 'user', content: 'a' }, { role: 'user' }], /messages\[1\]\.content must be a string, got undefined/],
    [[null], /messages\[0\] must be an object/],
  ];
  for (const [messages, re] of bad) assert.throws(() => model.chatIds(messages as ChatMessage[]), re);
  const plain = await loadModel(fixtureDir('tiny-elm'), { dtype: 'f32', gpu: model.gpu, tuningStore: null });
  try {
    assert.equal(plain.chatTemplate, undefined);
    assert.throws(() => plain.chat([{ role: 'user', content: 'hi' }]), /this model has no chat template/);
  } finally {
    plain.dispose();
  }
});
