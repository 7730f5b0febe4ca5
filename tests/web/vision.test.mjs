// Vision with the real engine (pkg/, built by `make pkg`) in headless Chromium's WebGPU
// (SwiftShader), on the tiny SmolVLM pair of tests/vision-fixtures (llama.cpp's references; its
// language model given SmolVLM's own chat template here, which reads typed content parts): the
// catalogue's SmolVLM entry answered by those two files, a photo attached in the app and asked
// about, and the greedy answer equal to the native `burrow generate --backend wgpu --chat
// --mmproj --image` answer for the same files, photo and question. A reload offline keeps the
// conversation with its photo and answers a follow-up without a request; a 12,000 × 12,000
// photo gets the engine's clear message with nothing lost. Qwen2.5-VL's tiny pair, through the
// API, gives llama.cpp's greedy tokens for its chat prompt with a photo.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CATALOGUE } from '../../web/catalogue.js';
import { withStrings } from './gguf_edit.mjs';
import { byTestId, firstPage, launch, openPanel, png, REPO, serveHub, showSetup, startServer, tempDir, BUILT, requireBuilt } from './harness.mjs';

const FIXTURES = join(REPO, 'tests', 'vision-fixtures');
const [BURROW] = BUILT.burrow;
const PHOTO_PATH = join(FIXTURES, 'images', 'large_160x160.png');
const QUESTION = 'Can you describe this image?';
const MAX_TOKENS = 8;
const LOAD_TIMEOUT = 600_000;
// SmolVLM's chat template (HuggingFaceTB/SmolVLM-256M-Instruct), as its GGUF carries it.
const SMOLVLM_TEMPLATE = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
const VLM = CATALOGUE.find((entry) => entry.vision && entry.name.startsWith('SmolVLM 256M'));
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

// The fixture pair, the language model with SmolVLM's template, written to `dir`.
async function fixturePair(dir) {
  const manifest = JSON.parse(readFileSync(join(FIXTURES, 'vision.json'), 'utf8'));
  const lm = withStrings(readFileSync(join(FIXTURES, manifest.lm.file)), { 'tokenizer.chat_template': SMOLVLM_TEMPLATE });
  const mmproj = readFileSync(join(FIXTURES, manifest.mmproj.file));
  const paths = { lm: join(dir, 'smolvlm-lm.gguf'), mmproj: join(dir, 'smolvlm-mmproj.gguf') };
  await writeFile(paths.lm, lm);
  await writeFile(paths.mmproj, mmproj);
  return { lm, mmproj, paths };
}

// The native engine's greedy answer on wgpu (lavapipe here), the reference for the browser.
function nativeAnswer(paths, image, prompt) {
  const out = execFileSync(BURROW, ['generate', '--model', paths.lm, '--mmproj', paths.mmproj, '--image', image, '--chat',
    '--prompt', prompt, '--backend', 'wgpu', '--temperature', '0', '--max-tokens', String(MAX_TOKENS), '--json'], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1));
}

const waitForStatus = (page, text) => page.waitForFunction(
  (text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), text, { timeout: LOAD_TIMEOUT });

const replyEnded = (page) => page.waitForFunction(() => !document.querySelector('.message.pending')
  && document.querySelector('[data-testid="send"]').hidden === false, null, { timeout: LOAD_TIMEOUT });

async function askWithPhoto(page, files, text) {
  if (files) await byTestId(page, 'image-input').setInputFiles(files);
  await byTestId(page, 'prompt-input').fill(text);
  await byTestId(page, 'send').click();
  await replyEnded(page);
  const reply = byTestId(page, 'assistant-message').last();
  return { text: (await reply.textContent()).trim(), ids: (await reply.getAttribute('data-token-ids')).split(',').map(Number) };
}

