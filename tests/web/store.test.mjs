// web/store.js in Chromium: chunked storage, progress, resume, restarts and every failure path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utimes, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { makeFile, MIB, serveModels, startServer, storeDownload, storeState, storedDigest, tempDir } from './harness.mjs';

const CHUNK = MIB; // small chunks keep the tests fast; the app uses store.CHUNK_SIZE (16 MiB)
// Stall timeout for tests that need a partial download whose size does not depend on timing.
const STALL_MS = 1000;


const rangesFor = (server, name) => server.requests.filter((r) => r.path === `/models/${name}`).map((r) => r.range);

test('downloads into chunks with progress and a verified sha256', async (t) => {
  const size = 5 * MIB + 123;
  const { made, server, page, url } = await serveModels(t, [['a.gguf', size]]);
  const { meta, events, error } = await storeDownload(page, url('a.gguf'), { chunkSize: CHUNK, expectedSha256: made['a.gguf'].sha256 });
  assert.deepEqual(rangesFor(server, 'a.gguf'), [null], 'one request, no retry');
  assert.equal(error, undefined);
  assert.equal(meta.complete, true);
  assert.equal(meta.size, size);
  assert.equal(meta.chunksDone, 6);
  assert.equal(meta.sha256, made['a.gguf'].sha256);
  assert.ok(events.length >= 1);
  const last = events.at(-1);
  assert.equal(last.bytes, size);
  assert.equal(last.total, size);
  assert.ok(last.mb_per_sec > 0);
  assert.ok(events.every((e, i) => i === 0 || e.bytes >= events[i - 1].bytes), `progress never goes back: ${JSON.stringify(events)}`);
  assert.ok(events.every((e) => e.bytes <= e.total && (e.eta_seconds === null || e.eta_seconds >= 0)), JSON.stringify(events));
  const digest = await storedDigest(page, url('a.gguf'));
  assert.deepEqual(digest.sizes, [CHUNK, CHUNK, CHUNK, CHUNK, CHUNK, 123]);
  assert.equal(digest.sha256, made['a.gguf'].sha256);
  // A second call finds the stored model and does not touch the network.
  const again = await storeDownload(page, url('a.gguf'));
  assert.equal(again.meta.completedAt, meta.completedAt);
});

test('a cut connection resumes with a Range request from the last stored chunk', async (t) => {
  const size = 6 * MIB + 77;
  const { made, server, page, url } = await serveModels(t, [['b.gguf', size]]);
  const cut = 2 * CHUNK + Math.floor(Math.random() * (size - 2 * CHUNK - 1));
  server.faults.set('/models/b.gguf', { cutAfter: cut, times: 1 });
  const { meta, error } = await storeDownload(page, url('b.gguf'), { chunkSize: CHUNK });
  assert.equal(error, undefined);
  assert.equal(meta.sha256, made['b.gguf'].sha256);
  const ranges = rangesFor(server, 'b.gguf');
  assert.equal(ranges.length, 2, `requests: ${ranges}`);
  assert.equal(ranges[0], null);
  const start = Number(/^bytes=(\d+)-$/.exec(ranges[1])[1]);
  assert.equal(start % CHUNK, 0);
  assert.ok(start >= CHUNK && start <= cut, `resumed at ${start}, cut at ${cut}`);
  assert.equal((await storedDigest(page, url('b.gguf'))).sha256, made['b.gguf'].sha256);
});

test('a server that ignores Range makes the download restart cleanly', async (t) => {
  const size = 4 * MIB + 5;
  const { made, server, page, url } = await serveModels(t, [['c.gguf', size]]);
  // A stalled connection given up by the watchdog leaves exactly the two whole chunks it sent.
  server.faults.set('/models/c.gguf', { stallAfter: 2 * CHUNK + 100, times: 1 });
  const first = await storeDownload(page, url('c.gguf'), { chunkSize: CHUNK, retries: 0, stallTimeoutMs: STALL_MS });
  assert.equal(first.error.code, 'network');
  const { chunksDone } = (await storeState(page)).models[0];
  assert.equal(chunksDone, 2);
  server.faults.set('/models/c.gguf', { ignoreRange: true, times: 1 });
  const { meta } = await storeDownload(page, url('c.gguf'), { chunkSize: CHUNK });
  assert.equal(meta.sha256, made['c.gguf'].sha256);
  assert.deepEqual(rangesFor(server, 'c.gguf'), [null, `bytes=${chunksDone * CHUNK}-`]);
  assert.deepEqual((await storedDigest(page, url('c.gguf'))).sizes.length, 5);
  assert.equal((await storeState(page)).chunks, 5);
});

