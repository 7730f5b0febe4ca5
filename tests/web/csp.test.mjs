// The app's Content-Security-Policy: the <meta> policy in index.html, the headers the server adds,
// and the app running under it in Chromium (online and as the service worker's offline copy).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { byTestId, firstPage, launch, loadFromUi, makeFile, MIB, startServer, tempDir } from './harness.mjs';
import { APP_POLICY, HOST } from '../../scripts/web_serve.mjs';

// As strict as the app allows: its own files only, wasm compiled by the engine, models fetched
// from any https host (Hugging Face), no inline script or style, nothing that can rebase URLs,
// submit forms or embed plugins. The page also shows blob: images: the object URLs it makes of
// the photos a person attaches (only the page's own script can make one).
const DIRECTIVES = {
  'default-src': ["'self'"],
  'script-src': ["'self'", "'wasm-unsafe-eval'"],
  'style-src': ["'self'"],
  'img-src': ["'self'", 'blob:'],
  'connect-src': ["'self'", 'https:'],
  'worker-src': ["'self'"],
  'manifest-src': ["'self'"],
  'object-src': ["'none'"],
  'base-uri': ["'none'"],
  'form-action': ["'none'"],
};
const CSP_MESSAGE = /Content Security Policy/i;
// How long a violation event may take to arrive after what caused it.
const VIOLATION_WAIT_MS = 5000;

function parsePolicy(policy) {
  const directives = {};
  for (const directive of policy.split(';').map((part) => part.trim()).filter(Boolean)) {
    const [name, ...sources] = directive.split(/\s+/);
    assert.equal(directives[name], undefined, `${name} given twice`);
    directives[name] = sources;
  }
  return directives;
}

function metaPolicy(html) {
  const tags = html.match(/<meta\s+http-equiv="Content-Security-Policy"[^>]*>/gi) ?? [];
  assert.equal(tags.length, 1, 'one CSP <meta> tag');
  const head = html.slice(0, html.indexOf('</head>'));
  assert.ok(head.includes(tags[0]), 'the CSP <meta> tag is in <head>');
  assert.ok(head.indexOf(tags[0]) < head.search(/<(link|script)\b/i), 'the CSP <meta> tag comes before any resource');
  return / content="([^"]*)"/.exec(tags[0])[1];
}

test('index.html carries the strict policy; the server adds frame-ancestors and gives workers the policy', async (t) => {
  const { origin } = await startServer(t, {});
  const page = await fetch(`${origin}/`);
  const policy = metaPolicy(await page.text());
  assert.deepEqual(parsePolicy(policy), DIRECTIVES);
  // The scripts' policy (the workers'), with the page's blob: images.
  assert.deepEqual(parsePolicy(policy), { ...parsePolicy(APP_POLICY), 'img-src': DIRECTIVES['img-src'] });
  assert.equal(page.headers.get('content-security-policy'), "frame-ancestors 'none'");
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  for (const worker of ['/web/worker.js', '/web/sw.js']) {
    assert.equal((await fetch(origin + worker)).headers.get('content-security-policy'), APP_POLICY, worker);
  }
});

test('the app runs with no policy violations; injected inline script does not run, offline copy included', async (t) => {
  const dir = await tempDir(t);
  await makeFile(dir, 'csp.gguf', MIB + 1);
  const server = await startServer(t, { modelsDir: dir, engine: 'stub' });
  const context = await launch(t);
  const messages = [];
  const record = (message) => {
    if (CSP_MESSAGE.test(message.text())) messages.push(message.text());
  };
  context.on('console', record);
  await context.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (event) => {
      window.cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`);
    });
  });
  const page = await firstPage(context);
  page.on('worker', (worker) => worker.on('console', record));
  await page.goto(`${server.origin}/`);

  // Load a model and chat: the worker starts, imports the engine and streams a reply.
  await loadFromUi(page, `${server.origin}/models/csp.gguf`);
  await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]').textContent.includes('ready'));
  await byTestId(page, 'prompt-input').fill('Hi');
  await byTestId(page, 'send').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="assistant-message"]')?.textContent.startsWith('echo: Hi'));
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
  assert.deepEqual(await page.evaluate(() => window.cspViolations), []);

  // The service worker's copy of index.html keeps the <meta> policy.
  const response = await page.reload();
  assert.equal(response.fromServiceWorker(), true);
  await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]').textContent.includes('ready'));
  assert.deepEqual(await page.evaluate(() => window.cspViolations), []);
  assert.deepEqual(messages, []);
  assert.equal(await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.injected = true;';
    document.head.append(script);
    return window.injected;
  }), undefined);
  await page.waitForFunction(() => window.cspViolations.length > 0);
  assert.deepEqual(await page.evaluate(() => window.cspViolations), ['script-src-elem inline']);

  // The engine's worker is under the policy too (sent with its script): connect-src refuses
  // another origin by http (localhost for 127.0.0.1), which would otherwise give an opaque response.
  const [worker] = page.workers();
  const elsewhere = `${server.origin.replace(HOST, 'localhost')}/web/app.css`;
  assert.deepEqual(await worker.evaluate(async ({ url, waitMs }) => {
    const violation = new Promise((done) => {
      self.addEventListener('securitypolicyviolation', (event) => done(event.effectiveDirective));
      setTimeout(() => done('none'), waitMs);
    });
    const outcome = await fetch(url, { mode: 'no-cors' }).then((response) => response.type, (error) => error.name);
    return { outcome, violation: await violation };
  }, { url: elsewhere, waitMs: VIOLATION_WAIT_MS }), { outcome: 'TypeError', violation: 'connect-src' });
});
