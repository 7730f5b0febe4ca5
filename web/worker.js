// The engine worker: stores the model (web/store.js) and runs the wasm engine off the main thread.
//
// Protocol (every request carries an `id` that its replies echo):
//   page → worker
//     {type: 'load', id, url, expectedSha256?, name?, expectedSize?, kernels?}
//       kernels: 'auto' (the default: the CPU-adapter family on a CPU adapter such as SwiftShader,
//       the GPU family elsewhere), 'gpu' or 'cpu-adapter'
//     {type: 'chat', id, messages: [{role, content}], options: {temperature, top_p, max_tokens, stop, seed}}
//     {type: 'abort'}            stops the running download or generation
//     {type: 'unload', id}       frees the engine (the model stays stored)
//   worker → page
//     {type: 'progress', id, phase: 'download' | 'engine', bytes, total, mbPerSec, etaSeconds}
//     {type: 'ready', id, model: {url, name, size, sha256, wasmMemoryBytes, kernels}}
//     {type: 'token', id, text}                     a piece of the reply, in order
//     {type: 'done', id, finishReason, usage: {prompt_tokens, completion_tokens}, tokensPerSecond,
//      prefillTokensPerSecond, tokenIds}
//     {type: 'unloaded', id}
//     {type: 'error', id, code, message}
//   Error codes: no-webgpu, too-large, engine-missing, engine-failed, not-loaded, busy, aborted, bad-request, and the
//   store's codes (http, network, quota, not-gguf, checksum, no-size, too-long).
//
// Engine contract for pkg/burrow_web.js (wasm-bindgen output of the engine crate):
//   default export init()                     instantiates the wasm module
//   Engine.create(sizeBytes, kernels, cpuAdapter) → Promise<Engine>  also acquires the WebGPU device;
//       kernels as in 'load', cpuAdapter whether the adapter is a CPU implementation
//   engine.kernels() → 'gpu' | 'cpu-adapter'   the family it runs
//   engine.push_chunk(Uint8Array) → Promise     called for each stored chunk, in order
//   engine.finish() → Promise                   parses the GGUF, uploads the weights
//   engine.chat(messagesJson, optionsJson, onToken) → Promise<statsJson>
//       onToken(text) returns false to stop; statsJson is
//       {"finish_reason", "prompt_tokens", "completion_tokens", "tokens_per_second",
//        "prefill_tokens_per_second", "ids"}
//   engine.free()
//   Engine.wasm_memory_bytes() → number        the size of the wasm linear memory

import * as store from './store.js';

const ENGINE_URL = new URL('../pkg/burrow_web.js', import.meta.url).href;

let engine = null;
let loadedModel = null;
let busy = false;
let controller = null;

class WorkerError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function importEngine() {
  // A missing file and a broken module are different problems for the developer.
  // GET rather than HEAD so the service worker can answer it offline.
  const probe = await fetch(ENGINE_URL, { cache: 'no-cache' }).catch(() => null);
  await probe?.body?.cancel();
  if (!probe?.ok) {
    throw new WorkerError('engine-missing', 'The engine is not built (run make serve).');
  }
  try {
    const module = await import(ENGINE_URL);
    await module.default();
    return module;
  } catch (error) {
    throw new WorkerError('engine-failed', `The engine failed to start: ${error?.message ?? error}`);
  }
}

// Bytes handed to the engine per call while loading (a stored chunk is 16 MiB).
const PUSH_BYTES = 1024 * 1024;
// Storage buffers one kernel binds (shaders/rope_kv.wgsl), WebGPU's guaranteed minimum.
const STORAGE_BUFFERS_NEEDED = 8;
// Share of the device's memory a model may take: the browser, the page and the system need the rest.
const MEMORY_SHARE = 0.5;
const GIB = 1024 ** 3;