test('a changed file (new ETag) makes the download restart', async (t) => {
  const size = 4 * MIB + 9;
  const { dir, server, page, url } = await serveModels(t, [['d.gguf', size]]);
  server.faults.set('/models/d.gguf', { stallAfter: 2 * CHUNK + 100, times: 1 });
  assert.equal((await storeDownload(page, url('d.gguf'), { chunkSize: CHUNK, retries: 0, stallTimeoutMs: STALL_MS })).error.code, 'network');
  const { chunksDone } = (await storeState(page)).models[0];
  assert.equal(chunksDone, 2);
  const changed = randomBytes(size);
  changed.write('GGUF', 0, 'latin1');
  await writeFile(`${dir}/d.gguf`, changed);
  const later = new Date(Date.now() + 60_000);
  await utimes(`${dir}/d.gguf`, later, later);
  const { meta, error } = await storeDownload(page, url('d.gguf'));
  assert.equal(error, undefined);
  const { createHash } = await import('node:crypto');
  assert.equal(meta.sha256, createHash('sha256').update(changed).digest('hex'));
  assert.deepEqual(rangesFor(server, 'd.gguf'), [null, `bytes=${chunksDone * CHUNK}-`, null]);
});

test('a file that shrank below the stored part (416) makes the download restart', async (t) => {
  const { dir, server, page, url } = await serveModels(t, [['s.gguf', 4 * MIB + 1]]);
  server.faults.set('/models/s.gguf', { stallAfter: 3 * CHUNK + 10, times: 1 });
  assert.equal((await storeDownload(page, url('s.gguf'), { chunkSize: CHUNK, retries: 0, stallTimeoutMs: STALL_MS })).error.code, 'network');
  const { chunksDone } = (await storeState(page)).models[0];
  assert.equal(chunksDone, 3);
  const smaller = await makeFile(dir, 's.gguf', chunksDone * CHUNK - 5);
  const { meta, error } = await storeDownload(page, url('s.gguf'), { chunkSize: CHUNK });
  assert.equal(error, undefined);
  assert.equal(meta.sha256, smaller.sha256);
  assert.deepEqual(rangesFor(server, 's.gguf'), [null, `bytes=${chunksDone * CHUNK}-`, null]);
});

test('a stalled connection is given up after the stall timeout and resumed by Range', async (t) => {
  const size = 3 * MIB + 21;
  const { made, server, page, url } = await serveModels(t, [['stall.gguf', size]]);
  server.faults.set('/models/stall.gguf', { stallAfter: CHUNK + 500, times: 1 });
  const { meta, error } = await storeDownload(page, url('stall.gguf'), { chunkSize: CHUNK, stallTimeoutMs: STALL_MS });
  assert.equal(error, undefined);
  assert.equal(meta.sha256, made['stall.gguf'].sha256);
  assert.deepEqual(rangesFor(server, 'stall.gguf'), [null, `bytes=${CHUNK}-`]);
});

test('an aborted download keeps its chunks and resumes on the next call', async (t) => {
  const size = 4 * MIB + 3;
  const { made, server, page, url } = await serveModels(t, [['e.gguf', size]]);
  server.faults.set('/models/e.gguf', { stallAfter: 2 * CHUNK + 10, times: 1 });
  await page.evaluate((url) => {
    window.testAbort = new AbortController();
    window.testDownload = import('/web/store.js')
      .then((store) => store.download(url, { chunkSize: 1024 * 1024, signal: window.testAbort.signal }))
      .then(() => null, (error) => error.code);
  }, url('e.gguf'));
  while ((await storeState(page)).models[0]?.chunksDone !== 2) await page.waitForTimeout(50);
  assert.equal(await page.evaluate(() => {
    window.testAbort.abort();
    return window.testDownload;
  }), 'aborted');
  const partial = (await storeState(page)).models[0];
  assert.equal(partial.complete, false);
  assert.equal(partial.chunksDone, 2);
  const { meta } = await storeDownload(page, url('e.gguf'));
  assert.equal(meta.sha256, made['e.gguf'].sha256);
  assert.deepEqual(rangesFor(server, 'e.gguf'), [null, `bytes=${2 * CHUNK}-`]);
});

