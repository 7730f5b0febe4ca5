// Faults with the real engine (pkg/, built by `make pkg`) in headless Chromium: files the engine
// cannot run (refused by their header before the download), broken files, hostile chat templates, a GPU reset or out-of-memory mid-reply, a load
// during a reply, a start that never ended, conversations longer than the context, and the
// request options that reach the sampler. GPU faults are made by the worker's test hook
// ('test-fault'), as a phone's browser reports them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { byTestId, loadFromUi, openApp, REPO, savedConversation, showSetup, startServer, storeDownload, storeState, tempDir, BUILT, requireBuilt } from './harness.mjs';
import { withStrings } from './gguf_edit.mjs';

const FIXTURE = join(REPO, 'tests', 'quant-fixtures', 'llama-ff352-q5_0.gguf');
const MODELS = join(REPO, '.cache', 'models');
const DEFAULT_PATH = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const LOAD_TIMEOUT = 600_000;
const REPLY_TIMEOUT = 300_000;
const TEMPLATE = '{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>';
// Three nested loops of a million each: without a limit the worker never comes back.
const HOSTILE_TEMPLATE = '{% for a in range(1000000) %}{% for b in range(1000000) %}{% for c in range(1000000) %}x{% endfor %}{% endfor %}{% endfor %}';
// Few steps, each searching 50 MB: within the engine's limits, minutes long. The page ends it.
const SLOW_TEMPLATE = "{% set s = 'x' * 50000000 %}{% for i in range(100000) %}{% if 'y' in s %}{% endif %}{% endfor %}";

const waitForStatus = (page, text, timeout = LOAD_TIMEOUT) => page.waitForFunction(
  (text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), text, { timeout });

async function errorText(page, timeout = REPLY_TIMEOUT) {
  await byTestId(page, 'error').waitFor({ state: 'visible', timeout });
  return byTestId(page, 'error').textContent();
}

async function send(page, text) {
  await byTestId(page, 'prompt-input').fill(text);
  await byTestId(page, 'send').click();
}

// Waits until the reply being written has at least `length` characters.
const replyStarted = (page, length = 10) => page.waitForFunction(
  (length) => (document.querySelectorAll('[data-testid="assistant-message"]')?.[document.querySelectorAll('[data-testid="assistant-message"]').length - 1]?.textContent.length ?? 0) >= length,
  length, { timeout: REPLY_TIMEOUT });

const replyDone = (page) => page.waitForFunction(() => document.querySelector('[data-testid="stop"]').hidden, null, { timeout: REPLY_TIMEOUT });

// Sends a test fault to the engine's worker.
async function fault(page, kind) {
  const worker = page.workers().find((w) => w.url().endsWith('/web/worker.js'));
  assert.ok(worker, 'the engine worker is running');
  await worker.evaluate((kind) => self.onmessage({ data: { type: 'test-fault', fault: kind } }), kind);
}

