// Shared test helpers: the app server with request log and fault injection, GGUF-like test
// files, and a fresh headless Debian Chromium per test.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { handleRequest, HOST } from '../../scripts/web_serve.mjs';
import { crc32, deflateSync } from 'node:zlib';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = process.env.BURROW_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
];
export const MIB = 1024 * 1024;

export async function tempDir(t) {
  const dir = await mkdtemp(join(tmpdir(), 'burrow-web-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

// A file of `size` bytes starting with "GGUF" (or `magic`), random after; returns its sha256.
export async function makeFile(dir, name, size, magic = 'GGUF') {
  const data = randomBytes(size);
  data.write(magic, 0, 'latin1');
  await writeFile(join(dir, name), data);
  return { path: join(dir, name), size, sha256: createHash('sha256').update(data).digest('hex'), data };
}

// The app served from the repo, /models/ from `modelsDir`. Every request is logged as
// {method, path, range}; `faults` maps a path to {status}, {cutAfter} or {stallAfter} (bytes of
// body), {ignoreRange} or {fakeLength}, optionally {times} (then it applies to that many
// requests only, and is replaced by its {then} fault if it has one).
// `engine` picks what /pkg/ serves: 'none' (the default: no engine, so tests of the store and
// the shell see "engine missing" after a download), 'stub' (tests/web/stub_engine/, a protocol
// double) or 'real' (the wasm engine built into pkg/ by `make pkg`); `pkgDir` serves another
// directory there instead.
export async function startServer(t, { modelsDir, engine = 'none', pkgDir }) {
  const requests = [];
  const faults = new Map();
  const mounts = [];
  if (modelsDir) mounts.push(['/models/', modelsDir]);
  const pkg = pkgDir ?? { none: join(REPO, 'tests', 'web', 'no_engine'), stub: join(REPO, 'tests', 'web', 'stub_engine'), real: join(REPO, 'pkg') }[engine];
  if (!pkg) throw new Error(`unknown engine ${engine}`);
  mounts.push(['/pkg/', pkg]);
  const options = { root: REPO, mounts };
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://localhost').pathname;
    requests.push({ method: req.method, path, range: req.headers.range ?? null });
    const fault = faults.get(path);
    if (fault?.times !== undefined && --fault.times <= 0) {
      if (fault.then) faults.set(path, fault.then);
      else faults.delete(path);
    }
    if (fault?.fakeLength) {
      // Announces a huge file, sends its magic, then waits for the client to give up.
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': fault.fakeLength });
      res.write('GGUF');
      return;
    }
    if (fault?.status) {
      res.writeHead(fault.status, { 'Content-Type': 'text/plain' });
      res.end(`fault ${fault.status}\n`);
      return;
    }
    if (fault?.cutAfter !== undefined) cutAfter(res, fault.cutAfter);
    if (fault?.stallAfter !== undefined) cutAfter(res, fault.stallAfter, { stall: true });
    if (fault?.ignoreRange) delete req.headers.range;
    handleRequest(req, res, options).catch(() => res.destroy());
  });
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((done) => server.listen(0, HOST, done));
  t.after(() => new Promise((done) => {
    for (const socket of sockets) socket.destroy();
    server.close(done);
  }));
  return { origin: `http://${HOST}:${server.address().port}`, requests, faults };
}

// How long a cut connection stays open after its last byte. A fetch body stream that errors
// discards what the page has not read yet, so dropping at once makes the number of bytes that
// arrive depend on how busy the machine is; with the grace the page reads all it was sent.
const CUT_GRACE_MS = 1000;

// Sends the headers and `limit` bytes of body, then drops the connection (or, with `stall`,
// keeps it open and sends nothing more).
function cutAfter(res, limit, { stall = false } = {}) {
  let sent = 0;
  const write = res.write.bind(res);
  res.write = (chunk, ...rest) => {
    if (res.destroyed) return false;
    const buffer = Buffer.from(chunk);
    if (sent + buffer.length < limit) {
      sent += buffer.length;
      return write(buffer, ...rest);
    }
    write(buffer.subarray(0, limit - sent), () => stall || setTimeout(() => res.socket?.destroy(), CUT_GRACE_MS));
    sent = limit;
    return false;
  };
}

// A fresh browser profile; closed (and deleted) when the test ends.
export async function launch(t, options = {}) {
  const profile = await mkdtemp(join(tmpdir(), 'burrow-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 375, height: 812 },
    ...options,
  });
  // Close first: Chromium writes into its profile until it exits.
  t.after(async () => {
    await context.close();
    await rm(profile, { recursive: true, force: true, maxRetries: 3 });
  });
  return context;
}

export async function firstPage(context) {
  return context.pages()[0] ?? context.newPage();
}

// Opens the app in a fresh profile. `quotaBytes` caps the origin's real storage quota (CDP); it
// must be set before the origin first opens IndexedDB, and `storage.estimate()` does not show it.
export async function openApp(t, server, options = {}) {
  const context = await launch(t, options.context);
  if (options.initScript) await context.addInitScript(options.initScript);
  const page = await firstPage(context);
  if (options.quotaBytes) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: options.quotaBytes });
  }
  await page.goto(`${server.origin}/`);
  return { context, page };
}

