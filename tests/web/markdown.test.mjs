// Replies rendered as Markdown (web/markdown.js, markdown-it in web/vendor/): hostile Markdown and
// HTML leave no element or attribute outside the allowed set and run nothing; a streamed reply
// renders as it arrives (tests/web/stub_engine echoes the prompt).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { byTestId, loadFromUi, makeFile, MIB, openApp, REPO, serveModels, startServer, tempDir } from './harness.mjs';

// What a rendered reply may contain: Markdown's elements, and the Copy buttons the app adds.
const ALLOWED = {
  P: [], EM: [], STRONG: [], S: [], UL: [], OL: ['start'], LI: [], H1: [], H2: [], H3: [], H4: [], H5: [], H6: [],
  TABLE: [], THEAD: [], TBODY: [], TR: [], TH: ['class'], TD: ['class'], PRE: [], CODE: ['class'], BLOCKQUOTE: [], HR: [], BR: [],
  A: ['href', 'title', 'target', 'rel'], BUTTON: ['type', 'class', 'aria-label'],
};

const HOSTILE = [
  '<script>window.injected = 1</script>',
  '<img src=x onerror="window.injected = 2">',
  '<svg onload="window.injected = 3"><circle r="1"/></svg>',
  '<iframe src="javascript:window.injected = 4"></iframe>',
  '[click me](javascript:window.injected=5) [data](data:text/html;base64,PHNjcmlwdD4=) [vb](vbscript:msgbox)',
  '<a href="https://example.com" onclick="window.injected = 6">raw link</a>',
  '![tracker](https://example.com/pixel.png)',
  '<style>body { display: none }</style><object data="x"></object><form action="https://example.com"><input></form>',
  '',
  '**bold** _em_ ~~gone~~ `code` and a [real link](https://example.com/page "title")',
  '',
  '| left | right |',
  '|:--|--:|',
  '| 1 | 2 |',
  '',
  '```js',
  'const x = "<b>not bold</b>";',
  '```',
  '',
  'See https://example.org for more.',
].join('\n');

// Every element and attribute under the last reply that is not allowed, and what it shows.
const inspect = (page) => page.evaluate((allowed) => {
  const reply = [...document.querySelectorAll('[data-testid="assistant-message"]')].at(-1);
  const outside = [];
  for (const element of reply.querySelectorAll('*')) {
    const attributes = allowed[element.tagName];
    if (!attributes) outside.push(element.tagName);
    else for (const { name } of element.attributes) if (!attributes.includes(name)) outside.push(`${element.tagName}[${name}]`);
  }
  const links = [...reply.querySelectorAll('a')].map((a) => ({ href: a.getAttribute('href'), target: a.target, rel: a.rel }));
  const tags = [...new Set([...reply.querySelectorAll('*')].map((e) => e.tagName))];
  return { outside, links, tags, text: reply.textContent, injected: window.injected };
}, ALLOWED);

test('the vendored markdown-it is the npm package\'s file, byte for byte', async () => {
  const vendored = await readFile(join(REPO, 'web', 'vendor', 'markdown-it.mjs'));
  const npm = await readFile(join(REPO, 'node_modules', 'markdown-it', 'dist', 'browser', 'markdown-it.esm.min.mjs'));
  assert.ok(vendored.equals(npm));
});

test('hostile Markdown and HTML in a stored reply: only Markdown\'s elements, nothing runs, no request', async (t) => {
  const { context, page, server } = await serveModels(t, []);
  await page.evaluate(async (hostile) => {
    const conversations = await import('/web/conversations.js');
    const conversation = conversations.create();
    conversation.messages.push({ role: 'user', content: 'Show me.' }, { role: 'assistant', content: hostile });
    await conversations.save(conversation);
  }, HOSTILE);
  const outside = [];
  context.on('request', (request) => {
    if (!request.url().startsWith(server.origin)) outside.push(request.url());
  });
  const violations = [];
  page.on('console', (message) => /Content Security Policy/.test(message.text()) && violations.push(message.text()));
  await page.reload();
  await byTestId(page, 'assistant-message').waitFor();
  await page.waitForTimeout(300);
  const result = await inspect(page);
  assert.deepEqual(result.outside, []);
  assert.equal(result.injected, undefined);
  for (const tag of ['STRONG', 'EM', 'S', 'CODE', 'TABLE', 'PRE', 'A', 'BUTTON']) assert.ok(result.tags.includes(tag), `${tag} in ${result.tags}`);
  // Only http(s) links: the written ones and bare URLs (linkified), none of the script URLs.
  const hrefs = result.links.map((l) => l.href);
  assert.ok(hrefs.includes('https://example.com/page') && hrefs.includes('https://example.org'), hrefs.join(' '));
  assert.ok(hrefs.every((href) => /^https:\/\/example\.(com|org)/.test(href)), hrefs.join(' '));
  assert.ok(result.links.every((l) => l.target === '_blank' && l.rel === 'noopener noreferrer'));
  // Raw HTML is shown as text, not dropped.
  assert.ok(result.text.includes('<script>window.injected = 1</script>'));
  assert.ok(result.text.includes('const x = "<b>not bold</b>";'));
  assert.deepEqual(outside, [], 'the reply asked for nothing');
  assert.deepEqual(violations, []);
});

test('a streamed reply is rendered as Markdown as it arrives, with a Copy button on its code', async (t) => {
  const dir = await tempDir(t);
  await makeFile(dir, 'chat.gguf', MIB);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const { page } = await openApp(t, server, { context: { viewport: { width: 390, height: 844 } } });
  await loadFromUi(page, `${server.origin}/models/chat.gguf`);
  await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]').textContent.includes('ready'));
  // The stub echoes the prompt, a word at a time.
  await byTestId(page, 'prompt-input').fill('**bold** then `code` then a [link](https://example.com)');
  await byTestId(page, 'send').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="assistant-message"] strong')?.textContent === 'bold');
  await page.waitForFunction(() => document.querySelector('[data-testid="stop"]').hidden);
  const result = await inspect(page);
  assert.deepEqual(result.outside, []);
  assert.ok(result.tags.includes('CODE') && result.tags.includes('A'), result.tags.join(' '));
  assert.match(result.text, /^echo: bold then code then a link/);
});
