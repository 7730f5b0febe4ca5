// Shared test helpers: the app server with request log and fault injection, GGUF-like test
// files, and a fresh headless Debian Chromium per test.

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { handleRequest, HOST } from '../../scripts/web_serve.mjs';

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
// {method, path, range}; `faults` maps a path to {status} or {cutAfter} (bytes of body).
export async function startServer(t, { modelsDir }) {
  const requests = [];
  const faults = new Map();
  const options = { root: REPO, mounts: modelsDir ? [['/models/', modelsDir]] : [] };
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://localhost').pathname;
    requests.push({ method: req.method, path, range: req.headers.range ?? null });
    const fault = faults.get(path);
    if (fault?.status) {
      res.writeHead(fault.status, { 'Content-Type': 'text/plain' });
      res.end(`fault ${fault.status}\n`);
      return;
    }
    if (fault?.cutAfter !== undefined) cutAfter(res, fault.cutAfter);
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

// Sends the headers and `limit` bytes of body, then drops the connection.
function cutAfter(res, limit) {
  let sent = 0;
  const write = res.write.bind(res);
  res.write = (chunk, ...rest) => {
    if (res.destroyed) return false;
    const buffer = Buffer.from(chunk);
    if (sent + buffer.length < limit) {
      sent += buffer.length;
      return write(buffer, ...rest);
    }
    write(buffer.subarray(0, limit - sent), () => res.socket?.destroy());
    sent = limit;
    return false;
  };
}

// A fresh browser profile; closed (and deleted) when the test ends.
export async function launch(t, options = {}) {
  const profile = await tempDir(t);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 375, height: 812 },
    ...options,
  });
  t.after(() => context.close());
  return context;
}

export async function firstPage(context) {
  return context.pages()[0] ?? context.newPage();
}

export function readAll(path) {
  return new Promise((done, fail) => {
    const parts = [];
    createReadStream(path).on('data', (part) => parts.push(part)).on('end', () => done(Buffer.concat(parts))).on('error', fail);
  });
}