test('a photo in the app with the real engine: the answer equals native wgpu; offline the conversation keeps its photo', async (t) => {
  requireBuilt(BUILT.pkg, BUILT.burrow);
  const dir = await tempDir(t);
  const pair = await fixturePair(dir);
  const native = nativeAnswer(pair.paths, PHOTO_PATH, QUESTION);
  const photo = readFileSync(PHOTO_PATH);

  const server = await startServer(t, { engine: 'real' });
  const context = await launch(t, PHONE);
  const hubLog = await serveHub(context, { [VLM.url]: pair.lm, [VLM.mmproj.url]: pair.mmproj });
  const page = await firstPage(context);
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  await page.goto(`${server.origin}/`);

  await showSetup(page);
  await byTestId(page, 'model-picker').selectOption(`catalogue-${CATALOGUE.indexOf(VLM)}`);
  await byTestId(page, 'load').click();
  await waitForStatus(page, 'ready');
  assert.equal(await byTestId(page, 'attach-image').isVisible(), true, 'the model reads photos');
  await openPanel(page, 'Settings');
  await byTestId(page, 'temperature').fill('0');
  await byTestId(page, 'temperature').dispatchEvent('change');

  // The app's replies are longer than the native reference (the tiny model never ends one): the
  // greedy ids must start with the native ones.
  const first = await askWithPhoto(page, { name: 'pattern.png', mimeType: 'image/png', buffer: photo }, QUESTION);
  assert.deepEqual(first.ids.slice(0, native.ids.length), native.ids, `browser ids ${first.ids.slice(0, 12)} start with native wgpu ids`);
  assert.equal(await byTestId(page, 'message-image').count(), 1);

  // The same through the API, with the photo as an OpenAI image_url part.
  const api = await page.evaluate(async ({ url, bytes, question, maxTokens }) => {
    const { Burrow } = await import('/web/burrow.js');
    const engine = await Burrow.create({ model: url.model, mmproj: url.mmproj });
    const dataUrl = `data:image/png;base64,${bytes}`;
    const ask = (image) => engine.chat.completions.create({
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: image } }, { type: 'text', text: question }] }],
      temperature: 0, max_tokens: maxTokens,
    }).then((reply) => reply.token_ids, (error) => `${error.code}: ${error.message}`);
    const ids = await ask(dataUrl);
    const huge = await ask(`data:image/png;base64,${url.huge}`);
    const after = await ask(dataUrl);
    engine.unload();
    return { ids, huge, after, vision: engine.model.vision };
  }, { url: { model: VLM.url, mmproj: VLM.mmproj.url, huge: png(12_000, 12_000).toString('base64') }, bytes: photo.toString('base64'), question: QUESTION, maxTokens: MAX_TOKENS });
  assert.equal(api.vision, true);
  assert.deepEqual(api.ids, native.ids, 'API ids equal native wgpu ids');
  assert.match(api.huge, /^bad-image: .*12000 × 12000 pixels; Burrow takes images of up to 50 megapixels/);
  assert.deepEqual(api.after, native.ids, 'the engine goes on after the refused photo');

  // Offline: the app and both files from storage, the conversation with its photo, and a
  // follow-up answered without any request.
  await context.setOffline(true);
  await page.reload();
  await waitForStatus(page, 'ready');
  await page.waitForFunction(() => {
    const images = [...document.querySelectorAll('[data-testid="message-image"]')];
    return images.length === 1 && images[0].complete && images[0].naturalWidth > 0;
  });
  assert.equal((await byTestId(page, 'assistant-message').last().textContent()).trim(), first.text);
  const hubRequests = hubLog.length;
  const requests = [];
  context.on('request', (r) => requests.push(r.url()));
  const followUp = await askWithPhoto(page, null, 'And the colours?');
  assert.ok(followUp.ids.length > 0);
  assert.deepEqual(requests, [], 'no request while chatting offline');
  assert.equal(hubLog.length, hubRequests);
  assert.deepEqual(consoleErrors.filter((m) => !m.includes('Failed to load resource')), []);
  t.diagnostic(`answer ${JSON.stringify(first.text.slice(0, 40))}… (${first.ids.length} tokens); follow-up ${followUp.ids.length} tokens`);
});

// ChatML, as Qwen2.5-VL's template renders a system and a user message with string contents.
const CHATML_TEMPLATE = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

test('Qwen2.5-VL through the API with the real engine: the greedy tokens of a photo question are llama.cpp\'s', async (t) => {
  requireBuilt(BUILT.pkg, BUILT.burrow);
  const qwen = join(FIXTURES, 'qwen2vl');
  const manifest = JSON.parse(readFileSync(join(qwen, 'qwen2vl.json'), 'utf8'));
  const dir = await tempDir(t);
  await writeFile(join(dir, 'qwen-lm.gguf'), withStrings(readFileSync(join(qwen, manifest.lm.file)), { 'tokenizer.chat_template': CHATML_TEMPLATE }));
  await writeFile(join(dir, 'qwen-mmproj.gguf'), readFileSync(join(qwen, manifest.mmproj.file)));
  // The fixture's chat prompt is this conversation, rendered with ChatML.
  const [system, question] = manifest.chat.prompt.match(/^<\|im_start\|>system\n(.*)<\|im_end\|>\n<\|im_start\|>user\n<__media__>(.*)<\|im_end\|>\n<\|im_start\|>assistant\n$/s).slice(1);
  const expected = manifest.chat.greedy.tokens;
  const server = await startServer(t, { modelsDir: dir, engine: 'real' });
  const context = await launch(t);
  const page = await firstPage(context);
  await page.goto(`${server.origin}/`);
  // llama.cpp made the references with a budget of 32 tokens an image (so the photo is resized).
  const imageMaxTokens = manifest.reference.mtmd_context_params.image_max_tokens;
  const ids = await page.evaluate(async ({ system, question, bytes, maxTokens, imageMaxTokens }) => {
    const { Burrow } = await import('/web/burrow.js');
    const engine = await Burrow.create({ model: '/models/qwen-lm.gguf', mmproj: '/models/qwen-mmproj.gguf' });
    const reply = await engine.chat.completions.create({
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${bytes}` } }, { type: 'text', text: question }] },
      ],
      temperature: 0, max_tokens: maxTokens, image_max_tokens: imageMaxTokens,
    });
    engine.unload();
    return reply.token_ids;
  }, { system, question, bytes: readFileSync(join(qwen, manifest.chat.image)).toString('base64'), maxTokens: expected.length, imageMaxTokens });
  assert.deepEqual(ids, expected, 'browser greedy tokens equal llama.cpp\'s (every reference margin is at least 1.0)');
});
