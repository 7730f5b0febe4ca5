// Vision in the browser (issue 16) through the real worker, Burrow API and UI, with
// tests/web/stub_engine standing in for the wasm engine: a catalogue model with its vision
// projector (mmproj) downloaded, stored and listed as one model; a photo attached on a phone-sized
// page, previewed, sent as the file's exact bytes (the stub's reply names each image it got, with
// its size and sha256), kept with the conversation through a reload and offline, and sent again
// with the history; photos the engine cannot use, a model without vision, and projectors that are
// broken or do not pair with the model, each with a clear message and nothing lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { CATALOGUE } from '../../web/catalogue.js';
import { byTestId, launch, firstPage, loadFromUi, makeFile, MIB, openPanel, png, REPO, serveHub, showSetup, startServer, storeState, tempDir } from './harness.mjs';

const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const VLM = CATALOGUE.find((entry) => entry.vision && entry.name.startsWith('SmolVLM 256M'));
const VLM_OPTION = `catalogue-${CATALOGUE.indexOf(VLM)}`;
const VLM_NAME = `${VLM.name} ${VLM.quant}`;
const MMPROJ_NAME = decodeURIComponent(VLM.mmproj.url.slice(VLM.mmproj.url.lastIndexOf('/') + 1));
const MODEL_NAME = decodeURIComponent(VLM.url.slice(VLM.url.lastIndexOf('/') + 1));
const MODEL_BYTES = 3 * MIB + 1;
const MMPROJ_BYTES = 2 * MIB + 5;
// The stub reads a projector by this text after the GGUF magic (tests/web/stub_engine).
const PROJECTOR_MAGIC = 'GGUFmmproj';
// What the engine reads at most (crates/vision): the megapixel message's figure.
const MAX_MEGAPIXELS = 50;
const SHA_HEX_SHOWN = 16;
const SCREENSHOT_DIR = join(REPO, 'target', 'web');

// --- images made here ----------------------------------------------------------------------

const PHOTO = png(64, 48, { pixel: (x, y) => [x * 4, y * 5, 128] });
const OTHER_PHOTO = png(20, 30, { pixel: (x, y) => [255 - x, y, x * y] });
// A PNG header, then bytes that are not compressed pixels.
const BROKEN_PHOTO = png(64, 48, { idat: randomBytes(300) });
const HUGE_PHOTO = png(12_000, 12_000);

const sha16 = (bytes) => createHash('sha256').update(bytes).digest('hex').slice(0, SHA_HEX_SHOWN);
// How the stub describes an image it was given.
const seen = (bytes, width, height, type = 'png') => `${type} ${width}x${height} ${bytes.length} bytes sha256 ${sha16(bytes)}`;
// The stub's reply, at the app's default temperature.
const echo = (prompt, messages, images = []) => `echo: ${prompt}${images.length ? ` [${images.length} images: ${images.join('; ')}]` : ''} (temperature 0.7, ${messages} messages)`;
const file = (name, buffer, mimeType = 'image/png') => ({ name, mimeType, buffer });

// --- the Hub, served here (serveHub in harness.mjs) ----------------------------------------

async function hubFiles(dir, { mmprojMagic = PROJECTOR_MAGIC } = {}) {
  const model = await makeFile(dir, 'vlm.gguf', MODEL_BYTES);
  const mmproj = await makeFile(dir, 'mmproj.gguf', MMPROJ_BYTES, mmprojMagic);
  return { model, mmproj, files: { [VLM.url]: model.data, [VLM.mmproj.url]: mmproj.data } };
}

// Keeps every text the download line shows.
function recordProgress() {
  window.progressLog = [];
  document.addEventListener('DOMContentLoaded', () => {
    const text = document.querySelector('[data-testid="download-text"]');
    new MutationObserver(() => window.progressLog.push(text.textContent)).observe(text, { childList: true, characterData: true, subtree: true });
  });
}

