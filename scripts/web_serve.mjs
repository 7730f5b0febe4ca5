#!/usr/bin/env node
// Static server for the Burrow web app: correct MIME types (wasm, web manifest), single-range
// requests (206 + Content-Range), ETag/Last-Modified validators, bound to 127.0.0.1.
//
//   node scripts/web_serve.mjs ROOT [--mount /models/=.cache/models] ... [--isolate]
//   BURROW_PORT (default 8080) picks the port.
//   --isolate makes every page cross-origin isolated (COOP same-origin + COEP require-corp), which
//   SharedArrayBuffer and so multithreaded wasm (wllama, in scripts/bench/) need. Off by default.
//
// Paths with a segment starting with "." (.git, .cache) are never served.

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_PORT = 8080;
export const HOST = '127.0.0.1';

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

function contentType(path) {
  if (path.endsWith(`/${MANIFEST_FILE}`) || path === MANIFEST_FILE) return 'application/manifest+json';
  return MIME_TYPES[extname(path).toLowerCase()] ?? DEFAULT_TYPE;
}

// Maps a URL path onto a file under root or a mount; null when it may not be served.
function resolvePath(urlPath, root, mounts) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.split('/').some((part) => part.startsWith('.'))) return null;
  let base = root;
  let rest = decoded;
  for (const [prefix, dir] of mounts) {
    if (decoded.startsWith(prefix)) {
      base = dir;
      rest = decoded.slice(prefix.length);
      break;
    }
  }
  const path = resolve(base, `.${rest.startsWith('/') ? rest : `/${rest}`}`);
  return path === base || path.startsWith(base + sep) ? path : null;
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

// Serves one request from `root` (absolute) and `mounts` ([[urlPrefix, absoluteDir]]); `isolate`
// adds the cross-origin isolation headers to every response.
export async function handleRequest(req, res, { root, mounts = [], isolate = false }) {
  if (isolate) for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value);
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return send(res, 405, 'Method not allowed\n');
  }
  const { pathname } = new URL(req.url, 'http://localhost');
  let path = resolvePath(pathname.endsWith('/') ? `${pathname}index.html` : pathname, root, mounts);
  if (!path) return send(res, 404, 'Not found\n');
  let info;
  try {
    info = await stat(path);
    if (info.isDirectory()) {
      path = join(path, 'index.html');
      info = await stat(path);
    }
  } catch {
    return send(res, 404, 'Not found\n');
  }

  const etag = `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
  const lastModified = info.mtime.toUTCString();
  const headers = {
    'Content-Type': contentType(path),
    'Accept-Ranges': 'bytes',
    ETag: etag,
    'Last-Modified': lastModified,
    // Always revalidate: the service worker, not the HTTP cache, keeps the app offline.
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  };
  // web/sw.js controls the whole app, above its own folder.
  if (path.endsWith(`${sep}sw.js`)) headers['Service-Worker-Allowed'] = '/';
  if (req.headers['if-none-match'] === etag && !req.headers.range) {
    res.writeHead(304, headers);
    return res.end();
  }

  let start = 0;
  let end = info.size - 1;
  let status = 200;
  const rangeHeader = req.headers.range;
  const ifRange = req.headers['if-range'];
  if (rangeHeader && (!ifRange || ifRange === etag || ifRange === lastModified)) {
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
  const stream = createReadStream(path, { start, end });
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  stream.pipe(res);
}

export function parseArgs(argv) {
  const mounts = [];
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
    } else if (root === null) {
      root = resolve(argv[i]);
    } else {
      throw new Error(`unexpected argument "${argv[i]}"`);
    }
  }
  if (root === null) throw new Error('usage: web_serve.mjs ROOT [--mount /prefix/=dir]... [--isolate]');
  return { root, mounts, isolate };
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
