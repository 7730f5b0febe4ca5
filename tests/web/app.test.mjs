// The page (index.html + web/app.js) driven like a user: download, resume after a reload,
// failures, conversations, and the Burrow API's errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { byTestId, openPanel, storedEverything, CHROMIUM_ARGS, ENGINE_MISSING, loadFromUi, makeFile, MIB, openApp, REPO, serveModels, startServer, storeState, tempDir } from './harness.mjs';

const APP_CHUNK = 16 * MIB; // store.CHUNK_SIZE
const STALL_TIMEOUT_MS = 15_000; // store.js: a download with no data for this long is retried
const DEFAULT_PATH = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';

// Keeps every value the download progress bar takes, with the text next to it.
function recordProgress() {
  window.progressLog = [];
  document.addEventListener('DOMContentLoaded', () => {
    const progress = document.querySelector('[data-testid="download-progress"]');
    const text = document.querySelector('[data-testid="download-text"]');
    new MutationObserver(() => window.progressLog.push({ value: progress.value, text: text.textContent }))
      .observe(progress, { attributes: true });
  });
}


async function errorText(page) {
  await byTestId(page, 'error').waitFor({ state: 'visible' });
  return byTestId(page, 'error').textContent();
}

test('downloads a pasted GGUF URL with progress, stores it verified, then reports the missing engine', async (t) => {
  const size = 40 * MIB + 1234;
  const { made, page, url } = await serveModels(t, [['pasted.gguf', size]], { initScript: recordProgress });
  await loadFromUi(page, url('pasted.gguf'));
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
  const log = await page.evaluate(() => window.progressLog);
  assert.ok(log.some((entry) => entry.value > 0 && /^[\d.]+ MB of 41\.9 MB · [\d.]+\u00a0MB\/s/.test(entry.text)), JSON.stringify(log));
  assert.ok(log.some((entry) => entry.value === 1), 'reaches 1');
  assert.ok(log.every((entry) => entry.value >= 0 && entry.value <= 1));
  const state = await storeState(page);
  assert.deepEqual(state.models, [{ url: url('pasted.gguf'), complete: true, chunksDone: 3, sha256: made['pasted.gguf'].sha256 }]);
  assert.equal(state.chunks, 3);
  await openPanel(page, 'Storage');
  assert.match(await byTestId(page, 'stored-model').textContent(), /pasted\.gguf \(41\.9 MB\)/);
  assert.equal(await byTestId(page, 'error').isHidden(), true);
  assert.equal(await byTestId(page, 'prompt-input').isDisabled(), true, 'no chat without an engine');
});

test('a download cut at a random byte resumes after a reload with a Range request', async (t) => {
  const size = 36 * MIB + 7;
  const { made, server, page, url } = await serveModels(t, [['cut.gguf', size]]);
  const cut = APP_CHUNK + 1 + Math.floor(Math.random() * (size - APP_CHUNK - 2));
  // The connection drops at `cut`, then the network stays down for the automatic retries.
  server.faults.set('/models/cut.gguf', { cutAfter: cut, times: 1, then: { cutAfter: 0 } });
  await loadFromUi(page, url('cut.gguf'));
  assert.match(await errorText(page), /interrupted/);
  const partial = (await storeState(page)).models[0];
  assert.equal(partial.complete, false);

  server.faults.delete('/models/cut.gguf');
  const before = server.requests.length;
  await page.reload();
  await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]').textContent.includes('paused'));
  await byTestId(page, 'load').click();
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
  const resumed = server.requests.slice(before).filter((r) => r.path === '/models/cut.gguf');
  assert.deepEqual(resumed.map((r) => r.range), [`bytes=${partial.chunksDone * APP_CHUNK}-`]);
  assert.ok(partial.chunksDone >= 1 && partial.chunksDone * APP_CHUNK <= cut);
  const state = await storeState(page);
  assert.equal(state.models[0].sha256, made['cut.gguf'].sha256);
  assert.equal(state.models[0].complete, true);
});