// store.download in the page; returns {meta} or {error: {code, message}}, and progress events.
/** Serves `files` ([name, size, magic?]) under /models/ and opens the app on a fresh profile. */
export async function serveModels(t, files, options) {
  const dir = await tempDir(t);
  const made = {};
  for (const [name, size, magic] of files) made[name] = await makeFile(dir, name, size, magic);
  const server = await startServer(t, { modelsDir: dir });
  const { context, page } = await openApp(t, server, options);
  return { dir, made, server, context, page, url: (name) => `${server.origin}/models/${name}` };
}

export function storeDownload(page, url, options = {}) {
  return page.evaluate(async ({ url, options }) => {
    const store = await import('/web/store.js');
    const events = [];
    try {
      const meta = await store.download(url, { ...options, onProgress: (event) => events.push(event) });
      return { meta, events };
    } catch (error) {
      return { error: { code: error.code, message: error.message, name: error.name }, events };
    }
  }, { url, options });
}

// Every model record and the number of chunks stored in IndexedDB.
export function storeState(page) {
  return page.evaluate(async () => {
    const store = await import('/web/store.js');
    const db = await store.openDatabase();
    const chunks = await store.requestResult(db.transaction('chunks').objectStore('chunks').count());
    const models = await store.list();
    return { chunks, models: models.map(({ url, complete, chunksDone, sha256 }) => ({ url, complete, chunksDone, sha256 })) };
  });
}

// The sha256 (WebCrypto, independent of web/sha256.js) and chunk sizes of what readChunks yields.
export function storedDigest(page, url) {
  return page.evaluate(async (url) => {
    const store = await import('/web/store.js');
    const parts = [];
    for await (const chunk of store.readChunks(url)) parts.push(chunk);
    const whole = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    let offset = 0;
    for (const part of parts) {
      whole.set(part, offset);
      offset += part.length;
    }
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', whole));
    return { sizes: parts.map((part) => part.length), sha256: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('') };
  }, url);
}

// The saved conversation (the latest one), as [role, content] pairs.
export const savedConversation = (page) => page.evaluate(async () => {
  const conversations = await import('/web/conversations.js');
  return (await conversations.latest())?.messages.map((m) => [m.role, m.content]) ?? [];
});

export const byTestId = (page, id) => page.locator(`[data-testid="${id}"]`);

// Picks "Paste a GGUF URL", enters `url` and presses Load.
export async function loadFromUi(page, url) {
  await showSetup(page);
  await byTestId(page, 'model-picker').selectOption('custom');
  await byTestId(page, 'model-url').fill(url);
  await byTestId(page, 'load').click();
}

