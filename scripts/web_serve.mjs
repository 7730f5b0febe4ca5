#!/usr/bin/env node
// Static server for the Burrow web app: correct MIME types (wasm, web manifest), single-range
// requests (206 + Content-Range), ETag/Last-Modified validators, bound to 127.0.0.1.
//
//   node scripts/web_serve.mjs ROOT [--mount /models/=.cache/models]... [--allow PATH]... [--isolate]
//   BURROW_PORT (default 8080) picks the port.
//   From ROOT only the app is served (APP_FILES); --allow adds a file or a folder ("PATH/") under
//   ROOT. A mount serves its whole folder under its URL prefix, in place of ROOT.
//   --isolate makes every page cross-origin isolated (COOP same-origin + COEP require-corp), which
//   SharedArrayBuffer and so multithreaded wasm (wllama, in scripts/bench/) need. Off by default.
//
// Paths with a segment starting with "." (.git, .cache) are never served, nor a symlink that leads
// out of ROOT or its mount, nor anything asked for by a Host other than the loopback address.

import { createServer } from 'node:http';
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib';
import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_PORT = 8080;
export const HOST = '127.0.0.1';
// The names a browser on this machine reaches the server by. Any other Host header is a page
// from elsewhere whose name was rebound to 127.0.0.1 (DNS rebinding): refused.
const LOCAL_NAMES = [HOST, 'localhost', '[::1]'];
// Browsers leave the port out of Host on the default one.
const HTTP_DEFAULT_PORT = 80;
// What ROOT serves: the app and the built engine, not the rest of the repository (sources,
// target/, node_modules/, tests). A name ending in "/" is a folder.
export const APP_FILES = Object.freeze(['index.html', 'manifest.json', 'web/', 'pkg/']);
const INDEX_FILE = 'index.html';
// Precompressed siblings ("burrow_web_bg.wasm.br", written by `make pkg`), in order of preference,
// served with Content-Encoding to a browser that accepts them.
const ENCODINGS = [['br', '.br'], ['gzip', '.gz']];
// The app's own text files (small) are compressed here instead, once per version of the file.
const COMPRESSIBLE_TYPES = new Set(['.html', '.js', '.mjs', '.css', '.json', '.webmanifest', '.svg']);
const COMPRESS_AT_MOST_BYTES = 4 * 1024 * 1024;
// path and encoding → {version, body}: the latest version of each file only.
const compressedCache = new Map();

export const MIME_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.gguf': 'application/octet-stream',
};
const MANIFEST_FILE = 'manifest.json';
// Sent with --isolate; every resource is same-origin, so require-corp blocks nothing we serve.
export const ISOLATION_HEADERS = Object.freeze({
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
});
const DEFAULT_TYPE = 'application/octet-stream';
// index.html sets the app's Content-Security-Policy in a <meta> tag, so that the copy the service
// worker serves offline carries it too. A worker takes its policy from its own script's response,
// not from the page, so JavaScript responses carry the same policy (it covers web/worker.js and
// web/sw.js; other scripts ignore it). tests/web/csp.test.mjs checks the two agree.
export const APP_POLICY = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self' https:",
  "worker-src 'self'",
  "manifest-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');
// What a <meta> policy cannot say: no other site may frame the app (clickjacking).
export const PAGE_POLICY = "frame-ancestors 'none'";

function contentType(path) {
  if (path.endsWith(`/${MANIFEST_FILE}`) || path === MANIFEST_FILE) return 'application/manifest+json';
  return MIME_TYPES[extname(path).toLowerCase()] ?? DEFAULT_TYPE;
}

// Whether the Host header names this server, listening on `port`.
function isLocalHost(host, port) {
  const name = host?.toLowerCase();
  return LOCAL_NAMES.some((local) => name === `${local}:${port}` || (port === HTTP_DEFAULT_PORT && name === local));
}

// `rest` (a decoded URL path) under `base`, or null when it would leave it.
function under(base, rest) {
  const path = resolve(base, `.${rest.startsWith('/') ? rest : `/${rest}`}`);
  return path.startsWith(base + sep) ? { path, base } : null;
}

