// Installability, the service worker (offline, cache contents, no model bytes), network use
// once a model is stored, and the 375 px layout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { byTestId, openPanel, ENGINE_MISSING, loadFromUi, makeFile, MIB, openApp, REPO, startServer, storeState, tempDir } from './harness.mjs';

const SCREENSHOT_DIR = join(REPO, 'target', 'web');
const PHONE = { width: 375, height: 812 };

async function setup(t, options) {
  const dir = await tempDir(t);
  const model = await makeFile(dir, 'tiny.gguf', 2 * MIB + 3);
  const server = await startServer(t, { modelsDir: dir });
  const { context, page } = await openApp(t, server, options);
  return { model, server, context, page, modelUrl: `${server.origin}/models/tiny.gguf` };
}

async function waitForServiceWorker(page) {
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
}

async function storeModelFromUi(page, url) {
  await loadFromUi(page, url);
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
}

// The shell cache's name with no engine built (what the 'none' test server serves).
const NO_ENGINE_VERSION = 'burrow-shell-no-engine';

test('installable: no installability errors, the manifest parses, the install button appears', async (t) => {
  const { context, page } = await setup(t);
  await waitForServiceWorker(page);
  const cdp = await context.newCDPSession(page);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(installabilityErrors, []);
  const manifest = await cdp.send('Page.getAppManifest');
  assert.deepEqual(manifest.errors, []);
  const data = JSON.parse(manifest.data);
  assert.equal(data.name, 'Burrow');
  assert.equal(data.display, 'standalone');
  assert.deepEqual(data.icons.map((icon) => `${icon.sizes} ${icon.purpose}`), ['192x192 any', '512x512 any', '512x512 maskable']);
  await byTestId(page, 'install').waitFor({ state: 'visible' });
});

test('offline after the first visit: served by the service worker, stored model still listed', async (t) => {
  const { context, page, modelUrl } = await setup(t);
  await storeModelFromUi(page, modelUrl);
  await waitForServiceWorker(page);
  await context.setOffline(true);
  const response = await page.reload();
  assert.equal(response.fromServiceWorker(), true);
  await byTestId(page, 'offline-indicator').waitFor({ state: 'visible' });
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
  assert.equal(await byTestId(page, 'error').isHidden(), true);
  await openPanel(page, 'Storage');
  assert.match(await byTestId(page, 'stored-model').textContent(), /tiny\.gguf \(2\.1 MB\)/);
  assert.equal((await storeState(page)).models[0].complete, true);
  await context.setOffline(false);
  await page.reload();
  await byTestId(page, 'offline-indicator').waitFor({ state: 'hidden' });
});

test('Cache Storage holds the versioned shell and never model bytes; old shell caches are deleted', async (t) => {
  const version = NO_ENGINE_VERSION;
  const seedCaches = async () => {
    // Before the app registers its worker: an outdated shell cache and another app's cache.
    if (window.top === window && !sessionStorage.seeded) {
      sessionStorage.seeded = '1';
      const old = await caches.open('burrow-shell-v0');
      await old.put('/stale', new Response('stale'));
      await caches.open('someone-else');
    }
  };
  const { page, modelUrl } = await setup(t, { initScript: seedCaches });
  await storeModelFromUi(page, modelUrl);
  await waitForServiceWorker(page);
  // Fetches of a model through the controlled page: whole and ranged.
  await page.evaluate(async (url) => {
    await (await fetch(url)).arrayBuffer();
    await (await fetch(url, { headers: { Range: 'bytes=0-99' } })).arrayBuffer();
  }, modelUrl);
  const cached = await page.evaluate(async () => {
    const out = {};
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      out[name] = (await cache.keys()).map((request) => new URL(request.url).pathname);
    }
    return out;
  });
  assert.deepEqual(Object.keys(cached).sort(), [version, 'someone-else'].sort());
  const shell = cached[version];
  for (const path of ['/', '/index.html', '/manifest.json', '/web/app.js', '/web/store.js', '/web/worker.js', '/web/app.css', '/web/icons/icon-512.png']) {
    assert.ok(shell.includes(path), `${path} precached`);
  }
  assert.ok(shell.every((path) => !path.includes('/models/') && !path.endsWith('.gguf')), shell.join(' '));
});

test('once a model is stored, a visit only asks the server for the app shell', async (t) => {
  const { context, server, page, modelUrl } = await setup(t);
  await storeModelFromUi(page, modelUrl);
  await waitForServiceWorker(page);
  server.requests.length = 0;
  const seen = [];
  context.on('request', (request) => seen.push(request.url()));
  await page.reload();
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
  await page.waitForLoadState('networkidle');
  const shellPaths = /^\/(|index\.html|manifest\.json|web\/[\w-]+\.(js|css)|web\/icons\/[\w-]+\.png|pkg\/burrow_web(_bg)?\.(js|wasm))$/;
  const paths = server.requests.map((r) => r.path);
  assert.ok(paths.every((path) => shellPaths.test(path)), `server saw: ${paths.join(' ')}`);
  assert.ok(!paths.some((path) => path.startsWith('/models/')));
  assert.ok(seen.length > 0);
  assert.ok(seen.every((url) => url.startsWith(`${server.origin}/`)), `browser requested: ${seen.join(' ')}`);
});

