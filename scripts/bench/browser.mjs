#!/usr/bin/env node
// Browser benchmark (not a test): Burrow against wllama (llama.cpp compiled to wasm) on the same
// GGUF, in one headless Chromium run, both pages served from the same cross-origin-isolated origin
// by scripts/web_serve.mjs. Prints the results and rewrites the browser section of BENCHMARKS.md.
//
//   node scripts/bench/browser.mjs [--repeats N] [--burrow-max-tokens N] [--no-write]
//
// wllama: load time, then greedy raw completions of a synthetic 128-token prompt generating 64
// tokens on 2 threads (n_gpu_layers 0), llama.cpp's own timings, median of N runs; plus the same
// short chat Burrow answers. Burrow: load time, one warm-up chat, then that short greedy chat
// (WebGPU on SwiftShader is slow here, so few tokens); decode tok/s is the engine's own figure,
// prefill is prompt tokens / time to the first streamed token unless the API reports it.

import { createServer } from 'node:http';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { handleRequest, HOST } from '../web_serve.mjs';
import { gitRevision, writeSection } from './report.mjs';
// The tests' Chromium launch: no network side traffic, SwiftShader's WebGPU adapter.
import { CHROMIUM, CHROMIUM_ARGS } from '../../tests/web/harness.mjs';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const MODEL_DIR = join(REPO, '.cache', 'models');
const WLLAMA_DIR = join(REPO, 'node_modules', '@wllama', 'wllama');
const BENCHMARKS = join(REPO, 'BENCHMARKS.md');
const SECTION = 'browser';
const COMMAND = 'node scripts/bench/browser.mjs';
// The two benchmark pages, served from the repository beside the app.
const WLLAMA_PAGE = 'scripts/bench/wllama.html';
const BURROW_PAGE = 'scripts/bench/burrow.html';

const WLLAMA_THREADS = 2;
const PROMPT_TOKENS = 128;
const GEN_TOKENS = 64;
const DEFAULT_REPEATS = 3;
// wllama's completion API takes text, not token ids: a pangram repeated is PROMPT_TOKENS tokens
// with this model's tokenizer (10 per sentence; checked against llama.cpp's prompt_n below).
const PANGRAM = 'The quick brown fox jumps over the lazy dog.';
const PROMPT_TEXT = `${Array(12).fill(PANGRAM).join(' ')} The quick brown fox jumps over the lazy`;
// Burrow decodes ~0.1 tok/s on SwiftShader: a short chat keeps the run within minutes.
const DEFAULT_BURROW_MAX_TOKENS = 8;
const BURROW_WARMUP_TOKENS = 2;
const CHAT = [{ role: 'user', content: 'What is the capital of France?' }];
const WARMUP_CHAT = [{ role: 'system', content: 'Warm up.' }, { role: 'user', content: 'Say hi.' }];
const WLLAMA_TIMEOUT_MS = 10 * 60_000;
const BURROW_TIMEOUT_MS = 60 * 60_000;
// CPU use by anything else, sampled just before the run: above this the machine was not quiet.
// (The load average lags by minutes, so it also counts the previous benchmark.)
const BUSY_SAMPLE_MS = 3000;
const QUIET_CPU_FRACTION = 0.1;
const OWN_SAMPLE_MS = 1000;
// /proc/PID/stat counts CPU time in clock ticks of 10 ms (USER_HZ is 100 on Linux).
const MS_PER_TICK = 10;
// Numeric fields of a chat completion chunk that are not measurements.
const RESPONSE_METADATA = new Set(['created']);
// Goals from the performance issue (native, against llama.cpp), applied here against wllama.
const GOAL_DECODE = 1.0;
const GOAL_PREFILL = 0.5;