test('404, non-GGUF and checksum failures show a clear message and leave the store as it was', async (t) => {
  const { page, url } = await serveModels(t, [
    ['good.gguf', MIB],
    ['zip.gguf', MIB, 'PK\x03\x04'],
    ['SmolLM2-135M-Instruct.Q4_1.gguf', 2 * MIB], // not the real model: its sha256 cannot match
  ]);
  await loadFromUi(page, url('good.gguf'));
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
  const before = await storeState(page);

  await loadFromUi(page, url('nothing-here.gguf'));
  assert.match(await errorText(page), /not found \(HTTP 404/);
  assert.deepEqual(await storeState(page), before);

  await loadFromUi(page, url('zip.gguf'));
  assert.match(await errorText(page), /Not a GGUF file/);
  assert.deepEqual(await storeState(page), before);

  await byTestId(page, 'model-picker').selectOption('default');
  await byTestId(page, 'load').click();
  assert.match(await errorText(page), /Checksum mismatch.*expected sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53/);
  assert.deepEqual(await storeState(page), before);
  assert.equal(await byTestId(page, 'stored-model').count(), 1);
});

test('a model larger than the free space is refused up front: "needs X MB, Y MB free"', async (t) => {
  const { server, page, url } = await serveModels(t, []);
  server.faults.set('/models/huge.gguf', { fakeLength: 50e12 });
  await loadFromUi(page, url('huge.gguf'));
  assert.match(await errorText(page), /^Not enough storage: the model needs 50000000\.0 MB, [\d.]+ MB free\.$/);
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
});

test('storage running out while writing (real QuotaExceededError) shows a clear message', async (t) => {
  const { page, url } = await serveModels(t, [['big.gguf', 20 * MIB]], { quotaBytes: 4 * MIB });
  await loadFromUi(page, url('big.gguf'));
  assert.match(await errorText(page), /Storage is full/);
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
  assert.equal(await byTestId(page, 'stored-model').count(), 0);
});

test('conversations are restored after a reload; replies are rendered as Markdown, their HTML as text', async (t) => {
  const { page } = await serveModels(t, []);
  const hostile = '<img src=x onerror="window.injected=1"> **not markdown**';
  await page.evaluate(async (hostile) => {
    const conversations = await import('/web/conversations.js');
    const conversation = conversations.create();
    conversation.messages.push({ role: 'user', content: 'Hello?' }, { role: 'assistant', content: hostile });
    await conversations.save(conversation);
  }, hostile);
  await page.reload();
  await byTestId(page, 'assistant-message').waitFor();
  assert.equal(await byTestId(page, 'user-message').textContent(), 'Hello?');
  assert.equal((await byTestId(page, 'assistant-message').textContent()).trim(), '<img src=x onerror="window.injected=1"> not markdown');
  assert.equal(await byTestId(page, 'assistant-message').locator('strong').textContent(), 'not markdown');
  assert.equal(await page.locator('[data-testid="messages"] img').count(), 0);
  assert.equal(await page.evaluate(() => window.injected), undefined);
  await byTestId(page, 'new-chat').click();
  assert.equal(await byTestId(page, 'assistant-message').count(), 0);
});

test('the Burrow API reports errors with codes and progress while it downloads', async (t) => {
  const { page, url } = await serveModels(t, [['api.gguf', 3 * MIB]]);
  const result = await page.evaluate(async ({ good, missing }) => {
    const { Burrow } = await import('/web/burrow.js');
    const outcome = async (promise) => promise.then(() => 'resolved', (error) => ({ code: error.code, message: error.message, isError: error instanceof Error }));
    const progress = [];
    const engineMissing = await outcome(Burrow.create({ model: good, onProgress: (p) => progress.push(p) }));
    const notFound = await outcome(Burrow.create({ model: missing }));
    // An engine object whose worker has no model: requests are validated, then refused.
    const bare = new Burrow(new Worker('/web/worker.js', { type: 'module' }), null);
    const badRequest = await outcome(bare.chat.completions.create({ messages: [] }));
    const badTemperature = await outcome(bare.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], temperature: -1 }));
    const notLoaded = await outcome(bare.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }] }));
    const stream = await bare.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], stream: true });
    const chunks = [];
    const streamError = await outcome((async () => {
      for await (const chunk of stream) chunks.push(chunk);
    })());
    await bare.unload();
    return { engineMissing, notFound, badRequest, badTemperature, notLoaded, streamError, chunks, progress: progress.at(-1) };
  }, { good: url('api.gguf'), missing: url('missing.gguf') });
  assert.deepEqual(result.engineMissing, { code: 'engine-missing', message: 'The engine is not built (run make serve).', isError: true });
  assert.equal(result.progress.phase, 'download');
  assert.equal(result.progress.bytes, 3 * MIB);
  assert.equal(result.notFound.code, 'http');
  assert.equal(result.badRequest.code, 'bad-request');
  assert.equal(result.badTemperature.code, 'bad-request');
  assert.equal(result.notLoaded.code, 'not-loaded');
  assert.equal(result.streamError.code, 'not-loaded');
  assert.equal(result.chunks[0].object, 'chat.completion.chunk');
  assert.deepEqual(result.chunks[0].choices[0].delta, { role: 'assistant', content: '' });
});

