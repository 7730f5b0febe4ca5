// The chat app from a first visit to daily use, at a phone's viewport, through the real worker,
// Burrow API and UI with tests/web/stub_engine standing in for the wasm engine (its replies echo
// the prompt and count the messages it was given, so what a reply saw can be checked):
// conversations, Copy / Regenerate / Edit, the system prompt, the folded header, the view following
// a reply, the first-visit text, keyboard use and accessible names. tests/web/engine.test.mjs does
// the same with the real engine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { byTestId, loadFromUi, makeFile, MIB, openApp, openPanel, savedConversation, startServer, tempDir } from './harness.mjs';

const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

async function ready(t, options = {}) {
  const dir = await tempDir(t);
  await makeFile(dir, 'chat.gguf', 3 * MIB + 1);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const { context, page } = await openApp(t, server, { context: PHONE, ...options });
  await loadFromUi(page, `${server.origin}/models/chat.gguf`);
  await waitForStatus(page, 'ready');
  return { server, context, page };
}

const waitForStatus = (page, text) => page.waitForFunction(
  (text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), text);

// The stub's reply, at the app's default temperature.
const echo = (prompt, messages) => `echo: ${prompt} (temperature 0.7, ${messages} messages)`;

// Sends `text` and waits until its reply has ended.
async function send(page, text) {
  await byTestId(page, 'prompt-input').fill(text);
  await byTestId(page, 'send').click();
  await replyEnded(page);
}

const replyEnded = (page) => page.waitForFunction(() => !document.querySelector('.message.pending')
  && document.querySelector('[data-testid="send"]').hidden === false);

const shown = async (page) => ({
  user: await byTestId(page, 'user-message').allTextContents(),
  assistant: await byTestId(page, 'assistant-message').allTextContents(),
});

async function openList(page) {
  await byTestId(page, 'open-conversations').click();
  await byTestId(page, 'conversation-list').waitFor();
  return page.evaluate(() => [...document.querySelectorAll('[data-testid="conversation-item"]')]
    .map((item) => item.querySelector('.title').textContent));
}

const item = (page, title) => byTestId(page, 'conversation-item').filter({ hasText: title });

const storedTitles = (page) => page.evaluate(async () => {
  const conversations = await import('/web/conversations.js');
  return (await conversations.list()).map(conversations.titleOf);
});

test('conversations: listed newest first by first prompt, switched (also after a reload), renamed, deleted one by one', async (t) => {
  const { page } = await ready(t);
  await send(page, 'first question');
  await byTestId(page, 'new-chat').click();
  assert.deepEqual(await shown(page), { user: [], assistant: [] });
  await send(page, 'second question');
  await byTestId(page, 'new-chat').click();
  await send(page, 'third question');
  assert.deepEqual(await openList(page), ['third question', 'second question', 'first question']);
  assert.equal(await item(page, 'third question').locator('[aria-current="true"]').count(), 1, 'the open one is marked');

  // Switch to the oldest; it stays open across a reload.
  await item(page, 'first question').locator('[data-testid="open-conversation"]').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="user-message"]')?.textContent === 'first question');
  assert.deepEqual(await shown(page), { user: ['first question'], assistant: [echo('first question', 1)] });
  assert.equal(await byTestId(page, 'conversations').evaluate((dialog) => dialog.open), false);
  await page.reload();
  await waitForStatus(page, 'ready');
  assert.deepEqual(await shown(page), { user: ['first question'], assistant: [echo('first question', 1)] });
  // A follow-up in the switched conversation sees its messages (3: two of its own and this one).
  await send(page, 'and then?');
  assert.equal(await byTestId(page, 'assistant-message').last().textContent(), echo('and then?', 3));
  assert.deepEqual(await openList(page), ['first question', 'third question', 'second question']);

  // Rename: kept after a reload, its place in the list unchanged; Escape leaves a rename.
  await item(page, 'third question').getByRole('button', { name: 'Rename “third question”' }).click();
  await byTestId(page, 'conversation-title').fill('Trip plans');
  await byTestId(page, 'conversation-title').press('Enter');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="conversation-item"] .title')].some((e) => e.textContent === 'Trip plans'));
  await item(page, 'second question').getByRole('button', { name: /^Rename/ }).click();
  await byTestId(page, 'conversation-title').fill('not kept');
  await byTestId(page, 'conversation-title').press('Escape');
  assert.equal(await byTestId(page, 'conversations').evaluate((dialog) => dialog.open), true, 'Escape ends the rename, not the list');
  assert.deepEqual(await storedTitles(page), ['first question', 'Trip plans', 'second question']);
  await page.reload();
  await waitForStatus(page, 'ready');
  assert.deepEqual(await openList(page), ['first question', 'Trip plans', 'second question']);

  // Delete one: not without a confirmation; the open one leaves an empty chat.
  page.once('dialog', (dialog) => dialog.dismiss());
  await item(page, 'second question').getByRole('button', { name: /^Delete/ }).click();
  assert.deepEqual(await storedTitles(page), ['first question', 'Trip plans', 'second question']);
  page.once('dialog', (dialog) => dialog.accept());
  await item(page, 'second question').getByRole('button', { name: /^Delete/ }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation-item"]').length === 2);
  assert.deepEqual(await storedTitles(page), ['first question', 'Trip plans']);
  page.once('dialog', (dialog) => dialog.accept());
  await item(page, 'first question').getByRole('button', { name: /^Delete/ }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation-item"]').length === 1);
  assert.deepEqual(await shown(page), { user: [], assistant: [] });
  assert.deepEqual(await storedTitles(page), ['Trip plans']);
});