// The app on a phone-sized page with the stub engine, the Hub answered from `hub` and a plain
// (text-only) model on the test server at `textUrl`.
async function openVisionApp(t, options = {}) {
  const dir = await tempDir(t);
  const hub = await hubFiles(dir, options);
  await makeFile(dir, 'text.gguf', 2 * MIB + 3);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const context = await launch(t, { ...PHONE, ...options.context });
  await context.addInitScript(recordProgress);
  await context.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (event) => window.cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`));
  });
  const hubLog = await serveHub(context, hub.files);
  const page = await firstPage(context);
  await page.goto(`${server.origin}/`);
  return { dir, hub, hubLog, server, context, page, textUrl: `${server.origin}/models/text.gguf` };
}

const waitForStatus = (page, text) => page.waitForFunction(
  (text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), text);

async function loadVision(page) {
  await showSetup(page);
  await byTestId(page, 'model-picker').selectOption(VLM_OPTION);
  await byTestId(page, 'load').click();
  await waitForStatus(page, 'ready');
}

const replyEnded = (page) => page.waitForFunction(() => !document.querySelector('.message.pending')
  && document.querySelector('[data-testid="send"]').hidden === false);

async function attach(page, ...files) {
  await byTestId(page, 'image-input').setInputFiles(files);
}

async function send(page, text) {
  await byTestId(page, 'prompt-input').fill(text);
  await byTestId(page, 'send').click();
  await replyEnded(page);
}

const lastReply = (page) => byTestId(page, 'assistant-message').last().textContent();

async function errorText(page) {
  await byTestId(page, 'error').waitFor({ state: 'visible' });
  return byTestId(page, 'error').textContent();
}

// Waits until the error line says `expected` (a string, or a RegExp it matches), then checks it.
async function expectError(page, expected) {
  const source = expected instanceof RegExp ? { regex: expected.source } : { text: expected };
  await page.waitForFunction(({ regex, text }) => {
    const shown = document.querySelector('[data-testid="error"]');
    return !shown.hidden && (regex ? new RegExp(regex).test(shown.textContent) : shown.textContent === text);
  }, source).catch(() => null);
  const shown = await errorText(page);
  if (expected instanceof RegExp) assert.match(shown, expected);
  else assert.equal(shown, expected);
}

// Every thumbnail in the conversation decoded (its object URL allowed and the bytes an image).
const thumbnailsShown = (page) => page.waitForFunction(() => {
  const images = [...document.querySelectorAll('[data-testid="message-image"]')];
  return images.length > 0 && images.every((img) => img.complete && img.naturalWidth > 0);
});

// The saved conversation (the latest): each message's role, text and photos (name, type, bytes'
// sha256 prefix).
const savedWithImages = (page) => page.evaluate(async (shown) => {
  const conversations = await import('/web/conversations.js');
  const hex = async (blob) => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer())),
    (b) => b.toString(16).padStart(2, '0')).join('').slice(0, shown);
  const latest = await conversations.latest();
  return Promise.all((latest?.messages ?? []).map(async ({ role, content, images }) => ({
    role,
    content,
    images: await Promise.all((images ?? []).map(async (image) => `${image.name} ${image.type} ${await hex(image.blob)}`)),
  })));
}, SHA_HEX_SHOWN);

// The photo records in IndexedDB (web/conversations.js keeps each once, apart from its message).
const storedPhotos = (page) => page.evaluate(async () => {
  const store = await import('/web/store.js');
  const db = await store.openDatabase();
  return (await store.requestResult(db.transaction('images').objectStore('images').getAll())).map((photo) => photo.blob.size).sort((a, b) => a - b);
});

// --- tests ---------------------------------------------------------------------------------

test('a vision model from the catalogue: both files checked, downloaded and stored, listed as one model; reload starts it offline-ready', async (t) => {
  const { hub, hubLog, page } = await openVisionApp(t);
  const labels = await byTestId(page, 'model-picker').locator('option').allTextContents();
  for (const entry of CATALOGUE.filter((e) => e.vision)) {
    assert.ok(labels.some((label) => label.startsWith(`${entry.name} ${entry.quant} (`) && label.endsWith(', reads images)')), labels.join(' | '));
  }
  assert.ok(labels.filter((label) => label.includes('reads images')).length === CATALOGUE.filter((e) => e.vision).length);
  // The first-visit text counts both files.
  await byTestId(page, 'model-picker').selectOption(VLM_OPTION);
  await page.waitForFunction((name) => document.querySelector('[data-testid="model-cost"]').textContent.startsWith(name), VLM_NAME);
  assert.match(await byTestId(page, 'model-cost').textContent(),
    new RegExp(`^${VLM_NAME} is a ${((VLM.size + VLM.mmproj.size) / 1e6).toFixed(1)} MB download \\(the model and its vision projector, to read photos\\), stored once`));

  await byTestId(page, 'load').click();
  await waitForStatus(page, 'ready');
  assert.equal(await byTestId(page, 'model-status').textContent(), `${VLM_NAME} is ready; it reads photos.`);
  // The projector's header was checked (a Range request) before either file was downloaded.
  assert.deepEqual(hubLog, [
    { name: MMPROJ_NAME, range: 'bytes=0-1048575' },
    { name: MODEL_NAME, range: null },
    { name: MMPROJ_NAME, range: null },
  ]);
  const progress = await page.evaluate(() => window.progressLog);
  assert.ok(progress.some((text) => /^Model: [\d.]+ MB of 3\.1 MB/.test(text)), progress.join(' | '));
  assert.ok(progress.some((text) => /^Vision projector: [\d.]+ MB of 2\.1 MB/.test(text)), progress.join(' | '));
  assert.ok(progress.some((text) => /^Starting the engine: vision projector, [\d.]+ MB of 2\.1 MB/.test(text)), progress.join(' | '));

  const state = await storeState(page);
  assert.deepEqual(state.models.map(({ url, complete, sha256 }) => ({ url, complete, sha256 })).sort((a, b) => a.url.localeCompare(b.url)), [
    { url: VLM.url, complete: true, sha256: hub.model.sha256 },
    { url: VLM.mmproj.url, complete: true, sha256: hub.mmproj.sha256 },
  ].sort((a, b) => a.url.localeCompare(b.url)));
  const model = await page.evaluate(async () => (await import('/web/store.js')).list());
  assert.equal(model.find((meta) => meta.url === VLM.mmproj.url).projectorFor, VLM.url);

  // The storage panel: one model, its projector under it.
  await openPanel(page, 'Storage');
  assert.equal(await byTestId(page, 'stored-model').count(), 1);
  assert.equal(await byTestId(page, 'stored-model').locator(':scope > span').textContent(), `${VLM_NAME} (3.1 MB)`);
  assert.equal(await byTestId(page, 'stored-projector').textContent(), `Vision projector ${MMPROJ_NAME} (2.1 MB)Delete`);
  assert.equal(await byTestId(page, 'delete-model').getAttribute('aria-label'), `Delete ${VLM_NAME} and its vision projector`);

  // A reload starts it from storage, asking the Hub for nothing.
  hubLog.length = 0;
  await page.reload();
  await waitForStatus(page, 'ready');
  assert.equal(await byTestId(page, 'attach-image').isVisible(), true);
  assert.deepEqual(hubLog, []);

  // The projector deleted on its own: the model stays, unloaded; Load fetches only the projector.
  await openPanel(page, 'Storage');
  await byTestId(page, 'delete-projector').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="stored-projector"]').length === 0);
  assert.equal(await byTestId(page, 'stored-model').count(), 1);
  assert.equal(await byTestId(page, 'model-status').textContent(), 'No model loaded.');
  await page.reload();
  await waitForStatus(page, 'is stored, but not its vision projector. Press Load to download it.');
  await byTestId(page, 'load').click();
  await waitForStatus(page, 'ready');
  assert.deepEqual(hubLog.map(({ name }) => name), [MMPROJ_NAME, MMPROJ_NAME]);

  // Delete on the model deletes both files.
  await openPanel(page, 'Storage');
  await byTestId(page, 'delete-model').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="stored-model"]').length === 0);
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
});

test('attach a photo, preview, send: the engine gets the exact bytes; a reload and offline keep it; follow-ups, Regenerate and Edit send it again', async (t) => {
  const { context, server, page } = await openVisionApp(t);
  await loadVision(page);
  const attachButton = page.getByRole('button', { name: 'Attach a photo' });
  assert.equal(await attachButton.isVisible(), true);
  assert.equal(await byTestId(page, 'image-input').getAttribute('accept'), 'image/*');
  // The button opens the file chooser (the camera, on a phone).
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), attachButton.click()]);
  assert.equal(chooser.isMultiple(), false);
  await chooser.setFiles(file('cat.png', PHOTO));
  await byTestId(page, 'pending-image').waitFor();
  const preview = byTestId(page, 'pending-preview');
  assert.equal(await preview.getAttribute('alt'), 'Photo: cat.png');
  await page.waitForFunction(() => document.querySelector('[data-testid="pending-preview"]').naturalWidth === 64);
  assert.equal(await byTestId(page, 'remove-image').getAttribute('aria-label'), 'Remove cat.png');
  // On the phone: nothing overflows, the button is a touch target, the composer on screen.
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.equal(await overflow(), 0);
  assert.ok((await attachButton.boundingBox()).height >= 44);
  const composer = await page.locator('.composer').boundingBox();
  assert.ok(composer.y >= 0 && composer.y + composer.height <= PHONE.viewport.height, JSON.stringify(composer));
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'vision-390-preview.png') });
  // Every control named, the previews' Remove buttons included.
  const { nodes } = await (await context.newCDPSession(page)).send('Accessibility.getFullAXTree');
  const unnamed = nodes.filter((n) => !n.ignored && ['button', 'textbox', 'img'].includes(n.role?.value) && !n.name?.value?.trim());
  assert.deepEqual(unnamed.map((n) => `${n.role.value} ${n.backendDOMNodeId}`), []);
  // From the keyboard: Photo follows New chat, and Enter opens the file input (the chooser
  // itself opened from a click above: whether Chromium shows a second one for a key press
  // depends on its user-activation timing, which a loaded machine stretches).
  await byTestId(page, 'new-chat').focus();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'attach-image');
  await page.evaluate(() => {
    window.inputClicks = 0;
    document.querySelector('[data-testid="image-input"]').addEventListener('click', () => window.inputClicks++);
  });
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => window.inputClicks === 1);

  await send(page, 'What is this?');
  const photo = seen(PHOTO, 64, 48);
  assert.equal(await lastReply(page), echo('What is this?', 1, [photo]));
  assert.equal(await byTestId(page, 'pending-image').count(), 0, 'the composer is cleared');
  assert.equal(await byTestId(page, 'message-image').count(), 1);
  assert.equal(await byTestId(page, 'message-image').getAttribute('alt'), 'Photo: cat.png');
  await thumbnailsShown(page);
  // The thumbnail sits above the message's text.
  const [thumb, text] = await Promise.all([byTestId(page, 'message-image').boundingBox(), byTestId(page, 'user-message').boundingBox()]);
  assert.ok(thumb.y + thumb.height <= text.y, `${JSON.stringify(thumb)} above ${JSON.stringify(text)}`);
  assert.deepEqual(await savedWithImages(page), [
    { role: 'user', content: 'What is this?', images: [`cat.png image/png ${sha16(PHOTO)}`] },
    { role: 'assistant', content: echo('What is this?', 1, [photo]), images: [] },
  ]);

  // A follow-up sends the history, the photo with it.
  await send(page, 'And the colours?');
  assert.equal(await lastReply(page), echo('And the colours?', 3, [photo]));
  // Regenerate: the same turn again, the photo still in its history.
  await byTestId(page, 'regenerate').last().click();
  await replyEnded(page);
  assert.equal(await lastReply(page), echo('And the colours?', 3, [photo]));

  // A photo without words, then Edit: the photo comes back to the composer; a second one joins it.
  await send(page, 'Next');
  await attach(page, file('other.png', OTHER_PHOTO));
  await byTestId(page, 'send').click();
  await replyEnded(page);
  const other = seen(OTHER_PHOTO, 20, 30);
  assert.equal(await lastReply(page), echo('', 7, [photo, other]));
  await byTestId(page, 'edit-prompt').last().click();
  assert.equal(await byTestId(page, 'pending-image').count(), 1);
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), '');
  await attach(page, file('cat again.png', PHOTO));
  await send(page, 'Both?');
  assert.equal(await lastReply(page), echo('Both?', 7, [photo, other, photo]));
  assert.equal(await byTestId(page, 'message-image').count(), 3);
  const saved = await savedWithImages(page);
  assert.deepEqual(saved.at(-2).images, [`other.png image/png ${sha16(OTHER_PHOTO)}`, `cat again.png image/png ${sha16(PHOTO)}`]);
  assert.deepEqual(await storedPhotos(page), [OTHER_PHOTO.length, PHOTO.length, PHOTO.length].sort((a, b) => a - b));
  assert.equal(await overflow(), 0);
  await thumbnailsShown(page);
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'vision-390-chat.png') });
  // Edited again without a photo: the one no message has any more is deleted.
  await byTestId(page, 'edit-prompt').last().click();
  await byTestId(page, 'remove-image').first().click();
  await send(page, 'Just one?');
  assert.equal(await lastReply(page), echo('Just one?', 7, [photo, photo]));
  assert.deepEqual(await storedPhotos(page), [PHOTO.length, PHOTO.length]);

  // Reload: the conversation with its thumbnails, from IndexedDB.
  await page.reload();
  await waitForStatus(page, 'ready');
  assert.equal(await byTestId(page, 'message-image').count(), 2);
  await thumbnailsShown(page);

  // Offline: the app from the service worker, the photos from IndexedDB, and a follow-up that
  // sends them again without a single request.
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  await context.setOffline(true);
  const response = await page.reload();
  assert.equal(response.fromServiceWorker(), true);
  await waitForStatus(page, 'ready');
  assert.equal(await byTestId(page, 'message-image').count(), 2);
  await thumbnailsShown(page);
  const asked = server.requests.length;
  const requests = [];
  context.on('request', (request) => requests.push(request.url()));
  await send(page, 'Offline?');
  assert.equal(await lastReply(page), echo('Offline?', 9, [photo, photo]));
  assert.deepEqual(server.requests.slice(asked), [], 'the server saw nothing');
  assert.deepEqual(requests.filter((url) => !url.startsWith('blob:')), [], 'no request left the page');
  assert.deepEqual(await page.evaluate(() => window.cspViolations), []);
});

test('photos the engine cannot use: a clear message, the prompt and photo kept in the composer, the conversation intact', async (t) => {
  const { page } = await openVisionApp(t, { context: { colorScheme: 'dark' } });
  await loadVision(page);
  await attach(page, file('cat.png', PHOTO));
  await send(page, 'first');
  const before = await savedWithImages(page);

  // Not a photo at all (whatever its name says): refused when attached, with its name.
  await attach(page, file('notes.txt', Buffer.from('shopping list'), 'text/plain'));
  await expectError(page, 'notes.txt is not a photo Burrow can read (PNG, JPEG or WebP).');
  await attach(page, file('fake.png', Buffer.from('not really a png')));
  await expectError(page, 'fake.png is not a photo Burrow can read (PNG, JPEG or WebP).');
  assert.equal(await byTestId(page, 'pending-image').count(), 0);

  // A broken PNG: the engine's message; the prompt and the photo stay.
  await attach(page, file('broken.png', BROKEN_PHOTO));
  await byTestId(page, 'prompt-input').fill('what is broken?');
  await byTestId(page, 'send').click();
  await expectError(page, /^The photo could not be used: the image could not be decoded \(is the file complete\?\): .*\. Remove it \(✕ on its preview\) to send your message\.$/);
  await replyEnded(page);
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), 'what is broken?');
  assert.equal(await byTestId(page, 'pending-image').count(), 1);
  assert.equal(await byTestId(page, 'user-message').count(), 1);
  assert.deepEqual(await savedWithImages(page), before);

  // 12,000 × 12,000: no preview decoded, the engine's megapixel message.
  await byTestId(page, 'remove-image').click();
  await attach(page, file('huge.png', HUGE_PHOTO));
  const placeholder = byTestId(page, 'pending-preview');
  assert.equal(await placeholder.textContent(), '12000 × 12000');
  assert.equal(await placeholder.getAttribute('aria-label'), 'Photo: huge.png, 12000 × 12000 pixels, too large to preview');
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'vision-390-dark-too-large.png') });
  await byTestId(page, 'send').click();
  await expectError(page, 'The photo could not be used: the image is 12000 × 12000 pixels; '
    + `Burrow takes images of up to ${MAX_MEGAPIXELS} megapixels. Remove it (✕ on its preview) to send your message.`);
  await replyEnded(page);
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), 'what is broken?');
  assert.equal(await byTestId(page, 'pending-image').count(), 1);
  assert.deepEqual(await savedWithImages(page), before);

  // At most 4 photos a message.
  await attach(page, file('a.png', PHOTO));
  await attach(page, file('b.png', PHOTO));
  await attach(page, file('c.png', PHOTO));
  await attach(page, file('d.png', PHOTO));
  await expectError(page, 'A message takes at most 4 photos.');
  assert.equal(await byTestId(page, 'pending-image').count(), 4);

  // Removed, the rest is sent, and the conversation goes on.
  await byTestId(page, 'remove-image').first().click();
  assert.deepEqual(await byTestId(page, 'pending-preview').evaluateAll((els) => els.map((el) => el.alt)), ['Photo: a.png', 'Photo: b.png', 'Photo: c.png']);
  await byTestId(page, 'remove-image').last().click();
  await byTestId(page, 'remove-image').last().click();
  await send(page, 'what is broken?');
  const photo = seen(PHOTO, 64, 48);
  assert.equal(await lastReply(page), echo('what is broken?', 3, [photo, photo]));
  assert.equal(await byTestId(page, 'error').isHidden(), true);
});

test('a model without vision: no attach button; a conversation with photos is not sent to it, said clearly', async (t) => {
  const { page, textUrl } = await openVisionApp(t);
  await loadVision(page);
  await attach(page, file('cat.png', PHOTO));
  await send(page, 'look');
  // A photo chosen, then the model changed for one without vision.
  await attach(page, file('dog.png', OTHER_PHOTO));
  await loadFromUi(page, textUrl);
  await waitForStatus(page, 'text.gguf is ready.');
  assert.equal(await byTestId(page, 'attach-image').isHidden(), true);
  await byTestId(page, 'prompt-input').fill('and now?');
  await byTestId(page, 'send').click();
  await expectError(page, 'text.gguf does not read images. Remove the photos to send your message, '
    + 'or load a model that reads images (“reads images” in the model list).');
  await byTestId(page, 'remove-image').click();
  await byTestId(page, 'send').click();
  await expectError(page, 'text.gguf does not read images, and this conversation has photos it cannot see. '
    + 'Start a new chat, or load a model that reads images (“reads images” in the model list).');
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), 'and now?', 'nothing lost');
  assert.equal(await byTestId(page, 'user-message').count(), 1);
  // Regenerate says the same.
  await page.evaluate(() => { document.querySelector('[data-testid="error"]').hidden = true; });
  await byTestId(page, 'regenerate').click();
  await expectError(page, /^text\.gguf does not read images, and this conversation has photos/);
  // A new chat works.
  await byTestId(page, 'new-chat').click();
  await byTestId(page, 'send').click();
  await replyEnded(page);
  assert.equal(await lastReply(page), echo('and now?', 1));
  assert.equal(await byTestId(page, 'error').isHidden(), true);

  // Deleting the conversation with the photo deletes the photo with it.
  const photos = () => page.evaluate(async () => {
    const conversations = await import('/web/conversations.js');
    return (await conversations.list()).flatMap((c) => c.messages.flatMap((m) => (m.images ?? []).map((image) => image.name)));
  });
  assert.deepEqual(await photos(), ['cat.png']);
  assert.deepEqual(await storedPhotos(page), [PHOTO.length]);
  await byTestId(page, 'open-conversations').click();
  page.once('dialog', (dialog) => dialog.accept());
  await byTestId(page, 'conversation-item').filter({ hasText: 'look' }).getByRole('button', { name: /^Delete/ }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation-item"]').length === 1);
  assert.deepEqual(await photos(), []);
  assert.deepEqual(await storedPhotos(page), []);
});

test('projectors that cannot be used: one that does not pair keeps both files; a broken one is removed alone; a non-projector is refused before the download', async (t) => {
  const { page } = await openVisionApp(t, { mmprojMagic: `${PROJECTOR_MAGIC}-mismatch` });
  // A conversation to keep.
  await page.evaluate(async () => {
    const conversations = await import('/web/conversations.js');
    const conversation = conversations.create();
    conversation.messages.push({ role: 'user', content: 'Keep this' }, { role: 'assistant', content: 'Kept.' });
    await conversations.save(conversation);
  });
  await page.reload();
  await showSetup(page);
  await byTestId(page, 'model-picker').selectOption(VLM_OPTION);
  await byTestId(page, 'load').click();
  await expectError(page, `${MMPROJ_NAME}: this vision projector does not pair with the language model: it projects to 576 values, `
    + 'the model takes 960; use the mmproj file made for this model. Both downloaded files are kept.');
  await waitForStatus(page, 'No model loaded.');
  assert.deepEqual((await storeState(page)).models.map(({ complete }) => complete), [true, true]);
  assert.deepEqual(await byTestId(page, 'user-message').allTextContents(), ['Keep this']);
  assert.equal(await byTestId(page, 'prompt-input').isDisabled(), true);

  // Through the API, with files on the test server: a broken projector, then one that is no
  // projector at all (a plain GGUF).
  const dir = await tempDir(t);
  await makeFile(dir, 'model.gguf', MODEL_BYTES);
  await makeFile(dir, 'mmproj-broken.gguf', MMPROJ_BYTES, `${PROJECTOR_MAGIC}-broken`);
  await makeFile(dir, 'not-a-projector.gguf', MMPROJ_BYTES);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const context = await launch(t);
  const api = await firstPage(context);
  await api.goto(`${server.origin}/`);
  const create = (mmproj) => api.evaluate(async ({ model, mmproj }) => {
    const { Burrow } = await import('/web/burrow.js');
    return Burrow.create({ model, mmproj }).then(async (engine) => {
      await engine.unload();
      return 'loaded';
    }, (error) => ({ code: error.code, message: error.message }));
  }, { model: `${server.origin}/models/model.gguf`, mmproj: `${server.origin}/models/${mmproj}` });
  assert.deepEqual(await create('mmproj-broken.gguf'), {
    code: 'bad-file',
    message: 'mmproj-broken.gguf: the vision projector is broken: tensor v.patch_embd.weight ends past the end of the file. '
      + 'The file was removed from this device; the model is kept.',
  });
  assert.deepEqual((await storeState(api)).models.map(({ url, complete }) => [url.slice(url.lastIndexOf('/') + 1), complete]), [['model.gguf', true]]);
  const asked = server.requests.length;
  assert.deepEqual(await create('not-a-projector.gguf'), {
    code: 'unsupported',
    message: 'not-a-projector.gguf: this file is not a vision projector (its general.architecture is not "clip"); pick the mmproj file made for the model.',
  });
  // Only its header was read.
  assert.deepEqual(server.requests.slice(asked).filter((r) => r.path.includes('not-a-projector')).map((r) => r.range), ['bytes=0-1048575']);
  assert.deepEqual((await storeState(api)).models.map(({ url }) => url.slice(url.lastIndexOf('/') + 1)), ['model.gguf']);
});

test('Burrow API: content parts checked, images only to a model with its projector, string contents unchanged', async (t) => {
  const dir = await tempDir(t);
  await makeFile(dir, 'text.gguf', 2 * MIB);
  await makeFile(dir, 'vlm.gguf', MODEL_BYTES);
  await makeFile(dir, 'mmproj-vlm.gguf', MMPROJ_BYTES, PROJECTOR_MAGIC);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const context = await launch(t);
  const page = await firstPage(context);
  await page.goto(`${server.origin}/`);
  const photoUrl = `data:image/png;base64,${PHOTO.toString('base64')}`;
  const result = await page.evaluate(async ({ origin, photoUrl }) => {
    const { Burrow } = await import('/web/burrow.js');
    const outcome = (promise) => promise.then((reply) => reply.choices[0].message.content, (error) => ({ code: error.code, message: error.message }));
    const ask = (engine, content, role = 'user') => outcome(engine.chat.completions.create({ messages: [{ role, content }], temperature: 0 }));
    const image = (url) => ({ type: 'image_url', image_url: { url } });
    const text = await Burrow.create({ model: `${origin}/models/text.gguf` });
    const vlm = await Burrow.create({ model: `${origin}/models/vlm.gguf`, mmproj: `${origin}/models/mmproj-vlm.gguf` });
    const out = {
      textModel: text.model,
      vlmModel: vlm.model,
      plain: await ask(vlm, 'Hello'),
      parts: await ask(vlm, [image(photoUrl), { type: 'text', text: 'What is it?' }]),
      textParts: await ask(vlm, [{ type: 'text', text: 'one' }, { type: 'text', text: 'two' }]),
      systemParts: await outcome(vlm.chat.completions.create({ messages: [{ role: 'system', content: [{ type: 'text', text: 'Be brief.' }] }, { role: 'user', content: 'Hi' }], temperature: 0 })),
      noVision: await ask(text, [image(photoUrl), { type: 'text', text: 'What is it?' }]),
      notAnImage: await ask(vlm, [image(`data:image/png;base64,${btoa('just some text')}`)]),
      webUrl: await ask(vlm, [image('https://example.com/cat.png')]),
      dataNotImage: await ask(vlm, [image(`data:text/plain;base64,${btoa('hi')}`)]),
      noUrl: await ask(vlm, [{ type: 'image_url', image_url: 'not an object' }]),
      badType: await ask(vlm, [{ type: 'input_audio', input_audio: {} }]),
      badText: await ask(vlm, [{ type: 'text', text: 42 }]),
      empty: await ask(vlm, []),
      notContent: await ask(vlm, 42),
      systemImage: await ask(vlm, [image(photoUrl)], 'system'),
    };
    // The worker refuses an image for a model without a projector too (below the API's check).
    const worker = new Worker('/web/worker.js', { type: 'module' });
    const reply = (message) => new Promise((resolve) => {
      worker.onmessage = ({ data }) => {
        if (['ready', 'done', 'error'].includes(data.type)) resolve(data);
      };
      worker.postMessage(message);
    });
    await reply({ type: 'load', id: 1, url: `${origin}/models/text.gguf` });
    const refused = await reply({ type: 'chat', id: 2, messages: [{ role: 'user', content: [image(photoUrl)] }] });
    out.worker = { code: refused.code, message: refused.message };
    worker.terminate();
    await text.unload();
    await vlm.unload();
    return out;
  }, { origin: server.origin, photoUrl });

  assert.equal(result.textModel.vision, false);
  assert.equal(result.textModel.mmproj, null);
  assert.equal(result.vlmModel.vision, true);
  assert.deepEqual({ ...result.vlmModel.mmproj, sha256: undefined }, { url: `${server.origin}/models/mmproj-vlm.gguf`, name: 'mmproj-vlm.gguf', size: MMPROJ_BYTES, sha256: undefined });
  assert.match(result.vlmModel.mmproj.sha256, /^[0-9a-f]{64}$/);
  assert.equal(result.plain, 'echo: Hello (temperature 0, 1 messages)');
  assert.equal(result.parts, `echo: What is it? [1 images: ${seen(PHOTO, 64, 48)}] (temperature 0, 1 messages)`);
  assert.equal(result.textParts, 'echo: one\ntwo (temperature 0, 1 messages)');
  assert.equal(result.systemParts, 'echo: Hi (temperature 0, 2 messages)');
  assert.deepEqual(result.noVision, {
    code: 'bad-request',
    message: 'text.gguf does not read images: load it with its vision projector (Burrow.create({ mmproj })), or use a model that reads images.',
  });
  assert.deepEqual(result.worker, { code: 'bad-request', message: 'text.gguf does not read images: it was loaded without a vision projector (mmproj).' });
  assert.deepEqual(result.notAnImage, { code: 'bad-image', message: 'this file is not an image Burrow can read (PNG, JPEG or WebP)' });
  assert.deepEqual(result.webUrl, {
    code: 'bad-request',
    message: 'message 0: image_url.url must be a data: URL (data:image/jpeg;base64,…): Burrow does not download images, so nothing leaves the device.',
  });
  assert.deepEqual(result.dataNotImage, {
    code: 'bad-request',
    message: 'message 0: image_url.url must be a data: URL of an image in base64 (PNG, JPEG or WebP), not one of text/plain.',
  });
  assert.deepEqual(result.noUrl, { code: 'bad-request', message: 'message 0: an "image_url" part needs image_url: {url: "data:image/…;base64,…"}.' });
  assert.deepEqual(result.badType, { code: 'bad-request', message: 'message 0: a content part\'s type must be "text" or "image_url", not "input_audio".' });
  assert.deepEqual(result.badText, { code: 'bad-request', message: 'message 0: a "text" part needs a string "text".' });
  assert.deepEqual(result.empty, { code: 'bad-request', message: 'message 0: its content array is empty.' });
  assert.equal(result.notContent.code, 'bad-request');
  assert.deepEqual(result.systemImage, { code: 'bad-request', message: 'message 0: only user messages can carry images, not system messages.' });
});

test('web/images.js reads the format and size of PNG, JPEG and WebP files from their headers', async (t) => {
  const server = await startServer(t, {});
  const context = await launch(t);
  const page = await firstPage(context);
  await page.goto(`${server.origin}/`);
  const sizes = await page.evaluate(async (png) => {
    const { imageSize, imageType } = await import('/web/images.js');
    const canvas = new OffscreenCanvas(321, 123);
    canvas.getContext('2d').fillRect(0, 0, 10, 10);
    const read = async (blob) => {
      const bytes = new Uint8Array(await blob.arrayBuffer());
      return { type: imageType(bytes), size: imageSize(bytes) };
    };
    return {
      png: await read(new Blob([new Uint8Array(png)])),
      jpeg: await read(await canvas.convertToBlob({ type: 'image/jpeg' })),
      webpLossy: await read(await canvas.convertToBlob({ type: 'image/webp', quality: 0.5 })),
      webpLossless: await read(await canvas.convertToBlob({ type: 'image/webp', quality: 1 })),
      text: await read(new Blob(['hello'])),
    };
  }, [...HUGE_PHOTO]);
  assert.deepEqual(sizes.png, { type: 'image/png', size: { width: 12_000, height: 12_000 } });
  assert.deepEqual(sizes.jpeg, { type: 'image/jpeg', size: { width: 321, height: 123 } });
  assert.deepEqual(sizes.webpLossy, { type: 'image/webp', size: { width: 321, height: 123 } });
  assert.deepEqual(sizes.webpLossless, { type: 'image/webp', size: { width: 321, height: 123 } });
  assert.deepEqual(sizes.text, { type: null, size: null });
});

test('a database from before photos (version 1) is upgraded in place: its conversations and models stay', async (t) => {
  const server = await startServer(t, {});
  const context = await launch(t);
  const page = await firstPage(context);
  // A page of the origin that does not run the app: the database as version 1 made it.
  await page.goto(`${server.origin}/manifest.json`);
  await page.evaluate(() => new Promise((resolve, reject) => {
    const request = indexedDB.open('burrow', 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore('models', { keyPath: 'url' });
      db.createObjectStore('chunks');
      db.createObjectStore('conversations', { keyPath: 'id' }).createIndex('updatedAt', 'updatedAt');
    };
    request.onsuccess = () => {
      const db = request.result;
      const tx = db.transaction(['models', 'conversations'], 'readwrite');
      tx.objectStore('models').put({ url: `${location.origin}/models/old.gguf`, name: 'old.gguf', size: 5e6, chunkSize: 16 * 1024 * 1024, chunksDone: 0, complete: false });
      tx.objectStore('conversations').put({
        id: 'old', title: '', system: '', updatedAt: Date.now(), revision: 1,
        messages: [{ role: 'user', content: 'from before' }, { role: 'assistant', content: 'kept' }],
      });
      tx.oncomplete = () => {
        db.close();
        resolve();
      };
      tx.onerror = () => reject(tx.error);
    };
    request.onerror = () => reject(request.error);
  }));
  await page.goto(`${server.origin}/`);
  await byTestId(page, 'user-message').waitFor();
  assert.deepEqual(await byTestId(page, 'user-message').allTextContents(), ['from before']);
  await openPanel(page, 'Storage');
  assert.match(await byTestId(page, 'stored-model').textContent(), /^old\.gguf \(partial: 0\.0 MB of 5\.0 MB\)/);
  assert.deepEqual(await page.evaluate(async () => {
    const db = await (await import('/web/store.js')).openDatabase();
    return { version: db.version, stores: [...db.objectStoreNames] };
  }), { version: 2, stores: ['chunks', 'conversations', 'images', 'models'] });
});