// Maps a URL path onto a file under a mount or, when allowed, under root: {path, base}, where
// base is the folder it must stay in; null when it may not be served.
function resolvePath(urlPath, root, mounts, allowed) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.split('/').some((part) => part.startsWith('.'))) return null;
  for (const [prefix, dir] of mounts) {
    if (decoded.startsWith(prefix)) return under(dir, decoded.slice(prefix.length));
  }
  const target = under(root, decoded);
  if (!target) return null;
  const name = target.path.slice(root.length + 1).split(sep).join('/');
  return allowed.some((entry) => (entry.endsWith('/') ? name.startsWith(entry) : name === entry)) ? target : null;
}

// The file `path` names (a folder's index.html) by its real path, which must lie inside the real
// `base`, so that a symlink cannot lead out of what is served: {name, path, info}, where name is
// the path asked for (its type comes from that name); null when there is no such file.
async function findFile(path, base) {
  try {
    const realBase = await realpath(base);
    let name = path;
    let real = await realpath(path);
    let info = await stat(real);
    if (info.isDirectory()) {
      name = join(path, INDEX_FILE);
      real = await realpath(name);
      info = await stat(real);
    }
    return real.startsWith(realBase + sep) ? { name, path: real, info } : null;
  } catch {
    return null;
  }
}

// The precompressed sibling of `file` that the request accepts, not older than the file (a stale
// one is never served): {encoding, path, info}, or null. A Range request gets the file itself.
async function precompressed(file, headers) {
  if (headers.range) return null;
  const accepted = acceptedEncodings(headers);
  for (const [encoding, suffix] of ENCODINGS) {
    if (!accepted.includes(encoding)) continue;
    const info = await stat(file.path + suffix).catch(() => null);
    if (info?.isFile() && info.mtimeMs >= file.info.mtimeMs) return { encoding, path: file.path + suffix, info };
  }
  return null;
}

// The encodings the request accepts, in the order the server prefers them.
function acceptedEncodings(headers) {
  const accepted = (headers['accept-encoding'] ?? '').split(',').map((part) => part.split(';')[0].trim().toLowerCase());
  return ENCODINGS.map(([encoding]) => encoding).filter((encoding) => accepted.includes(encoding));
}

function isCompressibleText(file) {
  return COMPRESSIBLE_TYPES.has(extname(file.name).toLowerCase()) && file.info.size <= COMPRESS_AT_MOST_BYTES;
}

// An app text file compressed in memory for a request that accepts it (none for a Range
// request): {encoding, body, info}, or null. Kept per version of the file.
async function compressText(file, headers) {
  if (headers.range || !isCompressibleText(file)) return null;
  const [encoding] = acceptedEncodings(headers);
  if (!encoding) return null;
  const key = `${file.path}\0${encoding}`;
  const version = `${file.info.mtimeMs}\0${file.info.size}`;
  let body = compressedCache.get(key)?.version === version ? compressedCache.get(key).body : null;
  if (!body) {
    const data = await readFile(file.path);
    body = encoding === 'br'
      ? brotliCompressSync(data, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: zlibConstants.BROTLI_MAX_QUALITY } })
      : gzipSync(data, { level: 9 });
    compressedCache.set(key, { version, body });
  }
  return { encoding, body, info: { size: body.length, mtimeMs: file.info.mtimeMs, mtime: file.info.mtime } };
}

async function hasPrecompressed(file) {
  const found = await Promise.all(ENCODINGS.map(([, suffix]) => stat(file.path + suffix).then(() => true, () => false)));
  return found.some(Boolean);
}

// One "bytes=a-b" range (the only form the app sends); null = serve the whole file.
function parseRange(header, size) {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return { invalid: true };
  let start;
  let end;
  if (match[1] === '') {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start >= size || start > end) return { invalid: true };
  return { start, end };
}