test('per reply: Copy, Regenerate and Edit of the last prompt replace the last turn; the system prompt applies to new conversations', async (t) => {
  const { context, page } = await ready(t);
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await send(page, 'one');
  await send(page, 'two');
  // Regenerate and Edit only on the last reply; Copy on each.
  assert.equal(await byTestId(page, 'copy-reply').count(), 2);
  assert.deepEqual(await byTestId(page, 'regenerate').evaluateAll((buttons) => buttons.map((b) => b.hidden)), [true, false]);

  await byTestId(page, 'copy-reply').first().click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), echo('one', 1));
  await page.waitForFunction(() => document.querySelector('[data-testid="copy-reply"]').textContent === 'Copied');

  // Regenerate: the last reply is written again from the same context (3 messages, not 5).
  await page.evaluate(() => {
    document.querySelector('[data-testid="messages"] .message.assistant:last-child [data-testid="assistant-message"]').textContent = 'old reply';
  });
  await byTestId(page, 'regenerate').last().click();
  await replyEnded(page);
  assert.deepEqual(await shown(page), { user: ['one', 'two'], assistant: [echo('one', 1), echo('two', 3)] });

  // Edit: the last prompt back in the composer; Cancel keeps everything, Send replaces the turn.
  await byTestId(page, 'edit-prompt').last().click();
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), 'two');
  assert.equal(await byTestId(page, 'editing').isVisible(), true);
  await byTestId(page, 'cancel-edit').click();
  assert.equal(await byTestId(page, 'prompt-input').inputValue(), '');
  await byTestId(page, 'edit-prompt').last().click();
  await send(page, 'two, edited');
  assert.deepEqual(await shown(page), { user: ['one', 'two, edited'], assistant: [echo('one', 1), echo('two, edited', 3)] });
  assert.deepEqual((await savedConversation(page)).map(([, content]) => content), ['one', echo('one', 1), 'two, edited', echo('two, edited', 3)]);

  // The system prompt: saved, and given first in conversations started after it was set.
  await openPanel(page, 'Settings');
  await byTestId(page, 'system-prompt').fill('Answer briefly.');
  await byTestId(page, 'system-prompt').dispatchEvent('change');
  await byTestId(page, 'switch-model').click();
  await send(page, 'three');
  assert.equal(await byTestId(page, 'assistant-message').last().textContent(), echo('three', 5), 'not in the conversation already started');
  await byTestId(page, 'new-chat').click();
  await send(page, 'four');
  assert.equal(await byTestId(page, 'assistant-message').last().textContent(), echo('four', 2), 'the system prompt and the question');
  assert.equal(await byTestId(page, 'conversation-system').textContent(), 'System prompt: Answer briefly.');
  assert.equal(await page.evaluate(async () => (await (await import('/web/conversations.js')).latest()).system), 'Answer briefly.');
  await page.reload();
  await waitForStatus(page, 'ready');
  assert.equal(await byTestId(page, 'system-prompt').inputValue(), 'Answer briefly.');
});

