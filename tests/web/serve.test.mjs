// The static server: MIME types, ranges, validators, and what it refuses to serve.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, get } from 'node:http';
import { brotliDecompressSync } from 'node:zlib';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { startServer, tempDir } from './harness.mjs';
import { handleRequest, HOST, parseArgs } from '../../scripts/web_serve.mjs';

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
  const paths = ['/.git/config', '/.cache/models/', '/%2e%2e/%2e%2e/etc/passwd', '/web/%2e%2e/%2e%2e/etc/passwd',
    '/web/%2e%2e/Cargo.toml', '/web%2f%2e%2e%2fCargo.toml', '/models/%2e%2e/%2e%2e/Cargo.toml', '/missing.js'];
  for (const path of paths) {
    const response = await fetch(origin + path);
    assert.equal(response.status, 404, path);
  }
  const post = await fetch(`${origin}/index.html`, { method: 'POST' });
  assert.equal(post.status, 405);
});

test('only the app is served from the repository: sources, builds, tests and packages are not', async (t) => {
  const { origin } = await serve(t);
  const hidden = ['/target/release/burrow', '/crates/web/Cargo.toml', '/Cargo.toml', '/Cargo.lock',
    '/node_modules/playwright-core/package.json', '/tests/web/harness.mjs', '/scripts/web_serve.mjs',
    '/scripts/bench/burrow.html', '/README.md', '/package.json', '/web', '/index.html/'];
  for (const path of hidden) {
    const response = await fetch(origin + path);
    assert.equal(response.status, 404, path);
    await response.arrayBuffer();
  }
  for (const path of ['/', '/index.html', '/manifest.json', '/web/app.js', '/web/sw.js', '/web/icons/icon-512.png']) {
    const response = await fetch(origin + path);
    assert.equal(response.status, 200, path);
    await response.arrayBuffer();
  }
});

// handleRequest alone, with `options` (the harness always mounts /pkg/).
async function listen(t, options) {
  const server = createServer((req, res) => {
    handleRequest(req, res, options).catch(() => res.destroy());
  });
  await new Promise((done) => server.listen(0, HOST, done));
  t.after(() => new Promise((done) => server.close(done)));
  return `http://${HOST}:${server.address().port}`;
}

test('pkg/ comes from the root; `allow` adds a file or a folder, nothing beside it', async (t) => {
  const root = await tempDir(t);
  for (const path of ['index.html', 'pkg/burrow_web.js', 'bench/page.html', 'bench/run.mjs', 'extra/a.txt', 'extra/b/c.txt']) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), path);
  }
  const origin = await listen(t, { root, allow: ['bench/page.html', 'extra/'] });
  const expected = {
    '/': 200, '/pkg/burrow_web.js': 200, '/bench/page.html': 200, '/extra/a.txt': 200, '/extra/b/c.txt': 200,
    '/bench/run.mjs': 404, '/bench/': 404, '/extra': 404,
  };
  for (const [path, status] of Object.entries(expected)) {
    const response = await fetch(origin + path);
    assert.equal(response.status, status, path);
    if (status === 200) assert.equal(await response.text(), path === '/' ? 'index.html' : path.slice(1));
    else await response.arrayBuffer();
  }
});

// GET `path` from `origin` with a Host header of our choosing (fetch sets its own).
function getWithHost(origin, path, host) {
  return new Promise((done, fail) => {
    get(`${origin}${path}`, { headers: { Host: host } }, (response) => {
      response.resume();
      response.on('end', () => done(response.statusCode));
    }).on('error', fail);
  });
}

test('a Host other than the loopback names and port is refused (DNS rebinding)', async (t) => {
  const { origin } = await serve(t);
  const { port } = new URL(origin);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
    assert.equal(await getWithHost(origin, '/', host), 200, host);
  }
  for (const host of ['evil.example', `evil.example:${port}`, `127.0.0.1:${Number(port) + 1}`, 'localhost', `${HOST}.evil.example:${port}`]) {
    assert.equal(await getWithHost(origin, '/models/m.gguf', host), 421, host);
  }
});

