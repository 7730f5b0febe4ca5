// The real engine (pkg/, built by `make pkg`) in headless Chromium's WebGPU (SwiftShader: no
// shader-f16), with the default SmolLM2 model: the greedy answer equals the native
// `burrow generate --backend wgpu` answer and llama.cpp's exact-math golden; offline, the app and
// the model load from the service worker and IndexedDB and a chat makes no request at all.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { byTestId, openApp, openPanel, REPO, startServer, storedEverything, storeState, tempDir, BUILT, requireBuilt } from './harness.mjs';
import { writeFile } from 'node:fs/promises';

const [MODEL] = BUILT.model;
const [BURROW] = BUILT.burrow;
const GOLDEN = JSON.parse(readFileSync(join(REPO, 'tests', 'golden', 'smollm2', 'greedy_f32model.json'), 'utf8'));
// The golden chat case: llama.cpp's greedy reply and its top-1/top-2 margins per step.
const CASE = GOLDEN.cases.find((c) => c.parse_special);
const QUESTION = GOLDEN.chat_messages[0].content;
// Greedy paths are compared up to the first step whose reference margin is below this (as the
// native golden tests do).
const GREEDY_MARGIN = 0.05;
const LOAD_TIMEOUT = 600_000;
// How long the browser may take to check its service worker after a reload.
const SW_CHECK_WAIT_MS = 30_000;

// The native engine's greedy answer on wgpu (lavapipe here), as the reference for the browser.
function nativeAnswer(maxTokens, prompt = QUESTION) {
  const out = execFileSync(BURROW, ['generate', '--model', MODEL, '--backend', 'wgpu', '--chat', '--prompt', prompt,
    '--temperature', '0', '--max-tokens', String(maxTokens), '--json'], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1));
}

const waitForStatus = (page, text, timeout = LOAD_TIMEOUT) => page.waitForFunction(
  (text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), text, { timeout });

async function ask(page, text) {
  await byTestId(page, 'prompt-input').fill(text);
  await byTestId(page, 'send').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="send"]').disabled === false
    && document.querySelectorAll('[data-testid="assistant-message"]').length > 0, null, { timeout: LOAD_TIMEOUT });
  return (await byTestId(page, 'assistant-message').last().textContent()).trim();
}