test('the chat gets the screen: a one-line header once ready, the view follows the reply unless scrolled up, nothing moves while it streams', async (t) => {
  const { page } = await ready(t);
  // Folded: the model card and settings hidden, one line with the model and the way back.
  assert.equal(await page.locator('#setup').isHidden(), true);
  assert.equal(await byTestId(page, 'model-name').textContent(), 'chat.gguf');
  const header = await byTestId(page, 'model-header').boundingBox();
  assert.ok(header.y + header.height < 120, `the header ends ${header.y + header.height} px from the top`);
  await byTestId(page, 'switch-model').click();
  assert.equal(await byTestId(page, 'model-picker').isVisible(), true);
  assert.equal(await byTestId(page, 'switch-model').getAttribute('aria-expanded'), 'true');
  await byTestId(page, 'switch-model').click();
  assert.equal(await byTestId(page, 'model-picker').isVisible(), false);

  // Layout shifts (the Layout Instability API) from here on.
  await page.evaluate(() => {
    window.shifts = [];
    new PerformanceObserver((list) => window.shifts.push(...list.getEntries().filter((e) => !e.hadRecentInput)
      .map((e) => ({ value: e.value, sources: e.sources.map((s) => s.node?.outerHTML?.slice(0, 80)) }))))
      .observe({ type: 'layout-shift' });
  });
  const endOfReplyVisible = () => page.evaluate(() => {
    const reply = document.querySelector('.message.assistant:last-child .body').getBoundingClientRect();
    return reply.bottom <= document.querySelector('.composer').getBoundingClientRect().top + 1;
  });
  await byTestId(page, 'prompt-input').fill('a long story');
  await byTestId(page, 'send').click();
  await page.waitForFunction(() => document.scrollingElement.scrollHeight > 3 * innerHeight);
  assert.ok(await endOfReplyVisible(), 'the view follows the reply');
  // Scrolled up: the view stays where the person put it.
  await page.mouse.move(200, 300);
  await page.mouse.wheel(0, -600);
  await page.waitForFunction(() => document.scrollingElement.scrollTop < document.scrollingElement.scrollHeight - innerHeight - 300);
  const top = await page.evaluate(() => document.scrollingElement.scrollTop);
  const height = await page.evaluate(() => document.scrollingElement.scrollHeight);
  await page.waitForFunction((height) => document.scrollingElement.scrollHeight > height + 500, height);
  assert.equal(await page.evaluate(() => document.scrollingElement.scrollTop), top, 'not pulled back down');
  await byTestId(page, 'stop').click();
  await replyEnded(page);
  assert.deepEqual(await page.evaluate(() => window.shifts), [], 'no layout shift while the reply streamed');

  // The composer stays on screen when the keyboard takes half of it (the page is resized for it:
  // interactive-widget=resizes-content).
  assert.match(await page.locator('meta[name="viewport"]').getAttribute('content'), /interactive-widget=resizes-content/);
  await byTestId(page, 'prompt-input').focus();
  await page.setViewportSize({ width: 390, height: 420 });
  const composer = await page.locator('.composer').boundingBox();
  assert.ok(composer.y >= 0 && composer.y + composer.height <= 420, `composer at ${JSON.stringify(composer)}`);
});