test('a file the engine cannot run is refused before the download, a broken one removed, a hostile chat template stopped', async (t) => {
  requireBuilt(BUILT.pkg);
  const dir = await tempDir(t);
  const original = readFileSync(FIXTURE);
  await writeFile(join(dir, 'mamba.gguf'), withStrings(original, { 'general.architecture': 'mamba', 'tokenizer.chat_template': TEMPLATE }));
  await writeFile(join(dir, 'cut.gguf'), original.subarray(0, Math.floor(original.length * 0.6)));
  await writeFile(join(dir, 'hostile.gguf'), withStrings(original, { 'tokenizer.chat_template': HOSTILE_TEMPLATE }));
  await writeFile(join(dir, 'slow.gguf'), withStrings(original, { 'tokenizer.chat_template': SLOW_TEMPLATE }));
  await writeFile(join(dir, 'fine.gguf'), withStrings(original, { 'tokenizer.chat_template': TEMPLATE }));
  const server = await startServer(t, { modelsDir: dir, engine: 'real' });
  const { page } = await openApp(t, server);
  const url = (name) => `${server.origin}/models/${name}`;
  const stored = async () => Object.fromEntries((await storeState(page)).models.map((m) => [m.url.split('/').at(-1), m.complete]));

  // Refused by its header, read with a Range request, before anything is downloaded.
  await loadFromUi(page, url('mamba.gguf'));
  assert.match(await errorText(page), /^This model cannot run here: architecture 'mamba' is not supported/);
  assert.deepEqual(await stored(), {});
  const asked = server.requests.filter((r) => r.path === '/models/mamba.gguf');
  assert.ok(asked.length > 0 && asked.every((r) => /^bytes=0-\d+$/.test(r.range)), JSON.stringify(asked));

  // A file cut short is refused the same way; one already stored (as before these checks) is
  // found when loading, and deleted.
  await loadFromUi(page, url('cut.gguf'));
  assert.match(await errorText(page), /^This model cannot run here: the file is not a usable model: /);
  assert.deepEqual(await stored(), {});
  assert.equal((await storeDownload(page, url('cut.gguf'))).error, undefined);
  await showSetup(page);
  await byTestId(page, 'load').click();
  assert.match(await errorText(page), /The model cannot be loaded: the file is not a usable model: .* The file was removed from this device\.$/);
  assert.deepEqual(await stored(), {});

  await loadFromUi(page, url('hostile.gguf'));
  await waitForStatus(page, 'ready');
  await send(page, 'Hello');
  assert.match(await errorText(page), /^hostile\.gguf: .*chat template/);
  await replyDone(page);
  // The turn was taken back: nothing saved, the text back in the composer, the engine usable.
  assert.equal(await byTestId(page, 'user-message').count(), 0);
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), 'Hello');
  assert.deepEqual(await savedConversation(page), []);

  await loadFromUi(page, url('slow.gguf'));
  await waitForStatus(page, 'ready');
  await send(page, 'Hello');
  assert.match(await errorText(page), /^The chat template of slow\.gguf did not finish within \d+ s; it may be hostile\./);
  await byTestId(page, 'reload-model').waitFor({ state: 'visible' });
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), 'Hello');

  await loadFromUi(page, url('fine.gguf'));
  await waitForStatus(page, 'ready');
  await send(page, 'Hello');
  await replyDone(page);
  assert.equal(await byTestId(page, 'error').isHidden(), true);
  assert.deepEqual((await savedConversation(page)).map(([role]) => role), ['user', 'assistant']);
});