test('the default model in the browser: download, greedy answer equal to native wgpu and the golden, offline, no requests', async (t) => {
  requireBuilt(BUILT.model, BUILT.pkg, BUILT.burrow);
  const native = nativeAnswer(CASE.gen_ids.length);
  const server = await startServer(t, { modelsDir: join(REPO, '.cache', 'models'), engine: 'real' });
  const { context, page } = await openApp(t, server);
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));

  // 1. Download with visible progress, load, greedy answer.
  const progress = [];
  await page.exposeFunction('__progress', (v) => progress.push(v));
  await page.evaluate(() => new MutationObserver(() => window.__progress(Number(document.querySelector('[data-testid="download-progress"]').value)))
    .observe(document.querySelector('[data-testid="download-progress"]'), { attributes: true }));
  await byTestId(page, 'load').click();
  await waitForStatus(page, 'ready');
  assert.ok(progress.some((v) => v > 0 && v < 1), `progress seen: ${progress.slice(0, 10)}`);
  await openPanel(page, 'Settings');
  await byTestId(page, 'temperature').fill('0');
  await byTestId(page, 'temperature').dispatchEvent('change');
  const answer = await ask(page, QUESTION);
  assert.equal(answer, native.text.trim(), 'the UI shows the native answer');

  // Token ids (the reply's data-token-ids hook), against native and the golden.
  const ids = (await byTestId(page, 'assistant-message').last().getAttribute('data-token-ids')).split(',').map(Number);
  assert.deepEqual(ids, native.ids, 'browser ids equal native wgpu ids');
  // The embedding API on the real engine (one token is enough), and the wasm heap's high-water
  // mark: the model streams through it into the GPU, so it stays well below the model's size
  // (29 MB for this 98 MB file; the largest tensor alone is 30 MB).
  const api = await page.evaluate(async (question) => {
    const { Burrow } = await import('/web/burrow.js');
    const engine = await Burrow.create({ model: new URL('/models/SmolLM2-135M-Instruct.Q4_1.gguf', location.href).href });
    const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: question }], temperature: 0, max_tokens: 1 });
    const model = engine.model;
    engine.unload();
    return { ...reply, model };
  }, QUESTION);
  assert.deepEqual(api.token_ids, native.ids.slice(0, 1));
  assert.ok(api.model.wasm_memory_bytes > 0 && api.model.wasm_memory_bytes < api.model.size / 2,
    `wasm memory ${api.model.wasm_memory_bytes} for a ${api.model.size}-byte model`);
  const cut = CASE.top1_minus_top2_logit_margin.findIndex((m) => m < GREEDY_MARGIN);
  const compared = cut < 0 ? CASE.gen_ids.length : cut;
  const golden = CASE.gen_ids.slice(0, Math.min(compared, CASE.first_eog_index + 1));
  assert.deepEqual(ids.slice(0, golden.length), golden, 'browser ids equal the exact-math golden');
  const speed = await byTestId(page, 'tokens-per-second').textContent();
  t.diagnostic(`answer "${answer}", ${ids.length} tokens, ${speed} decode, `
    + `wasm memory ${(api.model.wasm_memory_bytes / 1e6).toFixed(1)} MB for a ${(api.model.size / 1e6).toFixed(1)} MB model`);

  // 3 + 4. Offline: reload from the service worker, the model from IndexedDB, and a chat with no request.
  await context.setOffline(true);
  const reloadedAt = server.requests.length;
  await page.reload();
  await waitForStatus(page, 'ready');
  // A navigation makes the browser check its service worker (web/sw.js, then the engine's build
  // id it imports) from outside the page, which offline emulation does not cover, at a moment of
  // its choosing: wait for that check, so what follows counts only what the chat asks for.
  const checked = () => server.requests.slice(reloadedAt).some((r) => r.path === '/pkg/build.js');
  for (const deadline = Date.now() + SW_CHECK_WAIT_MS; !checked() && Date.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const before = server.requests.length;
  const browserRequests = [];
  context.on('request', (r) => browserRequests.push(r.url()));
  await byTestId(page, 'new-chat').click();
  const offlineAnswer = await ask(page, QUESTION);
  assert.equal(offlineAnswer, answer, 'the same answer offline');
  assert.deepEqual(server.requests.slice(before).map((r) => r.path), [], 'the server saw nothing while chatting');
  assert.deepEqual(browserRequests, [], 'no request at all while chatting');

  // 7. A screenshot of the finished chat for review.
  mkdirSync(join(REPO, 'target', 'web'), { recursive: true });
  await page.screenshot({ path: join(REPO, 'target', 'web', 'chat-375x812.png') });
  assert.deepEqual(consoleErrors, []);
});

test('a truncated GGUF is refused by its header before it is downloaded, with a clear message', async (t) => {
  requireBuilt(BUILT.model, BUILT.pkg, BUILT.burrow);
  const dir = await tempDir(t);
  // The header and the first tensors of the real model: the header names tensors past the end.
  await writeFile(join(dir, 'cut.gguf'), readFileSync(MODEL).subarray(0, 20 * 1024 * 1024 + 7));
  const server = await startServer(t, { modelsDir: dir, engine: 'real' });
  const { page } = await openApp(t, server);
  await byTestId(page, 'model-picker').selectOption('custom');
  await byTestId(page, 'model-url').fill(`${server.origin}/models/cut.gguf`);
  await byTestId(page, 'load').click();
  await byTestId(page, 'error').waitFor({ state: 'visible', timeout: LOAD_TIMEOUT });
  const message = await byTestId(page, 'error').textContent();
  assert.match(message, /^This model cannot run here: the file is not a usable model: /);
  assert.match(message, /past the end/);
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
  // Only the start of the file was read (1 MiB, then more while the header went on).
  const asked = server.requests.filter((r) => r.path === '/models/cut.gguf');
  assert.ok(asked.length > 0 && asked.every((r) => /^bytes=0-\d+$/.test(r.range)), JSON.stringify(asked));
});