export const ENGINE_MISSING = 'engine not built (run make serve)';

// Unfolds the model card and settings where a ready model has folded them into the one-line header.
export async function showSetup(page) {
  const toggle = byTestId(page, 'switch-model');
  if (await toggle.isVisible() && (await toggle.getAttribute('aria-expanded')) === 'false') await toggle.click();
}

// Opens a settings panel ('Settings' or 'Storage'), unfolded first.
export async function openPanel(page, name) {
  await showSetup(page);
  const panel = page.locator('details.panel', { has: page.locator('summary', { hasText: name }) });
  if (!(await panel.evaluate((details) => details.open))) await panel.locator('summary').click();
}

// What Burrow keeps on this device: counts of stored records, Cache Storage, settings, service workers.
export const storedEverything = (page) => page.evaluate(async () => {
  const store = await import('/web/store.js');
  const db = await store.openDatabase();
  const count = (name) => store.requestResult(db.transaction(name).objectStore(name).count());
  return {
    models: await count('models'),
    chunks: await count('chunks'),
    conversations: await count('conversations'),
    caches: await caches.keys(),
    settings: Object.keys(localStorage),
    serviceWorkers: (await navigator.serviceWorker.getRegistrations()).length,
  };
});

const CORS = { 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': 'Content-Range, Content-Length, ETag' };

// Answers the catalogue's Hub URLs from `files` (url → bytes), with byte ranges as the Hub does;
// every request is logged as {name, range}.
export async function serveHub(context, files) {
  const log = [];
  await context.route(/^https:\/\/huggingface\.co\//, (route) => {
    const request = route.request();
    const url = request.url();
    if (request.method() === 'OPTIONS') {
      return route.fulfill({ status: 204, headers: { ...CORS, 'Access-Control-Allow-Headers': 'range', 'Access-Control-Allow-Methods': 'GET' } });
    }
    const range = request.headers().range ?? null;
    log.push({ name: url.slice(url.lastIndexOf('/') + 1), range });
    const body = files[url];
    if (!body) return route.fulfill({ status: 404, headers: CORS, body: 'not here' });
    const match = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
    if (!match) return route.fulfill({ status: 200, headers: { ...CORS, 'Content-Length': String(body.length) }, body });
    const start = Number(match[1]);
    const end = Math.min(body.length - 1, match[2] ? Number(match[2]) : body.length - 1);
    return route.fulfill({
      status: 206,
      headers: { ...CORS, 'Content-Range': `bytes ${start}-${end}/${body.length}`, 'Content-Length': String(end - start + 1) },
      body: body.subarray(start, end + 1),
    });
  });
  return log;
}

function pngChunk(type, data) {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

// A PNG of `width` × `height`: 8-bit RGB from `pixel(x, y)`, or (gray) 1-bit black, which stays a
// few KB however many pixels it has. `idat` replaces the compressed pixels (a broken file).
export function png(width, height, { pixel, idat } = {}) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = pixel ? 8 : 1; // bit depth
  header[9] = pixel ? 2 : 0; // RGB or gray
  let data = idat;
  if (!data) {
    const row = pixel ? 1 + 3 * width : 1 + Math.ceil(width / 8);
    const raw = Buffer.alloc(row * height);
    if (pixel) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) raw.set(pixel(x, y), y * row + 1 + 3 * x);
      }
    }
    data = deflateSync(raw);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header), pngChunk('IDAT', data), pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

// What the real-engine tests need built, with the command that builds it.
export const BUILT = {
  pkg: [join(REPO, 'pkg', 'burrow_web_bg.wasm'), 'make pkg'],
  burrow: [join(REPO, 'target', 'release', 'burrow'), 'make build'],
  model: [join(REPO, '.cache', 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf'), 'make model'],
};

// Fails the test, naming the command, unless each of `needs` (BUILT's entries) exists.
export function requireBuilt(...needs) {
  for (const [path, how] of needs) assert.ok(existsSync(path), `${path} is missing (${how})`);
}