function send(res, status, text) {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// Serves one request from APP_FILES and `allow` (more names, as in APP_FILES) under `root`
// (absolute) and from `mounts` ([[urlPrefix, absoluteDir]]); `isolate` adds the cross-origin
// isolation headers to every response. Only requests to the port it was reached on, by a local
// name, are answered.
export async function handleRequest(req, res, { root, mounts = [], allow = [], isolate = false }) {
  if (!isLocalHost(req.headers.host, req.socket.localPort)) return send(res, 421, 'Unknown host\n');
  if (isolate) for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value);
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return send(res, 405, 'Method not allowed\n');
  }
  const { pathname } = new URL(req.url, 'http://localhost');
  const urlPath = pathname.endsWith('/') ? `${pathname}${INDEX_FILE}` : pathname;
  const target = resolvePath(urlPath, root, mounts, [...APP_FILES, ...allow]);
  const file = target && await findFile(target.path, target.base);
  if (!file) return send(res, 404, 'Not found\n');
  const { name } = file;
  const encoded = await precompressed(file, req.headers) ?? await compressText(file, req.headers);
  const { path, info } = encoded ?? file;

  const etag = `"${encoded ? `${encoded.encoding}-` : ''}${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
  const lastModified = info.mtime.toUTCString();
  const type = contentType(name);
  const headers = {
    'Content-Type': type,
    'Accept-Ranges': 'bytes',
    ETag: etag,
    'Last-Modified': lastModified,
    // Always revalidate: the service worker, not the HTTP cache, keeps the app offline.
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  };
  if (encoded) {
    headers['Content-Encoding'] = encoded.encoding;
    // A compressed body has no byte ranges of the file itself.
    delete headers['Accept-Ranges'];
  }
  // Caches must not give one encoding to a browser that asked for another.
  if (encoded || isCompressibleText(file) || await hasPrecompressed(file)) headers.Vary = 'Accept-Encoding';
  if (type === MIME_TYPES['.html']) headers['Content-Security-Policy'] = PAGE_POLICY;
  if (type === MIME_TYPES['.js']) headers['Content-Security-Policy'] = APP_POLICY;
  // web/sw.js controls the whole app, above its own folder.
  if (name.endsWith(`${sep}sw.js`)) headers['Service-Worker-Allowed'] = '/';
  if (req.headers['if-none-match'] === etag && !req.headers.range) {
    res.writeHead(304, headers);
    return res.end();
  }

  let start = 0;
  let end = info.size - 1;
  let status = 200;
  const rangeHeader = req.headers.range;
  const ifRange = req.headers['if-range'];
  if (rangeHeader && !encoded && (!ifRange || ifRange === etag || ifRange === lastModified)) {
    const range = parseRange(rangeHeader, info.size);
    if (range.invalid) {
      res.writeHead(416, { 'Content-Range': `bytes */${info.size}`, 'Content-Type': 'text/plain; charset=utf-8' });
      return res.end();
    }
    ({ start, end } = range);
    status = 206;
    headers['Content-Range'] = `bytes ${start}-${end}/${info.size}`;
  }
  headers['Content-Length'] = info.size === 0 ? 0 : end - start + 1;
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || info.size === 0) return res.end();
  if (encoded?.body) return res.end(encoded.body);
  const stream = createReadStream(path, { start, end });
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  stream.pipe(res);
}

export function parseArgs(argv) {
  const mounts = [];
  const allow = [];
  let root = null;
  let isolate = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--isolate') {
      isolate = true;
    } else if (argv[i] === '--mount') {
      const spec = argv[++i] ?? '';
      const eq = spec.indexOf('=');
      if (eq <= 0) throw new Error(`--mount expects /prefix/=dir, got "${spec}"`);
      let prefix = spec.slice(0, eq);
      if (!prefix.startsWith('/')) prefix = `/${prefix}`;
      if (!prefix.endsWith('/')) prefix = `${prefix}/`;
      mounts.push([prefix, resolve(spec.slice(eq + 1))]);
    } else if (argv[i] === '--allow') {
      const name = (argv[++i] ?? '').replace(/^\/+/, '');
      if (!name) throw new Error('--allow expects a path under ROOT (a folder ends in "/")');
      allow.push(name);
    } else if (root === null) {
      root = resolve(argv[i]);
    } else {
      throw new Error(`unexpected argument "${argv[i]}"`);
    }
  }
  if (root === null) throw new Error('usage: web_serve.mjs ROOT [--mount /prefix/=dir]... [--allow PATH]... [--isolate]');
  return { root, mounts, allow, isolate };
}

function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`web_serve: ${error.message}\n`);
    process.exit(2);
  }
  const port = Number(process.env.BURROW_PORT ?? DEFAULT_PORT);
  const server = createServer((req, res) => {
    handleRequest(req, res, options).catch(() => res.destroy());
  });
  server.on('error', (error) => {
    process.stderr.write(`web_serve: ${error.message}\n`);
    process.exit(1);
  });
  server.listen(port, HOST, () => {
    const isolated = options.isolate ? ', cross-origin isolated' : '';
    process.stdout.write(`Burrow: http://${HOST}:${server.address().port}/ (serving ${options.root}${isolated})\n`);
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
