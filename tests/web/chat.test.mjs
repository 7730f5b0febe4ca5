// Chat through the real worker, Burrow API and UI, with tests/web/stub_engine standing in for
// the wasm engine (its replies echo the prompt; it exists only to exercise the protocol).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { byTestId, openPanel, loadFromUi, makeFile, MIB, openApp, savedConversation as saved, startServer, tempDir } from './harness.mjs';

async function setup(t) {
  const dir = await tempDir(t);
  await makeFile(dir, 'chat.gguf', 3 * MIB + 1);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const { context, page } = await openApp(t, server);
  return { server, context, page, url: `${server.origin}/models/chat.gguf` };
}

const waitForStatus = (page, text) => page.waitForFunction(
  (text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), text);

async function send(page, text) {
  await byTestId(page, 'prompt-input').fill(text);
  await byTestId(page, 'send').click();
}

test('load, chat with greedy temperature, tokens/s, and the conversation survives a reload', async (t) => {
  const { page, url } = await setup(t);
  await loadFromUi(page, url);
  await waitForStatus(page, 'ready');
  assert.equal(await byTestId(page, 'prompt-input').isDisabled(), false);
  await openPanel(page, 'Settings');
  await byTestId(page, 'temperature').fill('0');
  await byTestId(page, 'temperature').dispatchEvent('change');
  await send(page, 'Hi <b>there</b>');
  const reply = 'echo: Hi <b>there</b> (temperature 0, 1 messages)';
  await page.waitForFunction((reply) => document.querySelector('[data-testid="assistant-message"]')?.textContent === reply, reply);
  await page.waitForFunction(() => document.querySelector('[data-testid="send"]').disabled === false);
  assert.equal(await byTestId(page, 'tokens-per-second').textContent(), '12.5 tokens/s');
  assert.equal(await page.locator('[data-testid="messages"] b').count(), 0);
  await send(page, 'again');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="assistant-message"]').length === 2
    && document.querySelectorAll('[data-testid="assistant-message"]')[1].textContent.endsWith('3 messages)'));

  await page.reload();
  await waitForStatus(page, 'ready');
  assert.deepEqual(await byTestId(page, 'user-message').allTextContents(), ['Hi <b>there</b>', 'again']);
  assert.equal(await byTestId(page, 'assistant-message').first().textContent(), reply);
  assert.equal(await byTestId(page, 'temperature').inputValue(), '0');
});

test('stop ends a long reply, keeps what was written, and the next prompt works', async (t) => {
  const { page, url } = await setup(t);
  await loadFromUi(page, url);
  await waitForStatus(page, 'ready');
  await send(page, 'a long story');
  await byTestId(page, 'stop').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.querySelector('[data-testid="assistant-message"]').textContent.length > 20);
  await byTestId(page, 'stop').click();
  await byTestId(page, 'stop').waitFor({ state: 'hidden' });
  const stopped = await byTestId(page, 'assistant-message').textContent();
  await page.waitForTimeout(200);
  assert.equal(await byTestId(page, 'assistant-message').textContent(), stopped, 'no tokens after stop');
  assert.ok(stopped.split(' ').length < 2000);
  await send(page, 'short');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="assistant-message"]').length === 2);
});

test('Burrow API: OpenAI-shaped stream and full response, max_tokens, abort', async (t) => {
  const { page, url } = await setup(t);
  const result = await page.evaluate(async (url) => {
    const { Burrow } = await import('/web/burrow.js');
    const engine = await Burrow.create({ model: url });
    const messages = [{ role: 'user', content: 'Hello' }];
    const full = await engine.chat.completions.create({ messages, temperature: 0, seed: 1 });
    const chunks = [];
    for await (const chunk of await engine.chat.completions.create({ messages, stream: true, max_tokens: 2 })) chunks.push(chunk);
    const long = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'long' }], stream: true });
    let received = 0;
    let finish = null;
    for await (const chunk of long) {
      received += 1;
      if (received === 5) engine.abort();
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    const model = engine.model;
    await engine.unload();
    const afterUnload = await engine.chat.completions.create({ messages }).catch((error) => error.code);
    return { full, chunks, finish, received, model, afterUnload };
  }, url);
  assert.equal(result.full.object, 'chat.completion');
  assert.deepEqual(result.full.choices[0].message, { role: 'assistant', content: 'echo: Hello (temperature 0, 1 messages)' });
  assert.equal(result.full.choices[0].finish_reason, 'stop');
  assert.equal(result.full.usage.completion_tokens + result.full.usage.prompt_tokens, result.full.usage.total_tokens);
  assert.match(result.full.id, /^chatcmpl-/);
  assert.equal(result.full.tokens_per_second, 12.5);
  assert.equal(result.full.prefill_tokens_per_second, 40);
  assert.equal(result.chunks.at(-1).prefill_tokens_per_second, 40);
  assert.equal(result.chunks[0].choices[0].delta.role, 'assistant');
  assert.ok(result.chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.id === result.chunks[0].id));
  assert.equal(result.chunks.map((chunk) => chunk.choices[0].delta.content ?? '').join(''), 'echo: Hello');
  assert.equal(result.chunks.at(-1).choices[0].finish_reason, 'length');
  assert.equal(result.finish, 'abort');
  assert.ok(result.received < 100);
  assert.equal(result.model.name, 'chat.gguf');
  assert.equal(result.afterUnload, 'not-loaded');
});