test('first visit: what Burrow is, what the chosen model costs and whether this device runs it, then one button', async (t) => {
  const dir = await tempDir(t);
  await makeFile(dir, 'chat.gguf', 3 * MIB + 1);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const { page } = await openApp(t, server, { context: PHONE });
  await page.waitForFunction(() => document.querySelector('[data-testid="model-cost"]').textContent);
  assert.equal(await byTestId(page, 'welcome').isVisible(), true);
  assert.match(await byTestId(page, 'welcome').textContent(), /runs a language model on this device.*works offline.*nothing you type leaves your phone/);
  // SwiftShader here: a software adapter, which runs the model slowly.
  assert.equal(await byTestId(page, 'model-cost').textContent(),
    'SmolLM2-135M-Instruct Q4_1 is a 98.4 MB download, stored once; this device can run it, slowly: the browser offers no GPU here, only a software one.');
  assert.equal(await byTestId(page, 'load').textContent(), 'Download and start');
  await byTestId(page, 'model-picker').selectOption({ index: 1 });
  await page.waitForFunction(() => document.querySelector('[data-testid="model-cost"]').textContent.startsWith('SmolLM2 360M Instruct Q8_0 is a 386.4 MB download'));
  await byTestId(page, 'model-picker').selectOption('custom');
  await page.waitForFunction(() => document.querySelector('[data-testid="model-cost"]').textContent.startsWith("A pasted model's size is checked before anything is stored"));
  // Once a model is stored the page is no longer a first visit.
  await loadFromUi(page, `${server.origin}/models/chat.gguf`);
  await waitForStatus(page, 'ready');
  await byTestId(page, 'switch-model').click();
  assert.equal(await byTestId(page, 'welcome').isVisible(), false);
  assert.equal(await byTestId(page, 'load').textContent(), 'Load');
});

test('first visit without WebGPU: the text says this browser cannot run it, before anything is downloaded', async (t) => {
  const dir = await tempDir(t);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const { page } = await openApp(t, server, {
    context: PHONE,
    initScript: () => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }),
  });
  await page.waitForFunction(() => document.querySelector('[data-testid="model-cost"]').textContent);
  assert.equal(await byTestId(page, 'model-cost').textContent(),
    'SmolLM2-135M-Instruct Q4_1 is a 98.4 MB download, stored once. This browser cannot run Burrow: WebGPU is not available (try a recent Chrome, Edge or Safari).');
  assert.deepEqual(server.requests.filter((r) => r.path.startsWith('/models/')), []);
});

test('keyboard and screen readers: every control has a name; the conversation list opens, is used and closes from the keyboard', async (t) => {
  const { context, page } = await ready(t);
  await send(page, 'hello');

  // Keyboard: the list's button is the first stop from the top of the page; Enter opens the list,
  // focus moves into it; Escape closes it and gives focus back.
  await page.reload();
  await waitForStatus(page, 'ready');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'open-conversations');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('[data-testid="conversations"]').open);
  assert.ok(await page.evaluate(() => document.querySelector('[data-testid="conversations"]').contains(document.activeElement)));
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.querySelector('[data-testid="conversations"]').open);
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), 'open-conversations');
  // Enter sends from the composer.
  await byTestId(page, 'prompt-input').focus();
  await page.keyboard.type('by keyboard');
  await page.keyboard.press('Enter');
  await replyEnded(page);
  assert.equal(await byTestId(page, 'assistant-message').last().textContent(), echo('by keyboard', 3));

  // Chromium's accessibility tree, with everything unfolded: no unnamed control.
  await byTestId(page, 'open-conversations').click();
  await byTestId(page, 'close-conversations').click();
  await openPanel(page, 'Settings');
  await openPanel(page, 'Storage');
  const cdp = await context.newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  const controls = nodes.filter((n) => !n.ignored && ['button', 'textbox', 'combobox', 'spinbutton', 'link', 'checkbox'].includes(n.role?.value));
  assert.ok(controls.length >= 15, `${controls.length} controls`);
  const unnamed = controls.filter((n) => !n.name?.value?.trim()).map((n) => `${n.role.value} ${n.backendDOMNodeId}`);
  assert.deepEqual(unnamed, []);
});