test('symlinks may not lead out of a mount', async (t) => {
  const dir = await tempDir(t);
  const outside = await tempDir(t);
  await writeFile(join(dir, 'm.gguf'), 'GGUF inside');
  await writeFile(join(outside, 'secret.gguf'), 'GGUF outside');
  await symlink(join(outside, 'secret.gguf'), join(dir, 'escape.gguf'));
  await symlink(outside, join(dir, 'elsewhere'));
  await symlink('m.gguf', join(dir, 'alias.gguf'));
  const { origin } = await startServer(t, { modelsDir: dir });
  assert.equal(await (await fetch(`${origin}/models/m.gguf`)).text(), 'GGUF inside');
  assert.equal(await (await fetch(`${origin}/models/alias.gguf`)).text(), 'GGUF inside');
  for (const path of ['/models/escape.gguf', '/models/elsewhere/secret.gguf']) {
    const response = await fetch(origin + path);
    assert.equal(response.status, 404, path);
    await response.arrayBuffer();
  }
});

test('command line: root, mounts and allowed paths', () => {
  const { root, mounts, allow } = parseArgs(['.', '--mount', 'models=.cache/models', '--allow', '/scripts/bench/', '--allow', 'a.html']);
  assert.ok(root.length > 1);
  assert.equal(mounts[0][0], '/models/');
  assert.deepEqual(allow, ['scripts/bench/', 'a.html']);
  assert.throws(() => parseArgs([]), /usage/);
  assert.throws(() => parseArgs(['.', '--mount', 'nodir']), /--mount/);
  assert.throws(() => parseArgs(['.', '--allow']), /--allow/);
});

// A raw GET (node's fetch would decode the body), with `headers`; resolves {status, headers, body}.
function rawGet(origin, path, headers) {
  return new Promise((resolve, reject) => {
    get(`${origin}${path}`, { headers }, (res) => {
      const parts = [];
      res.on('data', (part) => parts.push(part));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts) }));
    }).on('error', reject);
  });
}

test('precompressed .br/.gz siblings (and the app\'s small text files, compressed here) are sent with Content-Encoding to browsers that accept them, never stale, never for ranges', async (t) => {
  const pkg = await tempDir(t);
  const wasm = Buffer.from('\0asm plain bytes of the engine');
  const br = Buffer.from('brotli bytes');
  const gz = Buffer.from('gzip bytes');
  await writeFile(join(pkg, 'engine.wasm'), wasm);
  await writeFile(join(pkg, 'engine.wasm.br'), br);
  await writeFile(join(pkg, 'engine.wasm.gz'), gz);
  await writeFile(join(pkg, 'other.js'), 'export {};\n');
  const { origin } = await startServer(t, { pkgDir: pkg });

  const brotli = await rawGet(origin, '/pkg/engine.wasm', { 'Accept-Encoding': 'gzip, deflate, br, zstd' });
  assert.equal(brotli.headers['content-encoding'], 'br');
  assert.equal(brotli.headers['content-type'], 'application/wasm');
  assert.equal(brotli.headers.vary, 'Accept-Encoding');
  assert.deepEqual(brotli.body, br);
  const gzip = await rawGet(origin, '/pkg/engine.wasm', { 'Accept-Encoding': 'gzip' });
  assert.equal(gzip.headers['content-encoding'], 'gzip');
  assert.deepEqual(gzip.body, gz);
  assert.notEqual(gzip.headers.etag, brotli.headers.etag);
  const plain = await rawGet(origin, '/pkg/engine.wasm', {});
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.equal(plain.headers.vary, 'Accept-Encoding');
  assert.deepEqual(plain.body, wasm);
  const range = await rawGet(origin, '/pkg/engine.wasm', { 'Accept-Encoding': 'br', Range: 'bytes=0-3' });
  assert.equal(range.status, 206);
  assert.equal(range.headers['content-encoding'], undefined);
  assert.deepEqual(range.body, wasm.subarray(0, 4));
  // A small text file without siblings is compressed by the server itself.
  const script = await rawGet(origin, '/pkg/other.js', { 'Accept-Encoding': 'br' });
  assert.equal(script.headers['content-encoding'], 'br');
  assert.equal(brotliDecompressSync(script.body).toString(), 'export {};\n');
  const unaccepted = await rawGet(origin, '/pkg/other.js', {});
  assert.equal(unaccepted.headers['content-encoding'], undefined);
  assert.equal(unaccepted.headers.vary, 'Accept-Encoding');
  assert.equal(unaccepted.body.toString(), 'export {};\n');

  // Rebuilt after its siblings were written: they are stale and not served.
  await new Promise((resolve) => setTimeout(resolve, 20));
  await writeFile(join(pkg, 'engine.wasm'), wasm);
  const stale = await rawGet(origin, '/pkg/engine.wasm', { 'Accept-Encoding': 'br' });
  assert.equal(stale.headers['content-encoding'], undefined);
  assert.deepEqual(stale.body, wasm);
});