test('storage panel: delete a stored model, ask for persistent storage', async (t) => {
  const { server, context, page, url } = await setup(t);
  await loadFromUi(page, url);
  await waitForStatus(page, 'ready');
  await openPanel(page, 'Storage');
  assert.match(await byTestId(page, 'storage-usage').textContent(), /MB used of [\d.]+ GB available/);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Browser.grantPermissions', { origin: server.origin, permissions: ['durableStorage'] });
  await byTestId(page, 'persist').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="persist-status"]').textContent.includes('kept'));
  assert.equal(await byTestId(page, 'persist').isHidden(), true);
  await byTestId(page, 'delete-model').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="stored-model"]').length === 0);
  assert.equal(await byTestId(page, 'model-status').textContent(), 'No model loaded.');
  assert.equal(await byTestId(page, 'prompt-input').isDisabled(), true);
  assert.deepEqual(await page.evaluate(async () => (await import('/web/store.js')).list()), []);
});

test('a turn that produced nothing is taken back; a reply is saved while it streams', async (t) => {
  const { page, url } = await setup(t);
  await loadFromUi(page, url);
  await waitForStatus(page, 'ready');
  await send(page, 'this is too long');
  await byTestId(page, 'error').waitFor({ state: 'visible' });
  assert.match(await byTestId(page, 'error').textContent(), /context holds 1536/);
  await page.waitForFunction(() => document.querySelector('[data-testid="send"]').disabled === false);
  assert.equal(await byTestId(page, 'user-message').count(), 0);
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), 'this is too long');
  assert.deepEqual(await saved(page), []);

  await send(page, 'a long story');
  // Saved while the reply is still being written (a tab closed now keeps it).
  await page.waitForFunction(() => document.querySelector('[data-testid="assistant-message"]')?.textContent.length > 200);
  let during = [];
  while (during.length < 2) during = await saved(page);
  assert.equal(await byTestId(page, 'stop').isVisible(), true, 'still writing');
  assert.equal(during[0][1], 'a long story');
  assert.ok(during[1][0] === 'assistant' && during[1][1].length > 0);
  // Rendered as Markdown (at most once a frame, so either may be ahead), the reply's text and the
  // saved text, without its leading space, agree as far as both go.
  const shown = await byTestId(page, 'assistant-message').textContent();
  const kept = during[1][1].trim();
  assert.ok(shown.startsWith(kept) || kept.startsWith(shown), `shown "${shown.slice(0, 80)}", saved "${kept.slice(0, 80)}"`);
  await byTestId(page, 'stop').click();
  await byTestId(page, 'stop').waitFor({ state: 'hidden' });
  const final = await saved(page);
  assert.deepEqual(final.map(([role]) => role), ['user', 'assistant']);
  assert.equal(final[1][1].trim(), await byTestId(page, 'assistant-message').textContent());
});

test('two tabs on one conversation: the second save is refused and shown, not written over the first', async (t) => {
  const { server, context, page, url } = await setup(t);
  await loadFromUi(page, url);
  await waitForStatus(page, 'ready');
  await send(page, 'first');
  await page.waitForFunction(() => document.querySelector('[data-testid="send"]').disabled === false
    && document.querySelectorAll('[data-testid="assistant-message"]').length === 1);
  const other = await context.newPage();
  await other.goto(`${server.origin}/`);
  await waitForStatus(other, 'ready');
  assert.deepEqual(await byTestId(other, 'user-message').allTextContents(), ['first']);
  await send(page, 'from the first tab');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="assistant-message"]').length === 2
    && document.querySelector('[data-testid="stop"]').hidden);
  await send(other, 'from the second tab');
  await byTestId(other, 'error').waitFor({ state: 'visible' });
  assert.match(await byTestId(other, 'error').textContent(), /could not be saved: This conversation was changed in another tab/);
  const stored = await saved(page);
  assert.deepEqual(stored.filter(([role]) => role === 'user').map(([, content]) => content), ['first', 'from the first tab']);
});

test('after the first download the browser is asked to keep the models, and the storage panel says so', async (t) => {
  const { server, context, page, url } = await setup(t);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Browser.grantPermissions', { origin: server.origin, permissions: ['durableStorage'] });
  await loadFromUi(page, url);
  await waitForStatus(page, 'ready');
  await openPanel(page, 'Storage');
  await page.waitForFunction(() => document.querySelector('[data-testid="persist-status"]').textContent.includes('kept'));
  assert.equal(await byTestId(page, 'persist').isHidden(), true);
});