test('a second tab downloading the same model is refused while the first one runs', async (t) => {
  const { server, context, page, url } = await serveModels(t, [['tabs.gguf', 3 * MIB]]);
  server.faults.set('/models/tabs.gguf', { stallAfter: CHUNK + 10, times: 1 });
  await page.evaluate((url) => {
    window.testAbort = new AbortController();
    window.testDownload = import('/web/store.js')
      .then((store) => store.download(url, { chunkSize: 1024 * 1024, signal: window.testAbort.signal }))
      .then(() => null, (error) => error.code);
  }, url('tabs.gguf'));
  while ((await storeState(page)).models[0]?.chunksDone !== 1) await page.waitForTimeout(50);
  const second = await context.newPage();
  await second.goto(`${server.origin}/`);
  const { error } = await storeDownload(second, url('tabs.gguf'));
  assert.equal(error.code, 'busy');
  assert.match(error.message, /already being downloaded in another tab/);
  assert.equal(await page.evaluate(() => {
    window.testAbort.abort();
    return window.testDownload;
  }), 'aborted');
  assert.equal((await storeDownload(second, url('tabs.gguf'))).error, undefined);
});

test('404, non-GGUF and sha256 mismatch fail clearly and leave the store as it was', async (t) => {
  const { made, page, url } = await serveModels(t, [['good.gguf', MIB + 1], ['text.gguf', 2 * MIB, 'PK\x03\x04'], ['bad.gguf', 3 * MIB]]);
  assert.equal((await storeDownload(page, url('good.gguf'), { chunkSize: CHUNK })).error, undefined);
  const before = await storeState(page);
  assert.deepEqual(before.models.map((m) => m.url), [url('good.gguf')]);

  const missing = await storeDownload(page, url('missing.gguf'), { chunkSize: CHUNK });
  assert.equal(missing.error.code, 'http');
  assert.match(missing.error.message, /not found.*404/);
  const notGguf = await storeDownload(page, url('text.gguf'), { chunkSize: CHUNK });
  assert.equal(notGguf.error.code, 'not-gguf');
  assert.match(notGguf.error.message, /not a GGUF file/i);
  const mismatch = await storeDownload(page, url('bad.gguf'), { chunkSize: CHUNK, expectedSha256: made['good.gguf'].sha256 });
  assert.equal(mismatch.error.code, 'checksum');
  assert.match(mismatch.error.message, new RegExp(`expected sha256 ${made['good.gguf'].sha256}, got ${made['bad.gguf'].sha256}`));
  assert.deepEqual(await storeState(page), before);
});

test('too little quota (storage.estimate) is refused before writing: "needs X MB, Y MB free"', async (t) => {
  const tinyQuota = () => {
    navigator.storage.estimate = async () => ({ usage: 1_000_000, quota: 3_000_000 });
  };
  const { page, url } = await serveModels(t, [['big.gguf', 5 * MIB]], { initScript: tinyQuota });
  const { error } = await storeDownload(page, url('big.gguf'), { chunkSize: CHUNK });
  assert.equal(error.code, 'quota');
  assert.equal(error.message, 'Not enough storage: the model needs 5.2 MB, 2.0 MB free.');
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
});

test('storage filling up mid-download keeps the stored chunks, says how much more is needed, and resumes when there is room', async (t) => {
  // The estimate claims plenty of room while CDP caps the origin's real quota.
  const roomyEstimate = () => {
    navigator.storage.estimate = async () => ({ usage: 0, quota: 1e12 });
  };
  const { made, server, page, url } = await serveModels(t, [['huge.gguf', 4 * MIB + 5], ['filler.gguf', 3 * MIB]], { initScript: roomyEstimate, quotaBytes: 6 * MIB });
  assert.equal((await storeDownload(page, url('filler.gguf'), { chunkSize: CHUNK })).error, undefined);
  const { error } = await storeDownload(page, url('huge.gguf'), { chunkSize: CHUNK });
  assert.equal(error?.code, 'quota', JSON.stringify(error));
  const partial = (await storeState(page)).models.find((m) => m.url === url('huge.gguf'));
  assert.ok(partial && !partial.complete && partial.chunksDone >= 1, JSON.stringify(partial));
  const stored = partial.chunksDone * CHUNK;
  assert.equal(error.message, `Storage is full: ${(stored / 1e6).toFixed(1)} MB of the model are stored and ${((4 * MIB + 5 - stored) / 1e6).toFixed(1)} MB more `
    + 'are needed. Free that much space (delete other models or other sites\' data), then press Load: the download resumes where it stopped.');
  assert.equal((await storeState(page)).chunks, 3 + partial.chunksDone);

  await page.evaluate(async (filler) => (await import('/web/store.js')).delete(filler), url('filler.gguf'));
  const { meta } = await storeDownload(page, url('huge.gguf'), { chunkSize: CHUNK });
  assert.equal(meta?.sha256, made['huge.gguf'].sha256);
  assert.deepEqual(rangesFor(server, 'huge.gguf'), [null, `bytes=${stored}-`]);
});