test('the default model (the real 98 MB SmolLM2 file, when present) downloads and matches its sha256', async (t) => {
  const modelsDir = join(REPO, '.cache', 'models');
  if (!existsSync(join(modelsDir, 'SmolLM2-135M-Instruct.Q4_1.gguf'))) {
    t.skip('no .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf (make model fetches it)');
    return;
  }
  const server = await startServer(t, { modelsDir });
  const { page } = await openApp(t, server);
  const started = Date.now();
  await byTestId(page, 'load').click();
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING, { timeout: 120_000 });
  t.diagnostic(`98 MB stored and verified in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const { models, chunks } = await storeState(page);
  assert.deepEqual(models, [{
    url: `${server.origin}${DEFAULT_PATH}`,
    complete: true,
    chunksDone: 6,
    sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
  }]);
  assert.equal(chunks, 6);
});

test('without WebGPU, loading fails with a clear message before anything is downloaded', async (t) => {
  const dir = await tempDir(t);
  await makeFile(dir, 'gpu.gguf', MIB);
  const server = await startServer(t, { modelsDir: dir });
  const args = CHROMIUM_ARGS.filter((arg) => arg !== '--enable-unsafe-webgpu');
  const { page } = await openApp(t, server, { context: { args } });
  await loadFromUi(page, `${server.origin}/models/gpu.gguf`);
  assert.match(await errorText(page), /WebGPU is not available/);
  assert.equal(server.requests.filter((r) => r.path === '/models/gpu.gguf').length, 0);
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
});

test('a download that fails because the phone went offline resumes by itself when it is back online', async (t) => {
  const size = 36 * MIB + 11;
  const { made, server, context, page, url } = await serveModels(t, [['phone.gguf', size]]);
  server.faults.set('/models/phone.gguf', { stallAfter: APP_CHUNK + 1000, times: 1 });
  await loadFromUi(page, url('phone.gguf'));
  while ((await storeState(page)).models[0]?.chunksDone !== 1) await page.waitForTimeout(50);
  await context.setOffline(true);
  assert.match(await errorText(page), /you are offline/);
  await byTestId(page, 'offline-indicator').waitFor({ state: 'visible' });
  await context.setOffline(false);
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
  const ranges = server.requests.filter((r) => r.path === '/models/phone.gguf').map((r) => r.range);
  assert.deepEqual(ranges, [null, `bytes=${APP_CHUNK}-`]);
  assert.equal((await storeState(page)).models[0].sha256, made['phone.gguf'].sha256);
});

test('the picker offers the Hub catalogue; an entry downloads from its URL', async (t) => {
  const { CATALOGUE } = await import('../../web/catalogue.js');
  const dir = await tempDir(t);
  const server = await startServer(t, { modelsDir: dir });
  const { context, page } = await openApp(t, server);
  // No model hub here: the catalogue's first file is answered by a 404 in the test.
  const asked = [];
  await context.route(CATALOGUE[0].url, (route) => {
    asked.push(route.request().url());
    return route.fulfill({ status: 404, body: 'not here' });
  });
  const labels = await byTestId(page, 'model-picker').locator('option').allTextContents();
  assert.equal(labels.length, CATALOGUE.length + 2, labels.join(' | '));
  for (const entry of CATALOGUE) {
    assert.ok(labels.some((l) => l.includes(entry.name) && l.includes(entry.quant) && l.includes(entry.suits)), `${entry.name} listed`);
  }
  assert.match(labels.at(-1), /Paste a GGUF URL/);
  await byTestId(page, 'model-picker').selectOption({ index: 1 });
  assert.equal(await byTestId(page, 'model-url').isHidden(), true);
  await byTestId(page, 'load').click();
  assert.match(await errorText(page), /404/);
  assert.deepEqual(asked, [CATALOGUE[0].url]);
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
});

test('a model too large for the device is refused before anything is downloaded', async (t) => {
  const { page, server, url } = await serveModels(t, [['huge.gguf', MIB]]);
  const refused = await page.evaluate(async (model) => {
    const { Burrow } = await import('/web/burrow.js');
    // 1 TB: more than any device's memory.
    return Burrow.create({ model, size: 1e12 }).then(() => null, (error) => ({ code: error.code, message: error.message }));
  }, url('huge.gguf'));
  assert.equal(refused?.code, 'too-large');
  assert.match(refused.message, /needs about 1000\.0 GB of memory; this device has \d+(\.\d+)? GB/);
  assert.equal(server.requests.filter((r) => r.path === '/models/huge.gguf').length, 0);
});

test('Delete during a download stops the download first, so nothing is written back later', async (t) => {
  const size = 36 * MIB + 5;
  const { server, page, url } = await serveModels(t, [['del.gguf', size]]);
  // A first attempt cut after one chunk leaves a partial model in the storage panel.
  server.faults.set('/models/del.gguf', { cutAfter: APP_CHUNK + 1000, times: 1, then: { cutAfter: 0 } });
  await loadFromUi(page, url('del.gguf'));
  assert.match(await errorText(page), /interrupted/);
  // Resumed, it stalls after one more chunk: Delete is pressed while it waits.
  server.faults.set('/models/del.gguf', { stallAfter: APP_CHUNK + 10, times: 1 });
  await byTestId(page, 'load').click();
  while ((await storeState(page)).models[0]?.chunksDone !== 2) await page.waitForTimeout(50);
  await openPanel(page, 'Storage');
  await byTestId(page, 'delete-model').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="stored-model"]').length === 0);
  assert.equal(await byTestId(page, 'model-status').textContent(), 'No model loaded.');
  assert.equal(await byTestId(page, 'error').isHidden(), true);
  const asked = server.requests.length;
  // Past the stall timeout (15 s), when a download still running would retry and write again.
  await page.waitForTimeout(STALL_TIMEOUT_MS + 2000);
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
  assert.equal(server.requests.filter((r, i) => i >= asked && r.path === '/models/del.gguf').length, 0);
});

// What Burrow keeps in this origin: records in each store, caches, settings, service workers.

test('Delete all data, once confirmed, leaves no model, conversation, cache, setting or service worker', async (t) => {
  const { page, url } = await serveModels(t, [['all.gguf', 2 * MIB]]);
  await loadFromUi(page, url('all.gguf'));
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
  await page.evaluate(async () => {
    const conversations = await import('/web/conversations.js');
    const conversation = conversations.create();
    conversation.messages.push({ role: 'user', content: 'Keep this?' }, { role: 'assistant', content: 'No.' });
    await conversations.save(conversation);
  });
  await openPanel(page, 'Settings');
  await byTestId(page, 'temperature').fill('0');
  await byTestId(page, 'temperature').dispatchEvent('change');
  await page.evaluate(() => navigator.serviceWorker.ready);
  const before = await storedEverything(page);
  assert.ok(before.models === 1 && before.chunks > 0 && before.conversations === 1 && before.caches.length > 0
    && before.settings.length > 0 && before.serviceWorkers === 1, JSON.stringify(before));

  await openPanel(page, 'Storage');
  page.once('dialog', (dialog) => dialog.dismiss());
  await byTestId(page, 'delete-all-data').click();
  assert.deepEqual(await storedEverything(page), before, 'nothing is deleted without a confirmation');

  page.once('dialog', (dialog) => dialog.accept());
  await byTestId(page, 'delete-all-data').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]').textContent.includes('was deleted'));
  assert.deepEqual(await storedEverything(page), { models: 0, chunks: 0, conversations: 0, caches: [], settings: [], serviceWorkers: 0 });
  assert.equal(await byTestId(page, 'stored-model').count(), 0);
  assert.equal(await byTestId(page, 'user-message').count(), 0);
});
