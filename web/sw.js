// Service worker: keeps the app shell available offline. Model bytes never go into Cache Storage
// (they live in IndexedDB, chunked): caching a 100 MB+ response here would double the storage
// used and can exceed the quota.

const CACHE_PREFIX = 'burrow-shell-';

// The app's build id, written by `make pkg` into pkg/build.js: a hash of the shell files and the
// engine. The browser compares imported scripts byte for byte when it checks this worker for
// updates, so any change to the app installs the worker again under a new cache name. Absent (no
// engine built), the cache is named for that.
try {
  importScripts(new URL('pkg/build.js', self.registration.scope).href);
} catch {
  self.BURROW_BUILD = undefined;
}
const VERSION = `${CACHE_PREFIX}${self.BURROW_BUILD ?? 'no-engine'}`;

// Paths relative to the scope (the app root).
const SHELL = [
  './',
  'index.html',
  'manifest.json',
  'web/app.js',
  'web/app.css',
  'web/burrow.js',
  'web/store.js',
  'web/sha256.js',
  'web/catalogue.js',
  'web/conversations.js',
  'web/device.js',
  'web/images.js',
  'web/markdown.js',
  'web/vendor/markdown-it.mjs',
  'web/worker.js',
  'web/icons/icon-192.png',
  'web/icons/icon-512.png',
  'web/icons/icon-maskable-512.png',
];
// The wasm engine, cached when it has been built (`make serve`); absent in a fresh checkout.
const OPTIONAL = ['pkg/burrow_web.js', 'pkg/burrow_web_bg.wasm'];
// Anything bigger is not a shell file (the engine's wasm is ~28 MB); refuse to cache it.
const MAX_CACHED_BYTES = 64 * 1024 * 1024;
const MODEL_EXTENSION = '.gguf';

const scopeUrl = (path) => new URL(path, self.registration.scope).href;
const shellUrls = new Set([...SHELL, ...OPTIONAL].map(scopeUrl));

async function cacheOptional(cache, url) {
  const response = await fetch(url, { cache: 'no-cache' }).catch(() => null);
  const length = Number(response?.headers.get('Content-Length') ?? 0);
  if (response?.ok && length <= MAX_CACHED_BYTES) await cache.put(url, response);
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(VERSION);
    // `no-cache` so a new VERSION never precaches stale files from the HTTP cache.
    await cache.addAll(SHELL.map((path) => new Request(scopeUrl(path), { cache: 'no-cache' })));
    await Promise.all(OPTIONAL.map((path) => cacheOptional(cache, scopeUrl(path))));
    // The first version takes over at once; a new one waits until the page says the person
    // accepted it (swapping files under a running chat could mix two versions of the engine).
    if (!self.registration.active) await self.skipWaiting();
  })());
});

self.addEventListener('message', (event) => {
  if (event.data?.type === 'skip-waiting') self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((name) => name.startsWith(CACHE_PREFIX) && name !== VERSION).map((name) => caches.delete(name)));
    await self.clients.claim();
  })());
});

function isModelRequest(request, url) {
  return request.headers.has('Range') || url.pathname.endsWith(MODEL_EXTENSION) || url.pathname.includes('/models/');
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  // Model downloads go straight to the network, untouched.
  if (isModelRequest(request, url)) return;
  const key = request.mode === 'navigate' ? scopeUrl('index.html') : url.origin + url.pathname;
  if (!shellUrls.has(key) && request.mode !== 'navigate') return;
  event.respondWith((async () => {
    const cached = await caches.match(key, { cacheName: VERSION });
    if (cached) return cached;
    return fetch(request);
  })());
});