// The engine's raw-id API on the real GPU path, driven directly in a page (not through the worker).
async function completeInPage(page, url, tokens, maxTokens) {
  return page.evaluate(async ({ url, tokens, maxTokens }) => {
    const { default: init, Engine } = await import('/pkg/burrow_web.js');
    await init();
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    const engine = await Engine.create(bytes.length);
    // Small chunks, so tensors span chunk boundaries as they do from the store.
    for (let at = 0; at < bytes.length; at += 300_000) engine.push_chunk(bytes.subarray(at, at + 300_000));
    engine.finish();
    const out = JSON.parse(await engine.complete(JSON.stringify(tokens),
      JSON.stringify({ max_tokens: maxTokens, temperature: 0, ignore_eos: true })));
    engine.free();
    return out;
  }, { url, tokens, maxTokens });
}

test('a mixture-of-experts model runs in the browser and continues like llama.cpp', async (t) => {
  requireBuilt(BUILT.model, BUILT.pkg, BUILT.burrow);
  const dir = join(REPO, '.cache', 'fixtures');
  const fixture = JSON.parse(readFileSync(join(dir, 'mixtral-q4_0.json'), 'utf8'));
  const server = await startServer(t, { modelsDir: dir, engine: 'real' });
  const { page } = await openApp(t, server);
  const out = await completeInPage(page, `${server.origin}/models/mixtral-q4_0.gguf`, fixture.tokens, fixture.greedy.tokens.length);
  // The fixture's greedy margins are all above 0.5, far beyond the GPU's rounding.
  assert.deepEqual(out.ids, fixture.greedy.tokens);
  assert.equal(out.finish_reason, 'length');
});

// Prompts whose greedy replies are short: a Markdown list, and a plain sentence.
const LIST_PROMPT = 'Name three colors as a bulleted list.';
const SUM_PROMPT = 'What is 2+2?';
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

const replyEnded = (page) => page.waitForFunction(() => !document.querySelector('.message.pending')
  && document.querySelector('[data-testid="send"]').hidden === false, null, { timeout: LOAD_TIMEOUT });
const lastIds = async (page) => (await byTestId(page, 'assistant-message').last().getAttribute('data-token-ids')).split(',').map(Number);
const shownMessages = async (page) => ({
  user: await byTestId(page, 'user-message').allTextContents(),
  assistant: (await byTestId(page, 'assistant-message').allTextContents()).length,
});

async function sendAndWait(page, text) {
  await byTestId(page, 'prompt-input').fill(text);
  await byTestId(page, 'send').click();
  await replyEnded(page);
  return lastIds(page);
}