test('375 × 812 layout: nothing overflows; screenshots in target/web/', async (t) => {
  const { page, modelUrl } = await setup(t, { context: { viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true } });
  await storeModelFromUi(page, modelUrl);
  await page.evaluate(async () => {
    const conversations = await import('/web/conversations.js');
    const conversation = conversations.create();
    conversation.messages.push(
      { role: 'user', content: 'What is a burrow?' },
      { role: 'assistant', content: 'A burrow is a hole or tunnel dug into the ground by an animal to create a space suitable for habitation, temporary refuge, or as a byproduct of locomotion.' },
      { role: 'user', content: 'averyveryverylongwordwithoutanyspacesthatmustwrapinsteadofoverflowingthescreen' },
    );
    await conversations.save(conversation);
  });
  await page.reload();
  await page.waitForFunction((text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), ENGINE_MISSING);
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'ui-375.png') });

  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.equal(await overflow(), 0);
  for (const id of ['model-picker', 'load', 'prompt-input', 'send', 'temperature', 'assistant-message']) {
    const box = await byTestId(page, id).first().boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= PHONE.width, `${id} inside the screen: ${JSON.stringify(box)}`);
  }
  for (const id of ['load', 'send']) {
    const box = await byTestId(page, id).boundingBox();
    assert.ok(box.height >= 44, `${id} is a usable touch target`);
  }
  await openPanel(page, 'Settings');
  await openPanel(page, 'Storage');
  assert.equal(await overflow(), 0);
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'ui-375-panels.png') });
});

test('375 px during a download: progress, speed and ETA visible; Cancel keeps the stored part', async (t) => {
  const dir = await tempDir(t);
  await makeFile(dir, 'slow.gguf', 40 * MIB);
  const server = await startServer(t, { modelsDir: dir });
  const { page } = await openApp(t, server, { context: { viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true } });
  server.faults.set('/models/slow.gguf', { stallAfter: 17 * MIB, times: 1 });
  await loadFromUi(page, `${server.origin}/models/slow.gguf`);
  await page.waitForFunction(() => {
    const progress = document.querySelector('[data-testid="download-progress"]');
    return progress.value > 0.35 && !progress.closest('[hidden]');
  });
  assert.match(await byTestId(page, 'download-text').textContent(), /^[\d.]+ MB of 41\.9 MB · [\d.]+\u00a0MB\/s( · \d+\u00a0(s|min \d+\u00a0s)\u00a0left)?$/);
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOT_DIR, 'ui-375-download.png') });
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth), 0);
  await byTestId(page, 'cancel-download').click();
  await byTestId(page, 'error').waitFor({ state: 'visible' });
  assert.match(await byTestId(page, 'error').textContent(), /stopped; it will resume/);
  assert.equal(await byTestId(page, 'download').isHidden(), true);
  await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]').textContent
    === 'Download paused at 16.8 MB of 41.9 MB. Press Load to resume.');
  const { models } = await storeState(page);
  assert.equal(models[0].complete, false);
  assert.equal(models[0].chunksDone, 1);
});

test('a new build (app or engine) is offered as "Update ready", and replaces the cached one only when accepted', async (t) => {
  // An engine directory like pkg/ after `make pkg`: the stub engine and a build id.
  const pkg = await tempDir(t);
  const engineFile = join(pkg, 'burrow_web.js');
  await copyFile(join(REPO, 'tests', 'web', 'stub_engine', 'burrow_web.js'), engineFile);
  await writeFile(join(pkg, 'build.js'), "self.BURROW_BUILD = 'build-one';\n");
  const server = await startServer(t, { pkgDir: pkg });
  const { page } = await openApp(t, server);
  await waitForServiceWorker(page);
  const cachedEngine = () => page.evaluate(async () => {
    const names = (await caches.keys()).filter((name) => name.startsWith('burrow-shell-'));
    const texts = await Promise.all(names.map(async (name) => {
      const response = await (await caches.open(name)).match(new URL('pkg/burrow_web.js', location.href).href);
      return response ? (await response.text()).split('\n')[0] : null;
    }));
    return Object.fromEntries(names.map((name, i) => [name, texts[i]]));
  });
  const first = await cachedEngine();
  assert.deepEqual(Object.keys(first), ['burrow-shell-build-one']);
  assert.equal(await byTestId(page, 'update-ready').isHidden(), true, 'nothing to update on the first visit');

  // `make pkg` again: new engine bytes, new build id; sw.js itself is unchanged.
  await writeFile(engineFile, `// rebuilt\n${await readFile(engineFile, 'utf8')}`);
  await writeFile(join(pkg, 'build.js'), "self.BURROW_BUILD = 'build-two';\n");
  await page.evaluate(async () => (await navigator.serviceWorker.ready).update());
  await byTestId(page, 'update-ready').waitFor({ state: 'visible' });
  // Installed and waiting: the page keeps the version it runs, and its cache.
  assert.equal(await page.evaluate(async () => Boolean((await navigator.serviceWorker.getRegistration()).waiting)), true);
  assert.deepEqual(Object.keys(await cachedEngine()).sort(), ['burrow-shell-build-one', 'burrow-shell-build-two']);

  await Promise.all([page.waitForEvent('load'), byTestId(page, 'update-ready').click()]);
  // The new worker took over as it activated; its activate step then deletes the old cache.
  let second = await cachedEngine();
  for (let tries = 0; Object.keys(second).length > 1 && tries < 50; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    second = await cachedEngine();
  }
  assert.deepEqual(second, { 'burrow-shell-build-two': '// rebuilt' });
  assert.equal(await byTestId(page, 'update-ready').isHidden(), true);
});
