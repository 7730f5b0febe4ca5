#!/usr/bin/env node
// First-visit and warm-start benchmark (not a test), in headless Chromium on fresh profiles:
// - first visit: the bytes the server sends (headers included) until the page is usable and the
//   service worker has cached the app and the engine, before any model byte; and the time until
//   the page is interactive (its script ran). Measured as web_serve.mjs serves the app (the
//   precompressed engine, `make pkg`) and, as the peer in the same run, with the same files sent
//   uncompressed;
// - warm start: with the default model stored, from opening the app to "ready".
// Prints the results and rewrites the first-visit section of BENCHMARKS.md.
//
//   node scripts/bench/first_visit.mjs [--no-write]

import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { handleRequest, HOST } from '../web_serve.mjs';
import { CHROMIUM, CHROMIUM_ARGS } from '../../tests/web/harness.mjs';
import { gitRevision, writeSection } from './report.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const MODEL_DIR = join(REPO, '.cache', 'models');
const BENCHMARKS = join(REPO, 'BENCHMARKS.md');
const SECTION = 'first-visit';
const COMMAND = 'node scripts/bench/first_visit.mjs';
// The goal for a first visit, before the model download starts.
const GOAL_BYTES = 3e6;
// A phone-sized window, as the app is used.
const VIEWPORT = { width: 390, height: 844 };
const LOAD_TIMEOUT_MS = 600_000;
const MB = 1e6;

// The app and /models/, counting the bytes written to every connection; `compress: false` serves
// every file uncompressed (the peer).
async function startServer() {
  const state = { compress: true, sent: 0, requests: [] };
  const options = { root: REPO, mounts: [['/models/', MODEL_DIR]] };
  const server = createServer((req, res) => {
    if (!state.compress) delete req.headers['accept-encoding'];
    state.requests.push(new URL(req.url, 'http://localhost').pathname);
    handleRequest(req, res, options).catch(() => res.destroy());
  });
  server.on('connection', (socket) => {
    let counted = 0;
    // Counted as it goes: a kept-alive connection may outlive the measurement.
    const count = () => {
      state.sent += socket.bytesWritten - counted;
      counted = socket.bytesWritten;
    };
    socket.on('close', count);
    state.flush = [...(state.flush ?? []), count];
  });
  await new Promise((done) => server.listen(0, HOST, done));
  const total = () => {
    for (const count of state.flush ?? []) count();
    return state.sent;
  };
  const reset = (compress) => {
    total();
    Object.assign(state, { compress, sent: 0, requests: [] });
  };
  return { server, origin: `http://${HOST}:${server.address().port}`, total, reset, state };
}

async function withProfile(run) {
  const profile = await mkdtemp(join(tmpdir(), 'burrow-first-visit-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: VIEWPORT });
  try {
    return await run(context, context.pages()[0] ?? await context.newPage());
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true, maxRetries: 3 });
  }
}

const status = (page, text, timeout = LOAD_TIMEOUT_MS) => page.waitForFunction(
  (text) => document.querySelector('[data-testid="model-status"]').textContent.includes(text), text, { timeout });

// Bytes and time of a first visit, up to the service worker having cached the app and engine.
async function firstVisit(server, compress) {
  server.reset(compress);
  return withProfile(async (context, page) => {
    const started = performance.now();
    await page.goto(`${server.origin}/`);
    // The app's script has run: the picker holds the catalogue.
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="model-picker"] option').length > 2);
    const interactiveSeconds = (performance.now() - started) / 1000;
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.waitForLoadState('networkidle');
    const bytes = server.total();
    const modelBytesAsked = server.state.requests.some((path) => path.startsWith('/models/'));
    return { bytes, interactiveSeconds, requests: server.state.requests.length, modelBytesAsked };
  });
}

// From opening the installed app, with the default model stored, to "ready".
async function warmStart(server) {
  server.reset(true);
  return withProfile(async (context, page) => {
    await page.goto(`${server.origin}/`);
    await page.locator('[data-testid="load"]').click();
    await status(page, 'ready');
    const started = performance.now();
    await page.reload();
    await status(page, 'ready');
    return { seconds: (performance.now() - started) / 1000 };
  });
}

const fixed = (value, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');

function report({ date, revision, chromiumVersion, compressed, plain, warm }) {
  const ratio = compressed.bytes / plain.bytes;
  return [
    '## First visit and warm start (browser)',
    '',
    `\`${COMMAND}\` on ${date}, revision ${revision}, ${chromiumVersion} headless, ${VIEWPORT.width} × ${VIEWPORT.height}, `
      + 'a fresh profile per visit, served from this machine by scripts/web_serve.mjs (no network latency: times are this '
      + 'machine\'s, bytes are what any network would carry).',
    '',
    '| first visit, until the service worker has cached the app and the engine | bytes sent | time to interactive |',
    '|---|---:|---:|',
    `| as served (precompressed engine, \`make pkg\`) | ${fixed(compressed.bytes / MB)} MB | ${fixed(compressed.interactiveSeconds)} s |`,
    `| peer: the same files uncompressed | ${fixed(plain.bytes / MB)} MB | ${fixed(plain.interactiveSeconds)} s |`,
    '',
    `Ratio of bytes, as served / uncompressed: ${fixed(ratio, 3)}×. Goal ≤ ${fixed(GOAL_BYTES / MB, 1)} MB before the model `
      + `download: ${compressed.bytes <= GOAL_BYTES ? 'met' : 'not met'}${compressed.modelBytesAsked ? ' (a model byte was asked for!)' : ''}.`,
    '',
    `Warm start (${MODEL_FILE} stored, SwiftShader's WebGPU): ${fixed(warm.seconds, 1)} s from opening the app to "ready".`,
  ].join('\n');
}

async function main() {
  const write = !process.argv.includes('--no-write');
  for (const [path, how] of [[join(MODEL_DIR, MODEL_FILE), 'make model'], [join(REPO, 'pkg', 'burrow_web_bg.wasm.br'), 'make pkg']]) {
    if (!existsSync(path)) throw new Error(`${path} is missing (${how})`);
  }
  const server = await startServer();
  try {
    const compressed = await firstVisit(server, true);
    const plain = await firstVisit(server, false);
    process.stderr.write('warm start (loads the default model once, then reopens the app)...\n');
    const warm = await warmStart(server);
    const chromiumVersion = await withProfile(async (context) => `Chromium ${context.browser()?.version() ?? ''}`.trim());
    const text = report({
      date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      revision: gitRevision(REPO),
      chromiumVersion,
      compressed,
      plain,
      warm,
    });
    process.stdout.write(`${text}\n`);
    if (write) writeSection(BENCHMARKS, SECTION, text);
  } finally {
    server.server.close();
  }
}

await main();