function parseArgs(argv) {
  const options = { repeats: DEFAULT_REPEATS, burrowMaxTokens: DEFAULT_BURROW_MAX_TOKENS, write: true };
  for (let i = 0; i < argv.length; i++) {
    const positive = () => {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new Error(`${argv[i - 1]} expects a positive integer`);
      return value;
    };
    if (argv[i] === '--repeats') options.repeats = positive();
    else if (argv[i] === '--burrow-max-tokens') options.burrowMaxTokens = positive();
    else if (argv[i] === '--no-write') options.write = false;
    else throw new Error(`unknown argument "${argv[i]}" (usage: ${COMMAND} [--repeats N] [--burrow-max-tokens N] [--no-write])`);
  }
  return options;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const fixed = (value, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
const loadAverage = () => loadavg().map((v) => v.toFixed(2)).join(' ');

// The app, pkg/, the bench pages, /models/ and wllama's ES module, cross-origin isolated so that
// wllama gets SharedArrayBuffer (threads); Burrow runs on the same origin under the same headers.
async function startServer() {
  const options = {
    root: REPO,
    mounts: [['/models/', MODEL_DIR], ['/wllama/', join(WLLAMA_DIR, 'esm')]],
    allow: [WLLAMA_PAGE, BURROW_PAGE],
    isolate: true,
  };
  const server = createServer((req, res) => {
    handleRequest(req, res, options).catch(() => res.destroy());
  });
  await new Promise((done) => server.listen(0, HOST, done));
  return { server, origin: `http://${HOST}:${server.address().port}` };
}

// page.evaluate has no timeout of its own: a stuck engine would hang the run.
async function withTimeout(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms / 60_000} minutes`)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function openPage(context, origin, path) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${origin}${path}`);
  await page.waitForFunction(() => window.benchReady === true);
  return { page, errors };
}

async function benchWllama(context, origin, modelUrl, { repeats, burrowMaxTokens }) {
  const { page } = await openPage(context, origin, `/${WLLAMA_PAGE}`);
  const call = (name, args) => withTimeout(page.evaluate(({ name, args }) => window[name](args), { name, args }),
    WLLAMA_TIMEOUT_MS, `wllama ${name}`);
  const load = await call('wllamaLoad', { model: modelUrl, threads: WLLAMA_THREADS });
  // One unmeasured run first, as llama-bench and `burrow bench` do.
  await call('wllamaComplete', { prompt: PROMPT_TEXT, maxTokens: 2 });
  const runs = [];
  for (let i = 0; i < repeats; i++) {
    const { timings } = await call('wllamaComplete', { prompt: PROMPT_TEXT, maxTokens: GEN_TOKENS });
    if (!timings) throw new Error('wllama returned no timings');
    if (timings.prompt_n !== PROMPT_TOKENS || timings.predicted_n !== GEN_TOKENS) {
      throw new Error(`wllama evaluated ${timings.prompt_n} prompt tokens and generated ${timings.predicted_n}, `
        + `expected ${PROMPT_TOKENS} and ${GEN_TOKENS}`);
    }
    runs.push(timings);
  }
  const chat = await call('wllamaChat', { messages: CHAT, maxTokens: burrowMaxTokens });
  await call('wllamaExit');
  await page.close();
  return { load, runs, chat };
}

async function benchBurrow(context, origin, modelUrl, maxTokens) {
  const { page, errors } = await openPage(context, origin, `/${BURROW_PAGE}`);
  const result = await withTimeout(page.evaluate((args) => window.benchBurrow(args), {
    model: modelUrl, messages: CHAT, warmupMessages: WARMUP_CHAT, warmupTokens: BURROW_WARMUP_TOKENS, maxTokens,
  }), BURROW_TIMEOUT_MS, 'Burrow');
  await page.close();
  return { ...result, errors };
}

function goalText(value, goal) {
  if (!Number.isFinite(value)) return 'not measured';
  const target = `goal ≥ ${fixed(goal, 1)}×`;
  return value >= goal ? `met (${target})` : `short: needs ${fixed(goal / value, 1)}× faster (${target})`;
}

// Busy and total milliseconds of all cores since boot.
const cpuTimes = () => cpus().reduce((sum, { times }) => {
  const total = Object.values(times).reduce((a, b) => a + b, 0);
  return { busy: sum.busy + total - times.idle, total: sum.total + total };
}, { busy: 0, total: 0 });

// Fraction of all cores' time spent outside idle over the next BUSY_SAMPLE_MS.
async function cpuBusyFraction() {
  const before = cpuTimes();
  await new Promise((done) => setTimeout(done, BUSY_SAMPLE_MS));
  const after = cpuTimes();
  return (after.busy - before.busy) / Math.max(1, after.total - before.total);
}

// {key: cpu ms} of this process and its descendants (Chromium's processes), from /proc. Keyed by
// pid and start time, so a reused pid is another process.
function ownProcessTimes() {
  const stats = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the ")" closing the command name: state ppid ... utime(12) stime(13) ... starttime(20).
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ').at(-1).split(' ');
      stats.push({ pid: Number(entry), ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]), start: fields[19] });
    } catch {
      // The process ended while being read.
    }
  }
  const ours = new Set([process.pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const { pid, ppid } of stats) {
      if (ours.has(ppid) && !ours.has(pid)) {
        ours.add(pid);
        grew = true;
      }
    }
  }
  return new Map(stats.filter(({ pid }) => ours.has(pid)).map(({ pid, start, ticks }) => [`${pid}/${start}`, ticks * MS_PER_TICK]));
}