test('daily use with the real engine at 390 × 844: a Markdown list as it streams, Regenerate, Edit, switching after a reload, Delete all data', async (t) => {
  requireBuilt(BUILT.model, BUILT.pkg, BUILT.burrow);
  const list = nativeAnswer(64, LIST_PROMPT);
  const sum = nativeAnswer(64, SUM_PROMPT);
  const question = nativeAnswer(CASE.gen_ids.length);
  // The list items the reply's Markdown holds ("1. Blue" lines), from the native text.
  const items = [...list.text.matchAll(/^\s*(?:\d+\.|[-*])\s+(.+)$/gm)].map((m) => m[1].trim());
  assert.ok(items.length >= 2, `the native reply is a list: ${JSON.stringify(list.text)}`);
  const server = await startServer(t, { modelsDir: join(REPO, '.cache', 'models'), engine: 'real' });
  const { page } = await openApp(t, server, { context: PHONE });
  await byTestId(page, 'load').click();
  await waitForStatus(page, 'ready');
  await openPanel(page, 'Settings');
  await byTestId(page, 'temperature').fill('0');
  await byTestId(page, 'temperature').dispatchEvent('change');
  await byTestId(page, 'switch-model').click();

  // A list rendered while the reply is still streaming, and the greedy ids of native wgpu.
  await page.evaluate(() => {
    window.listWhileStreaming = false;
    new MutationObserver(() => {
      if (document.querySelector('.message.pending [data-testid="assistant-message"] li')) window.listWhileStreaming = true;
    }).observe(document.querySelector('[data-testid="messages"]'), { subtree: true, childList: true });
  });
  assert.deepEqual(await sendAndWait(page, LIST_PROMPT), list.ids);
  assert.equal(await page.evaluate(() => window.listWhileStreaming), true, 'the list appeared before the reply ended');
  assert.deepEqual((await byTestId(page, 'assistant-message').locator(':is(ol, ul) > li').allTextContents()).map((s) => s.trim()), items);

  // Regenerate: the same greedy reply, so the context held the question only, not the old reply.
  await byTestId(page, 'regenerate').last().click();
  await replyEnded(page);
  assert.deepEqual(await lastIds(page), list.ids);
  assert.deepEqual(await shownMessages(page), { user: [LIST_PROMPT], assistant: 1 });

  // Edit and resend: the turn replaced, the reply that of the new question alone.
  await byTestId(page, 'edit-prompt').last().click();
  assert.deepEqual(await sendAndWait(page, SUM_PROMPT), sum.ids);
  assert.deepEqual(await shownMessages(page), { user: [SUM_PROMPT], assistant: 1 });

  // A second conversation; after a reload, switch back to the first and regenerate there.
  await byTestId(page, 'new-chat').click();
  assert.deepEqual(await sendAndWait(page, QUESTION), question.ids);
  await page.reload();
  await waitForStatus(page, 'ready');
  await byTestId(page, 'open-conversations').click();
  await byTestId(page, 'conversation-list').waitFor();
  assert.deepEqual(await byTestId(page, 'conversation-item').locator('.title').allTextContents(), [QUESTION, SUM_PROMPT]);
  await byTestId(page, 'conversation-item').filter({ hasText: SUM_PROMPT }).locator('[data-testid="open-conversation"]').click();
  await page.waitForFunction((text) => document.querySelector('[data-testid="user-message"]')?.textContent === text, SUM_PROMPT);
  assert.deepEqual(await shownMessages(page), { user: [SUM_PROMPT], assistant: 1 });
  await byTestId(page, 'regenerate').last().click();
  await replyEnded(page);
  assert.deepEqual(await lastIds(page), sum.ids);

  // The chat at a phone's size in both themes, for review.
  await byTestId(page, 'new-chat').click();
  await byTestId(page, 'open-conversations').click();
  await byTestId(page, 'conversation-item').filter({ hasText: SUM_PROMPT }).locator('[data-testid="open-conversation"]').click();
  await page.waitForFunction((text) => document.querySelector('[data-testid="user-message"]')?.textContent === text, SUM_PROMPT);
  mkdirSync(join(REPO, 'target', 'web'), { recursive: true });
  const backgrounds = [];
  for (const colorScheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme });
    backgrounds.push(await page.evaluate(() => getComputedStyle(document.body).backgroundColor));
    await page.screenshot({ path: join(REPO, 'target', 'web', `chat-390x844-${colorScheme}.png`) });
  }
  assert.notEqual(backgrounds[0], backgrounds[1], 'the dark theme applies');

  // Delete all data: nothing of Burrow's is left on the device.
  await openPanel(page, 'Storage');
  page.once('dialog', (dialog) => dialog.accept());
  await byTestId(page, 'delete-all-data').click();
  await waitForStatus(page, 'was deleted');
  assert.deepEqual(await storedEverything(page), { models: 0, chunks: 0, conversations: 0, caches: [], settings: [], serviceWorkers: 0 });
});