// Whether the adapter is a CPU implementation of WebGPU (SwiftShader, llvmpipe, WARP), which the
// engine cannot tell by itself in a browser: the CPU-adapter kernels suit it.
function isCpuAdapter(adapter) {
  const info = adapter.info ?? {};
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  return Boolean(info.isFallbackAdapter || adapter.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe|warp|software/i.test(text);
}

// Checked before downloading, so nothing is stored for a device that cannot run it: a WebGPU
// adapter with the limits the kernels need and, when the size is known in advance, memory for the
// weights (navigator.deviceMemory: the device's RAM in GiB, rounded down and capped by the
// browser, so this only refuses what certainly cannot fit). Returns whether it is a CPU adapter.
async function requireDevice(expectedSize) {
  const adapter = await navigator.gpu?.requestAdapter().catch(() => null);
  if (!adapter) {
    throw new WorkerError('no-webgpu', 'This browser cannot run Burrow: WebGPU is not available (try a recent Chrome, Edge or Safari).');
  }
  const buffers = adapter.limits.maxStorageBuffersPerShaderStage;
  if (buffers < STORAGE_BUFFERS_NEEDED) {
    throw new WorkerError('no-webgpu', `This GPU lets a kernel use ${buffers} storage buffers; Burrow needs ${STORAGE_BUFFERS_NEEDED}.`);
  }
  const memory = navigator.deviceMemory;
  if (expectedSize && memory && expectedSize > memory * GIB * MEMORY_SHARE) {
    const gb = (bytes) => (bytes / 1e9).toFixed(1);
    throw new WorkerError('too-large', `This model needs about ${gb(expectedSize)} GB of memory; this device has ${memory} GB, `
      + `so it will not fit. Pick a smaller model.`);
  }
  return isCpuAdapter(adapter);
}

async function load({ id, url, expectedSha256, name, expectedSize, kernels = 'auto' }, signal) {
  if (engine) unload();
  const cpuAdapter = await requireDevice(expectedSize);
  const meta = await store.download(url, {
    expectedSha256,
    name,
    signal,
    onProgress: (progress) => postMessage({ type: 'progress', id, phase: 'download', ...progress }),
  });
  const module = await importEngine();
  const instance = await module.Engine.create(meta.size, kernels, cpuAdapter);
  try {
    let bytes = 0;
    for await (const chunk of store.readChunks(url)) {
      if (signal.aborted) throw new WorkerError('aborted', 'Loading was stopped.');
      // In slices: wasm-bindgen copies each call's bytes into the wasm heap, which never shrinks.
      for (let at = 0; at < chunk.length; at += PUSH_BYTES) await instance.push_chunk(chunk.subarray(at, at + PUSH_BYTES));
      bytes += chunk.length;
      postMessage({ type: 'progress', id, phase: 'engine', bytes, total: meta.size, mbPerSec: null, etaSeconds: null });
    }
    await instance.finish();
  } catch (error) {
    instance.free();
    // The engine refused the stored bytes (malformed, truncated or unsupported file): keeping
    // them would only use up the phone's storage.
    if (error?.code === 'engine-failed') {
      await store.remove(url).catch(() => {});
      throw new WorkerError('engine-failed', `${error.message} The file was removed from this device.`);
    }
    throw error;
  }
  engine = instance;
  // The wasm heap's high-water mark: the model streams through it, so it stays far below `size`.
  const wasmMemoryBytes = module.Engine.wasm_memory_bytes();
  loadedModel = { url: meta.url, name: meta.name, size: meta.size, sha256: meta.sha256, wasmMemoryBytes, kernels: instance.kernels() };
  postMessage({ type: 'ready', id, model: loadedModel });
}

async function chat({ id, messages, options = {} }, signal) {
  if (!engine) throw new WorkerError('not-loaded', 'No model is loaded.');
  if (!Array.isArray(messages) || messages.length === 0) throw new WorkerError('bad-request', 'messages must be a non-empty array.');
  const stats = JSON.parse(await engine.chat(JSON.stringify(messages), JSON.stringify(options), (text) => {
    postMessage({ type: 'token', id, text });
    return !signal.aborted;
  }));
  postMessage({
    type: 'done',
    id,
    finishReason: signal.aborted ? 'abort' : stats.finish_reason,
    usage: { prompt_tokens: stats.prompt_tokens, completion_tokens: stats.completion_tokens },
    tokensPerSecond: stats.tokens_per_second,
    prefillTokensPerSecond: stats.prefill_tokens_per_second,
    tokenIds: stats.ids ?? [],
  });
}

function unload() {
  engine?.free();
  engine = null;
  loadedModel = null;
}

const HANDLERS = { load, chat };

self.onmessage = async ({ data }) => {
  if (data?.type === 'abort') {
    controller?.abort();
    return;
  }
  if (data?.type === 'unload') {
    controller?.abort();
    unload();
    postMessage({ type: 'unloaded', id: data.id });
    return;
  }
  const handler = HANDLERS[data?.type];
  if (!handler) {
    postMessage({ type: 'error', id: data?.id, code: 'bad-request', message: `Unknown message type ${data?.type}.` });
    return;
  }
  if (busy) {
    postMessage({ type: 'error', id: data.id, code: 'busy', message: 'The engine is busy with another request.' });
    return;
  }
  busy = true;
  controller = new AbortController();
  try {
    await handler(data, controller.signal);
  } catch (error) {
    postMessage({ type: 'error', id: data.id, code: error?.code ?? 'engine-failed', message: error?.message ?? String(error) });
  } finally {
    busy = false;
    controller = null;
  }
};