// The share of the machine's CPU used by processes outside this run, sampled every second while
// it lasts (a process of ours that ends loses at most its last second).
class OthersMeter {
  constructor() {
    this.system = cpuTimes();
    this.first = ownProcessTimes();
    this.last = new Map(this.first);
    this.timer = setInterval(() => this.sample(), OWN_SAMPLE_MS);
  }

  sample() {
    for (const [key, ms] of ownProcessTimes()) this.last.set(key, ms);
  }

  stop() {
    clearInterval(this.timer);
    this.sample();
    const system = cpuTimes();
    let ours = 0;
    for (const [key, ms] of this.last) ours += ms - (this.first.get(key) ?? 0);
    return Math.max(0, system.busy - this.system.busy - ours) / Math.max(1, system.total - this.system.total);
  }
}

function busyNote(busy, others) {
  if (Math.max(busy, others) <= QUIET_CPU_FRACTION) return [];
  return ['', `**The machine was not quiet** (${fixed(100 * busy, 0)}% of the CPU in use just before the run, `
    + `${fixed(100 * others, 0)}% used by other processes during it): two-thread figures, wllama's above all, are likely low.`];
}

function report({ date, revision, chromiumVersion, wllamaVersion, busy, others, loadBefore, loadAfter, options, wllama, burrow }) {
  const prefill = median(wllama.runs.map((t) => t.prompt_per_second));
  const decode = median(wllama.runs.map((t) => t.predicted_per_second));
  const chatTimings = wllama.chat.timings ?? {};
  const burrowPromptTokens = burrow.usage?.prompt_tokens ?? NaN;
  const burrowGenerated = burrow.usage?.completion_tokens ?? NaN;
  // The engine's own prefill figure if the API ever reports one; otherwise time to first token.
  const reportedPrefill = Object.entries(burrow.extra).find(([key]) => /prefill/i.test(key))?.[1];
  const burrowPrefill = reportedPrefill ?? ratio(burrowPromptTokens, burrow.firstTokenSeconds);
  const burrowDecode = burrow.extra.tokens_per_second ?? NaN;
  const prefillSource = reportedPrefill === undefined ? 'prompt tokens / time to first streamed token' : 'reported by the engine';
  const otherNumbers = Object.entries(burrow.extra)
    .filter(([key]) => !RESPONSE_METADATA.has(key) && key !== 'tokens_per_second' && !/prefill/i.test(key));

  const lines = [
    '## Browser: Burrow vs wllama',
    '',
    `Command: \`${COMMAND}${options.repeats === DEFAULT_REPEATS ? '' : ` --repeats ${options.repeats}`}`
      + `${options.burrowMaxTokens === DEFAULT_BURROW_MAX_TOKENS ? '' : ` --burrow-max-tokens ${options.burrowMaxTokens}`}\``
      + ' (or `make bench`)',
    '',
    `Run ${date}, Burrow ${revision}, headless Chromium ${chromiumVersion}, wllama ${wllamaVersion} `
      + `(llama.cpp ${wllama.load.libllama}). Model \`${MODEL_FILE}\` served from one cross-origin-isolated origin `
      + `(COOP/COEP; crossOriginIsolated: wllama ${wllama.load.crossOriginIsolated}, Burrow ${burrow.crossOriginIsolated}). `
      + `CPU in use just before the run ${fixed(100 * busy, 0)}%, by other processes during it ${fixed(100 * others, 0)}%; `
      + `load average (1/5/15 min) before ${loadBefore}, after ${loadAfter}.`,
    ...busyNote(busy, others),
    '',
    '| engine | runs on | workload | load s | prompt tokens | prefill tok/s | generated tokens | decode tok/s |',
    '|---|---|---|---:|---:|---:|---:|---:|',
    `| wllama | wasm CPU, ${wllama.load.threads} thread(s)${wllama.load.multithread ? '' : ' (single-thread build!)'}, n_gpu_layers 0 `
      + `| synthetic prompt, greedy, median of ${wllama.runs.length} | ${fixed(wllama.load.loadSeconds)} | ${PROMPT_TOKENS} `
      + `| ${fixed(prefill)} | ${GEN_TOKENS} | ${fixed(decode)} |`,
    `| wllama | same | Burrow's chat, greedy, max_tokens ${options.burrowMaxTokens} | | ${chatTimings.prompt_n ?? 'n/a'} `
      + `| ${fixed(chatTimings.prompt_per_second)} | ${chatTimings.predicted_n ?? 'n/a'} | ${fixed(chatTimings.predicted_per_second)} |`,
    `| Burrow | WebGPU: ${burrow.adapter} | chat "${CHAT[0].content}", greedy, max_tokens ${options.burrowMaxTokens}, after a warm-up chat `
      + `| ${fixed(burrow.loadSeconds)} | ${burrowPromptTokens} | ${fixed(burrowPrefill, 3)} | ${burrowGenerated} | ${fixed(burrowDecode, 3)} |`,
    '',
    `Load: \`Burrow.create\` / \`loadModelFromUrl\` on a fresh profile (fetch from localhost, store, load). wllama's figures are `
      + `llama.cpp's own timings; Burrow's decode is the engine's \`tokens_per_second\`, its prefill ${prefillSource} `
      + `(${fixed(burrow.firstTokenSeconds)} s; the warm-up chat leaves only the chat template's first tokens in the prefix cache). `
      + `Burrow's whole measured chat took ${fixed(burrow.totalSeconds, 1)} s.`
      + (otherNumbers.length ? ` Other numbers in Burrow's response: ${otherNumbers.map(([k, v]) => `${k} ${fixed(v, 3)}`).join(', ')}.` : ''),
    '',
    `Replies: Burrow "${burrow.text.trim()}"; wllama "${wllama.chat.text.trim()}".`,
    '',
    '| Burrow / wllama | prefill | decode |',
    '|---|---:|---:|',
    `| against wllama's ${PROMPT_TOKENS}/${GEN_TOKENS} synthetic run | ${fixed(ratio(burrowPrefill, prefill), 4)}× `
      + `| ${fixed(ratio(burrowDecode, decode), 4)}× |`,
    `| against wllama on the same chat | ${fixed(ratio(burrowPrefill, chatTimings.prompt_per_second), 4)}× `
      + `| ${fixed(ratio(burrowDecode, chatTimings.predicted_per_second), 4)}× |`,
    '',
    `Goals (the native ones, decode ≥ ${fixed(GOAL_DECODE, 1)}× and prefill ≥ ${fixed(GOAL_PREFILL, 1)}× the peer, applied to wllama): `
      + `decode ${goalText(ratio(burrowDecode, decode), GOAL_DECODE)}; prefill ${goalText(ratio(burrowPrefill, prefill), GOAL_PREFILL)}.`,
  ];
  if (burrow.errors.length) lines.push('', `Page errors on Burrow's page: ${burrow.errors.join('; ')}`);
  return lines.join('\n');
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  for (const [path, how] of [[join(MODEL_DIR, MODEL_FILE), 'make model'], [join(REPO, 'pkg', 'burrow_web.js'), 'make pkg'],
    [join(WLLAMA_DIR, 'esm', 'index.js'), 'npm ci']]) {
    if (!existsSync(path)) throw new Error(`${path} is missing (${how})`);
  }
  const wllamaVersion = JSON.parse(readFileSync(join(WLLAMA_DIR, 'package.json'), 'utf8')).version;
  const busy = await cpuBusyFraction();
  const loadBefore = loadAverage();
  const others = new OthersMeter();
  const { server, origin } = await startServer();
  const profile = await mkdtemp(join(tmpdir(), 'burrow-bench-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  try {
    const modelUrl = `${origin}/models/${MODEL_FILE}`;
    const chromiumVersion = context.browser()?.version() ?? execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8' }).trim();
    // One engine at a time, so neither competes with the other for the 2 cores.
    process.stderr.write('wllama...\n');
    const wllama = await benchWllama(context, origin, modelUrl, options);
    process.stderr.write(`Burrow (max_tokens ${options.burrowMaxTokens}; minutes on SwiftShader)...\n`);
    const burrow = await benchBurrow(context, origin, modelUrl, options.burrowMaxTokens);
    const text = report({
      others: others.stop(),
      date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      revision: gitRevision(REPO),
      chromiumVersion,
      wllamaVersion,
      busy,
      loadBefore,
      loadAfter: loadAverage(),
      options,
      wllama,
      burrow,
    });
    process.stdout.write(`${text}\n`);
    if (options.write) writeSection(BENCHMARKS, SECTION, text);
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true, maxRetries: 3 });
    server.close();
  }
}

main().catch((error) => {
  process.stderr.write(`bench/browser: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