test('a model cannot be deleted while it downloads (the download would write it back): "busy", then deleted once stopped', async (t) => {
  const { server, page, url } = await serveModels(t, [['busy.gguf', 3 * MIB]]);
  server.faults.set('/models/busy.gguf', { stallAfter: CHUNK + 10, times: 1 });
  await page.evaluate(({ url, chunkSize }) => {
    window.testAbort = new AbortController();
    window.testDownload = import('/web/store.js')
      .then((store) => store.download(url, { chunkSize, signal: window.testAbort.signal }))
      .then(() => null, (error) => error.code);
  }, { url: url('busy.gguf'), chunkSize: CHUNK });
  while ((await storeState(page)).models[0]?.chunksDone !== 1) await page.waitForTimeout(50);
  const refused = await page.evaluate(async (url) => (await import('/web/store.js')).delete(url).then(() => null, (e) => ({ code: e.code, message: e.message })), url('busy.gguf'));
  assert.equal(refused?.code, 'busy');
  assert.match(refused.message, /being downloaded/);
  assert.equal((await storeState(page)).models[0].chunksDone, 1);
  assert.equal(await page.evaluate(() => {
    window.testAbort.abort();
    return window.testDownload;
  }), 'aborted');
  await page.evaluate(async (url) => (await import('/web/store.js')).delete(url), url('busy.gguf'));
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
});

test('a server that refuses other sites (CORS) and one that cannot be reached are named as such, not retried as network errors', async (t) => {
  const { page, server } = await serveModels(t, []);
  // Another origin, which sends no Access-Control-Allow-Origin. The store runs in a document of
  // the app's origin without the app's CSP (which lets the app fetch only from itself and https).
  const otherDir = await tempDir(t);
  await makeFile(otherDir, 'm.gguf', MIB);
  const other = await startServer(t, { modelsDir: otherDir });
  await page.goto(`${server.origin}/manifest.json`);
  const cors = await storeDownload(page, `${other.origin}/models/m.gguf`);
  assert.equal(cors.error?.code, 'cors', JSON.stringify(cors.error));
  assert.match(cors.error.message, /^127\.0\.0\.1:\d+ does not let other sites download this file \(blocked by its CORS policy\)/);
  // The request and the probe: no retries.
  assert.equal(other.requests.filter((r) => r.path === '/models/m.gguf').length, 2);
  // Port 1: nothing listens there.
  const unreachable = await storeDownload(page, 'http://127.0.0.1:1/model.gguf');
  assert.equal(unreachable.error?.code, 'unreachable', JSON.stringify(unreachable.error));
  assert.match(unreachable.error.message, /^127\.0\.0\.1:1 cannot be reached/);
  assert.deepEqual(await storeState(page), { chunks: 0, models: [] });
});

test('a URL whose name is not valid percent-encoding downloads like any other', async (t) => {
  const { context, page, server } = await serveModels(t, []);
  const odd = `${server.origin}/models/odd%E0%A4%A.gguf`;
  const body = Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(1000, 7)]);
  await context.route(odd, (route) => route.fulfill({ status: 200, body, headers: { 'Content-Type': 'application/octet-stream' } }));
  const { meta, error } = await storeDownload(page, odd, { chunkSize: CHUNK });
  assert.equal(error, undefined, JSON.stringify(error));
  assert.equal(meta.name, 'odd%E0%A4%A.gguf');
  assert.equal(meta.size, body.length);
});