test('GPU reset and out-of-memory mid-reply, a load during a reply, a start that never ended: nothing lost, nothing stuck', async (t) => {
  requireBuilt(BUILT.pkg, BUILT.model);
  const server = await startServer(t, { modelsDir: MODELS, engine: 'real' });
  const { page } = await openApp(t, server);
  const modelRequests = () => server.requests.filter((r) => r.path === DEFAULT_PATH).length;
  await showSetup(page);
  await byTestId(page, 'load').click();
  await waitForStatus(page, 'ready');

  // 1. The GPU is reset while a reply streams.
  await send(page, 'Write a long story about a brave little fox.');
  await replyStarted(page);
  await fault(page, 'lose-device');
  assert.equal(await errorText(page), 'The GPU was reset — reload the model.');
  await replyDone(page);
  await byTestId(page, 'reload-model').waitFor({ state: 'visible' });
  assert.equal(await byTestId(page, 'prompt-input').isDisabled(), true);
  const partial = await byTestId(page, 'assistant-message').last().textContent();
  assert.ok(partial.length >= 10);
  assert.deepEqual(await savedConversation(page), [['user', 'Write a long story about a brave little fox.'], ['assistant', partial]]);
  assert.equal((await storeState(page)).models[0].complete, true, 'the stored model is kept');

  // 2. Reloading reads the stored file: no download.
  const downloads = modelRequests();
  await byTestId(page, 'reload-model').click();
  await waitForStatus(page, 'ready');
  assert.equal(modelRequests(), downloads);
  assert.equal(await byTestId(page, 'reload-model').isHidden(), true);

  // 3. The GPU runs out of memory while idle.
  await fault(page, 'out-of-memory');
  assert.equal(await errorText(page), 'The GPU ran out of memory — reload the model, or pick a smaller one.');
  await byTestId(page, 'reload-model').click();
  await waitForStatus(page, 'ready');

  // 4. Load pressed during a reply: the reply stops and is saved first.
  await send(page, 'Now tell me a long story about the sea.');
  await replyStarted(page);
  await showSetup(page);
  await byTestId(page, 'load').click();
  await page.waitForFunction(() => !document.querySelector('[data-testid="model-status"]').textContent.includes('ready'), null, { timeout: REPLY_TIMEOUT });
  await waitForStatus(page, 'ready');
  const replies = await byTestId(page, 'assistant-message').allTextContents();
  const saved = await savedConversation(page);
  assert.deepEqual(saved.map(([role]) => role), ['user', 'assistant', 'user', 'assistant']);
  assert.equal(saved[3][1], replies.at(-1));
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), '', 'a turn with a reply is not returned to the composer');
  await send(page, 'Thanks!');
  await replyDone(page);
  assert.deepEqual((await savedConversation(page)).map(([role]) => role), ['user', 'assistant', 'user', 'assistant', 'user', 'assistant']);
  assert.equal(modelRequests(), downloads);

  // 5. The page closes while the model starts (as a crash would): the next launch does not
  // start it again by itself.
  await showSetup(page);
  await byTestId(page, 'load').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="download-text"]').textContent.startsWith('Starting the engine'), null, { timeout: LOAD_TIMEOUT });
  await page.reload();
  await waitForStatus(page, 'was not loaded automatically');
  assert.equal(await byTestId(page, 'prompt-input').isDisabled(), true);
  await showSetup(page);
  await byTestId(page, 'load').click();
  await waitForStatus(page, 'ready');
});

test('API: a conversation longer than the context drops its oldest turns, top_k reaches the sampler, unload settles a stream', async (t) => {
  requireBuilt(BUILT.pkg);
  const server = await startServer(t, { modelsDir: MODELS, engine: 'real' });
  const { page } = await openApp(t, server);
  const result = await page.evaluate(async (model) => {
    const { Burrow } = await import('/web/burrow.js');
    const engine = await Burrow.create({ model, contextLength: 160 });
    const ask = (messages, extra) => engine.chat.completions.create({ messages, temperature: 0, max_tokens: 8, ...extra });
    const messages = [{ role: 'system', content: 'You are a helpful assistant.' }];
    const dropped = [];
    for (let i = 0; i < 8; i++) {
      messages.push({ role: 'user', content: `Question ${i}: tell me about the number ${i} in one short sentence.` });
      const reply = await ask(messages);
      dropped.push(reply.dropped_messages);
      messages.push(reply.choices[0].message);
    }
    const colour = [{ role: 'user', content: 'Name a colour and say why you like it.' }];
    const greedy = await ask(colour, { max_tokens: 16 });
    const topK = await ask(colour, { max_tokens: 16, temperature: 1.5, top_k: 1, seed: 7 });
    const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Write a long story.' }], stream: true, max_tokens: 200 });
    let chunks = 0;
    let code = null;
    try {
      for await (const chunk of stream) {
        chunks += 1;
        if (chunks === 3) engine.unload();
        if (chunk.choices[0].finish_reason) break;
      }
    } catch (error) {
      code = error.code;
    }
    return { dropped, greedy: greedy.token_ids, topK: topK.token_ids, code, chunks };
  }, `${server.origin}${DEFAULT_PATH}`);
  assert.equal(result.dropped[0], 0);
  assert.ok(result.dropped.at(-1) > 0, `dropped: ${result.dropped}`);
  assert.deepEqual(result.topK, result.greedy);
  assert.equal(result.code, 'unloaded');
  assert.equal(result.chunks, 3);
});
