// The static server: MIME types, ranges, validators, and what it refuses to serve.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, tempDir } from './harness.mjs';
import { parseArgs } from '../../scripts/web_serve.mjs';

async function serve(t) {
  const dir = await tempDir(t);
  const body = Buffer.from('GGUF0123456789');
  await writeFile(join(dir, 'm.gguf'), body);
  return { ...(await startServer(t, { modelsDir: dir })), body };
}

test('MIME types for the app, the web manifest and wasm', async (t) => {
  const { origin } = await serve(t);
  const types = {
    '/': 'text/html; charset=utf-8',
    '/manifest.json': 'application/manifest+json',
    '/web/app.js': 'text/javascript; charset=utf-8',
    '/web/app.css': 'text/css; charset=utf-8',
    '/web/icons/icon-192.png': 'image/png',
    '/models/m.gguf': 'application/octet-stream',
  };
  for (const [path, type] of Object.entries(types)) {
    const response = await fetch(origin + path);
    assert.equal(response.status, 200, path);
    assert.equal(response.headers.get('content-type'), type, path);
  }
  const sw = await fetch(`${origin}/web/sw.js`);
  assert.equal(sw.headers.get('service-worker-allowed'), '/');
});

test('wasm is served as application/wasm', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'e.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  const { origin } = await startServer(t, { modelsDir: dir });
  const response = await fetch(`${origin}/models/e.wasm`);
  assert.equal(response.headers.get('content-type'), 'application/wasm');
});

test('single byte ranges give 206 with Content-Range; bad ranges 416', async (t) => {
  const { origin, body } = await serve(t);
  const url = `${origin}/models/m.gguf`;
  let response = await fetch(url, { headers: { Range: 'bytes=4-' } });
  assert.equal(response.status, 206);
  assert.equal(response.headers.get('content-range'), `bytes 4-${body.length - 1}/${body.length}`);
  assert.deepEqual(Buffer.from(await response.arrayBuffer()), body.subarray(4));
  response = await fetch(url, { headers: { Range: 'bytes=2-5' } });
  assert.equal(await response.text(), 'UF01');
  response = await fetch(url, { headers: { Range: 'bytes=-3' } });
  assert.equal(await response.text(), '789');
  response = await fetch(url, { headers: { Range: `bytes=${body.length}-` } });
  assert.equal(response.status, 416);
  assert.equal(response.headers.get('content-range'), `bytes */${body.length}`);
  const head = await fetch(url, { method: 'HEAD' });
  assert.equal(head.headers.get('content-length'), String(body.length));
  assert.equal(head.headers.get('accept-ranges'), 'bytes');
});

test('If-Range with a stale validator returns the whole file', async (t) => {
  const { origin, body } = await serve(t);
  const url = `${origin}/models/m.gguf`;
  const etag = (await fetch(url, { method: 'HEAD' })).headers.get('etag');
  let response = await fetch(url, { headers: { Range: 'bytes=4-', 'If-Range': etag } });
  assert.equal(response.status, 206);
  await response.arrayBuffer();
  response = await fetch(url, { headers: { Range: 'bytes=4-', 'If-Range': '"stale"' } });
  assert.equal(response.status, 200);
  assert.equal((await response.arrayBuffer()).byteLength, body.length);
});

test('dot paths, traversal and other methods are refused', async (t) => {
  const { origin } = await serve(t);
  for (const path of ['/.git/config', '/.cache/models/', '/%2e%2e/%2e%2e/etc/passwd', '/web/%2e%2e/%2e%2e/etc/passwd', '/missing.js']) {
    const response = await fetch(origin + path);
    assert.equal(response.status, 404, path);
  }
  const post = await fetch(`${origin}/index.html`, { method: 'POST' });
  assert.equal(post.status, 405);
});

test('command line: root and mounts', () => {
  const { root, mounts } = parseArgs(['.', '--mount', 'models=.cache/models']);
  assert.ok(root.length > 1);
  assert.equal(mounts[0][0], '/models/');
  assert.throws(() => parseArgs([]), /usage/);
  assert.throws(() => parseArgs(['.', '--mount', 'nodir']), /--mount/);
});
