// The engine worker: stores the model (web/store.js) and runs the wasm engine off the main thread.
//
// Protocol (every request carries an `id` that its replies echo):
//   page → worker
//     {type: 'load', id, url, expected_sha256?, name?, expected_size?, kernels?, context_length?,
//      mmproj?, mmproj_expected_sha256?, mmproj_expected_size?, mmproj_name?}
//       kernels: 'auto' (the default: the CPU-adapter family on a CPU adapter such as SwiftShader,
//       the GPU family elsewhere), 'gpu' or 'cpu-adapter'; context_length: the most tokens a
//       conversation keeps (the model's own limit and 2048 by default); mmproj: the URL of the
//       model's vision projector, downloaded, stored and checked like the model, and loaded after it
//     {type: 'chat', id, messages: [{role, content}], options: {temperature, top_p, top_k, min_p,
//      repeat_penalty, max_tokens, stop, seed}}
//       content: a string, or (user messages) an array of OpenAI content parts, {type: 'text', text}
//       and {type: 'image_url', image_url: {url: 'data:image/…;base64,…'}}, passed to the engine as
//       they are (the engine decodes the image bytes itself)
//     {type: 'abort'}            stops the running download or generation
//     {type: 'test-fault', fault: 'lose-device' | 'out-of-memory'}   for tests only: destroys the
//       GPU device, or reports an allocation failure on it as the browser would
//   worker → page
//     {type: 'progress', id, phase: 'download' | 'engine', file: 'model' | 'mmproj', bytes, total,
//      mb_per_sec, eta_seconds}   bytes and total of that file: the model's first, then the mmproj's
//     {type: 'ready', id, model: {url, name, size, sha256, wasm_memory_bytes, kernels, vision,
//      mmproj: {url, name, size, sha256} | null}}   vision: whether the model reads images
//   Every field is named in the API's snake_case.
//     {type: 'prompt', id, prompt_tokens}           the chat template has rendered the prompt
//     {type: 'token', id, text}                     a piece of the reply, in order
//     {type: 'done', id, finish_reason, usage: {prompt_tokens, completion_tokens}, tokens_per_second,
//      prefill_tokens_per_second, token_ids, dropped_messages}   (the API's snake_case names)
//     {type: 'error', id, code, message}
//     {type: 'lost', code, message}   the engine is gone (GPU device lost, out of GPU memory, a
//       crash): the request in progress has failed with the same error, and every later one
//       will; the page ends this worker and loads the model again in a new one (from storage)
//   Error codes: no-webgpu, too-large, engine-missing, engine-failed, engine-crashed, gpu-lost,
//   bad-file (the stored file is broken: it was removed), unsupported, template, corrupt (the
//   stored copy was incomplete: it was removed), not-loaded, busy, aborted, bad-request (also: an
//   image sent to a model without a vision projector, a malformed content part), bad-image (an
//   image the engine cannot use: not PNG, JPEG or WebP, broken, or over 50 megapixels), and the
//   store's codes (http, network, cors, unreachable, quota, not-gguf, checksum, no-size, too-long).
//   Only bad-file and corrupt delete a stored file, and only the broken one (the model or its
//   mmproj); every other failure keeps both.
//
// Engine contract for pkg/burrow_web.js (wasm-bindgen output of the engine crate):
//   default export init()                     instantiates the wasm module
//   Engine.create(sizeBytes, kernels, cpuAdapter, contextLength) → Promise<Engine>  also acquires
//       the WebGPU device; kernels as in 'load', cpuAdapter whether the adapter is a CPU
//       implementation, contextLength as in 'load' (undefined: the default)
//   engine.kernels() → 'gpu' | 'cpu-adapter'   the family it runs
//   admit(Uint8Array, sizeBytes) → verdictJson  checks a file by its first bytes, before it is
//       downloaded: {"needed": n} asks for the first n bytes, {"architecture"} admits it; a file
//       the engine cannot run throws (code unsupported, bad-file or template)
//   engine.push_chunk(Uint8Array) → Promise     called for each stored chunk, in order
//   engine.finish() → Promise                   parses the GGUF, uploads the weights
//   engine.chat(messagesJson, optionsJson, onToken, onPrompt) → Promise<statsJson>
//       onPrompt(promptTokens) once the chat template has rendered (the page bounds how long that
//       may take); onToken(text) returns false to stop; statsJson is
//       {"finish_reason", "prompt_tokens", "completion_tokens", "tokens_per_second",
//        "prefill_tokens_per_second", "ids", "dropped_messages"}
//       A message's content is a string or an array of content parts (as in 'chat' above; images
//       first then text, as `burrow generate --image` puts them); assistant messages are strings.
//       Image failures: code bad-image ("this file is not an image Burrow can read (PNG, JPEG or
//       WebP)", "the image is W × H pixels; Burrow takes images of up to 50 megapixels", a broken
//       file), bad-request (no vision projector loaded, a malformed part or a non-data: URL)
//   Vision (feature-detected: an engine without it loads models without their mmproj refused):
//   admit_projector(Uint8Array, sizeBytes) → verdictJson  as admit, for an mmproj:
//       {"needed": n} or {"projector", "projection_dim"}; throws unsupported or bad-file
//   engine.start_projector(sizeBytes)          after finish(): an mmproj of that size follows
//   engine.push_projector_chunk(Uint8Array)    its stored chunks, in order
//   engine.finish_projector()                  parses and uploads it; throws bad-file (broken: it is
//       deleted), unsupported (a projector Burrow does not run, or one that does not pair with
//       the model: both files kept), too-large, gpu-lost
//   engine.has_vision() → boolean              a projector is loaded
//   engine.free()
//   Engine.wasm_memory_bytes() → number        the size of the wasm linear memory
//   Failures are Errors with a `code` (above); a wasm trap is a WebAssembly.RuntimeError.

import * as store from './store.js';
import { checkDevice } from './device.js';

const ENGINE_URL = new URL('../pkg/burrow_web.js', import.meta.url).href;

let engine = null;
let loadedModel = null;
let busy = false;
let controller = null;
// The id of the request in progress: its final reply is posted once, by whoever ends it first.
let current = null;
// Set once the engine is gone ({code, message}); every later request fails with it.
let lost = null;
// The GPU devices this worker opened (wgpu opens them; see watchDevice).
const devices = [];

class WorkerError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const MB = 1e6;
const formatMb = (bytes) => `${(bytes / MB).toFixed(0)} MB`;
// The engine's messages are phrases (no final stop); more sentences may follow them.
const sentence = (message) => (/[.!?]$/.test(message) ? message : `${message}.`);
// A file's name, as the store names it by default.
function fileName(url) {
  const last = new URL(url).pathname.split('/').pop();
  try {
    return decodeURIComponent(last);
  } catch {
    // Not valid percent-encoding: the name as it is written.
    return last;
  }
}

// Ends the request in progress with `message` (a reply or an error), unless it already ended.
function settle(id, message) {
  if (current !== id) return;
  current = null;
  postMessage({ ...message, id });
}

// The engine cannot go on: a lost GPU device, an allocation the GPU refused, or a wasm trap
// (after which the wasm instance's state cannot be trusted). The request in progress fails at
// once (its promise may never settle: the device will not answer), and the page is told so it can
// start a fresh worker.
function engineLost(code, message) {
  if (lost) return;
  lost = { code, message };
  engine = null;
  loadedModel = null;
  controller?.abort();
  if (current !== null) settle(current, { type: 'error', code, message });
  postMessage({ type: 'lost', code, message });
}

// wgpu opens the device inside the engine, so the worker sees it by wrapping requestDevice: it
// watches for the device being lost and for errors nothing captured.
function watchDevice(device) {
  devices.push(device);
  device.lost.then((info) => {
    engineLost('gpu-lost', `The GPU was reset (${info.reason ?? 'unknown'}${info.message ? `: ${info.message}` : ''}). Reload the model.`);
  });
  device.addEventListener('uncapturederror', ({ error }) => {
    if (error instanceof GPUOutOfMemoryError) {
      const size = loadedModel?.size ? ` (the model is ${formatMb(loadedModel.size)})` : '';
      engineLost('too-large', `The GPU ran out of memory${size}: this model is too large for this device. Reload it, or pick a smaller model.`);
    } else {
      engineLost('gpu-lost', `The GPU reported an error (${error.message}). Reload the model.`);
    }
  });
}

if (globalThis.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function requestWatchedDevice(...args) {
    const device = await requestDevice.apply(this, args);
    watchDevice(device);
    return device;
  };
}

// A panic in a callback the engine gave the browser (for example wgpu's error handler) traps
// outside any request.
self.addEventListener('error', (event) => {
  if (event.error instanceof WebAssembly.RuntimeError) engineLost('engine-crashed', crashMessage(event.error));
});
self.addEventListener('unhandledrejection', (event) => {
  if (event.reason instanceof WebAssembly.RuntimeError) engineLost('engine-crashed', crashMessage(event.reason));
});

const crashMessage = (error) => `The engine stopped unexpectedly (${error.message}). Reload the model.`;

// Test-only faults, as a phone's GPU produces them.
function testFault(fault) {
  const device = devices.at(-1);
  if (!device) return;
  if (fault === 'lose-device') device.destroy();
  if (fault === 'out-of-memory') {
    device.dispatchEvent(new GPUUncapturedErrorEvent('uncapturederror', { error: new GPUOutOfMemoryError('test: an allocation failed') }));
  }
}

// The started engine module: the header check before a download and the load after it share it.
let engineModule = null;

async function importEngine() {
  if (engineModule) return engineModule;
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
    engineModule = module;
    return module;
  } catch (error) {
    throw new WorkerError('engine-failed', `The engine failed to start: ${error?.message ?? error}`);
  }
}

// The file's first bytes read to check it before it is downloaded, doubled until its header is
// complete, up to the most: a header past that (an enormous vocabulary) is checked by loading.
const ADMIT_FIRST_BYTES = 1024 * 1024;
const ADMIT_MAX_BYTES = 64 * 1024 * 1024;
// Bytes handed to the engine per call while loading (a stored chunk is 16 MiB).
const PUSH_BYTES = 1024 * 1024;
// Checked before downloading, so nothing is stored for a device that cannot run it (web/device.js).
// Returns whether it is a CPU adapter.
async function requireDevice(expectedSize) {
  const verdict = await checkDevice(expectedSize);
  if (verdict.code) throw new WorkerError(verdict.code, verdict.message);
  return verdict.cpuAdapter;
}

// The engine can load a vision projector (an engine built before vision cannot).
const readsImages = (module) => typeof module.admit_projector === 'function' && typeof module.Engine?.prototype?.start_projector === 'function';
const NO_VISION_ENGINE = 'This build of the engine cannot read images (it has no vision projector support): rebuild it (make pkg), '
  + 'or load the model without its mmproj.';
// The sum of the sizes known so far (undefined when none is: nothing to check yet).
const knownBytes = (...sizes) => sizes.reduce((sum, size) => sum + (size ?? 0), 0) || undefined;

async function load(request, signal) {
  const {
    id, url, expected_sha256: expectedSha256, name, expected_size: expectedSize, kernels = 'auto', context_length: contextLength,
    mmproj, mmproj_expected_sha256: mmprojSha256, mmproj_expected_size: mmprojSize, mmproj_name: mmprojName,
  } = request;
  engine?.free();
  engine = null;
  loadedModel = null;
  // The model and its projector are held in memory together.
  const cpuAdapter = await requireDevice(knownBytes(expectedSize, mmproj && mmprojSize));
  // Both files are checked by their headers before either is downloaded.
  const [storedModel, storedProjector] = await Promise.all([store.get(url), mmproj ? store.get(mmproj) : null]);
  const unchecked = !storedModel?.complete || (mmproj && !storedProjector?.complete);
  const module = unchecked ? await checkingEngine() : null;
  if (mmproj && module && !readsImages(module)) throw new WorkerError('unsupported', NO_VISION_ENGINE);
  let modelSize = storedModel?.size ?? expectedSize;
  if (!storedModel?.complete) {
    modelSize = await admit(module, 'admit', url, signal, storedProjector?.size ?? mmprojSize) ?? modelSize;
  }
  if (mmproj && !storedProjector?.complete) {
    await admit(module, 'admit_projector', mmproj, signal, modelSize).catch((error) => {
      // Which of the two files is refused: the engine's message says what it is.
      if (error instanceof WorkerError || error instanceof store.StoreError || !error?.code) throw error;
      throw new WorkerError(error.code, `${mmprojName ?? fileName(mmproj)}: ${sentence(error.message)}`);
    });
  }
  const progress = (phase, file) => (report) => postMessage({ type: 'progress', id, phase, file, ...report });
  const meta = await store.download(url, { expectedSha256, name, signal, onProgress: progress('download', 'model') });
  const projectorMeta = mmproj
    ? await store.download(mmproj, { expectedSha256: mmprojSha256, name: mmprojName, projectorFor: meta.url, signal, onProgress: progress('download', 'mmproj') })
    : null;
  const engineModule = await importEngine();
  if (projectorMeta && !readsImages(engineModule)) throw new WorkerError('unsupported', `${NO_VISION_ENGINE} The downloaded files are kept.`);
  const instance = await engineModule.Engine.create(meta.size, kernels, cpuAdapter, contextLength);
  // Allocations the GPU refuses while the weights and the KV cache are created.
  const device = devices.at(-1);
  device?.pushErrorScope('out-of-memory');
  let scoped = Boolean(device);
  // The file being loaded, which a failure is about.
  let loadingFile = 'model';
  try {
    await pushFile(meta, (chunk) => instance.push_chunk(chunk), progress('engine', 'model'), signal);
    await instance.finish();
    if (projectorMeta) {
      loadingFile = 'mmproj';
      await instance.start_projector(projectorMeta.size);
      await pushFile(projectorMeta, (chunk) => instance.push_projector_chunk(chunk), progress('engine', 'mmproj'), signal);
      await instance.finish_projector();
    }
    scoped = false;
    const refused = await device?.popErrorScope();
    if (refused) {
      const what = projectorMeta ? `model and its vision projector (${formatMb(meta.size + projectorMeta.size)})` : `model (${formatMb(meta.size)})`;
      throw new WorkerError('too-large', `The ${what} and its context do not fit in this device's GPU memory (${refused.message}). `
        + `Pick a smaller model; the downloaded ${projectorMeta ? 'files are' : 'file is'} kept.`);
    }
  } catch (error) {
    if (scoped) await device.popErrorScope().catch(() => null);
    if (!lost) instance.free();
    throw await loadFailure(error, loadingFile === 'model' ? meta : projectorMeta, { projector: loadingFile === 'mmproj', pair: Boolean(projectorMeta) });
  }
  engine = instance;
  const describeFile = (file) => ({ url: file.url, name: file.name, size: file.size, sha256: file.sha256 });
  // The wasm heap's high-water mark: the model streams through it, so it stays far below `size`.
  loadedModel = {
    ...describeFile(meta),
    wasm_memory_bytes: engineModule.Engine.wasm_memory_bytes(),
    kernels: instance.kernels(),
    vision: Boolean(projectorMeta) && instance.has_vision?.() !== false,
    mmproj: projectorMeta ? describeFile(projectorMeta) : null,
  };
  settle(id, { type: 'ready', model: loadedModel });
}

// Streams a stored file into the engine through `push`, reporting progress.
async function pushFile(meta, push, onProgress, signal) {
  let bytes = 0;
  for await (const chunk of store.readChunks(meta.url)) {
    if (signal.aborted) throw new WorkerError('aborted', 'Loading was stopped.');
    // In slices: wasm-bindgen copies each call's bytes into the wasm heap, which never shrinks.
    for (let at = 0; at < chunk.length; at += PUSH_BYTES) await push(chunk.subarray(at, at + PUSH_BYTES));
    bytes += chunk.length;
    onProgress({ bytes, total: meta.size, mb_per_sec: null, eta_seconds: null });
  }
}

// The engine module for the header checks, or null without an engine: there is nothing to check
// with (and nothing to run), so the files are only stored.
function checkingEngine() {
  return importEngine().catch((error) => {
    if (error.code === 'engine-missing') return null;
    throw error;
  });
}

// Checks a file by its header, read with Range requests, before anything is downloaded: a file
// the engine cannot run, or too large for this device's memory (with `otherBytes`, the other file
// of the pair), costs the person a few MB. `check` is the engine's function: admit for a model,
// admit_projector for a vision projector. Returns the file's size, or null when the server does
// not give it.
async function admit(module, check, url, signal, otherBytes) {
  if (!module?.[check]) return null;
  for (let length = ADMIT_FIRST_BYTES; length <= ADMIT_MAX_BYTES;) {
    const { bytes, size } = await store.readStart(url, length, { signal });
    // The download reports a server that does not give the size.
    if (size === null) return null;
    // The real size against the device's memory, once it is known.
    if (length === ADMIT_FIRST_BYTES) await requireDevice(knownBytes(size, otherBytes));
    const verdict = JSON.parse(module[check](bytes, size));
    if (!verdict.needed) return size;
    length = Math.max(verdict.needed, 2 * length);
  }
  return null;
}

// What a failed load tells the person. Only a file that is itself broken is deleted (the model or
// its projector, not both): a lost device, a model too large for this one, an unsupported
// architecture or a projector that does not pair with the model keep the downloads.
// `file`: the stored record of the file that failed; `projector`: whether it is the projector;
// `pair`: whether a projector was loaded with the model.
async function loadFailure(error, file, { projector = false, pair = false } = {}) {
  if (error instanceof WebAssembly.RuntimeError) {
    engineLost('engine-crashed', crashMessage(error));
    return new WorkerError('engine-crashed', crashMessage(error));
  }
  if (lost) return new WorkerError(lost.code, lost.message);
  // The worker's own (a stop, the GPU refusing both files' memory) say what they are about.
  if (error instanceof WorkerError) return error;
  // The projector's own errors name its file (the engine's message says it is the projector): the
  // person sees two files, and which one failed.
  const about = projector ? `${file.name}: ` : '';
  const kept = pair ? ' Both downloaded files are kept.' : ' The downloaded file is kept.';
  if (error?.code === 'bad-file') {
    await store.remove(file.url).catch(() => {});
    const other = pair ? (projector ? '; the model is kept' : '; its vision projector is kept') : '';
    return new WorkerError('bad-file', `${about}${sentence(error.message)} The file was removed from this device${other}.`);
  }
  if (error?.code === 'corrupt') {
    await store.remove(file.url).catch(() => {});
    const what = projector ? 'vision projector' : 'model';
    return new WorkerError('corrupt', `The stored copy of this ${what} was incomplete, so it was removed. Press Load to download it again.`);
  }
  if (['unsupported', 'template', 'too-large'].includes(error?.code)) {
    return new WorkerError(error.code, `${about}${/kept\.$/.test(error.message) ? error.message : `${sentence(error.message)}${kept}`}`);
  }
  return error;
}

// Whether a message carries an image part.
const hasImage = (message) => Array.isArray(message?.content) && message.content.some((part) => part?.type === 'image_url');

async function chat({ id, messages, options = {} }, signal) {
  if (!engine) throw new WorkerError('not-loaded', 'No model is loaded.');
  if (!Array.isArray(messages) || messages.length === 0) throw new WorkerError('bad-request', 'messages must be a non-empty array.');
  const model = loadedModel;
  if (!model.vision && messages.some(hasImage)) {
    throw new WorkerError('bad-request', `${model.name} does not read images: it was loaded without a vision projector (mmproj).`);
  }
  const onToken = (text) => {
    if (current === id) postMessage({ type: 'token', id, text });
    return !signal.aborted;
  };
  const onPrompt = (tokens) => postMessage({ type: 'prompt', id, prompt_tokens: tokens });
  const stats = JSON.parse(await engine.chat(JSON.stringify(messages), JSON.stringify(options), onToken, onPrompt).catch((error) => {
    // The template came with the file: say which.
    if (error?.code === 'template') throw new WorkerError('template', `${model.name}: ${error.message}`);
    throw error;
  }));
  settle(id, {
    type: 'done',
    finish_reason: signal.aborted ? 'abort' : stats.finish_reason,
    usage: { prompt_tokens: stats.prompt_tokens, completion_tokens: stats.completion_tokens },
    tokens_per_second: stats.tokens_per_second,
    prefill_tokens_per_second: stats.prefill_tokens_per_second,
    token_ids: stats.ids ?? [],
    dropped_messages: stats.dropped_messages ?? 0,
  });
}

const HANDLERS = { load, chat };

self.onmessage = async ({ data }) => {
  if (data?.type === 'abort') {
    controller?.abort();
    return;
  }
  if (data?.type === 'test-fault') {
    testFault(data.fault);
    return;
  }
  const handler = HANDLERS[data?.type];
  if (!handler) {
    postMessage({ type: 'error', id: data?.id, code: 'bad-request', message: `Unknown message type ${data?.type}.` });
    return;
  }
  if (lost) {
    postMessage({ type: 'error', id: data.id, ...lost });
    return;
  }
  if (busy) {
    postMessage({ type: 'error', id: data.id, code: 'busy', message: 'The engine is busy with another request.' });
    return;
  }
  busy = true;
  current = data.id;
  controller = new AbortController();
  try {
    await handler(data, controller.signal);
  } catch (error) {
    if (error instanceof WebAssembly.RuntimeError) engineLost('engine-crashed', crashMessage(error));
    settle(data.id, { type: 'error', code: error?.code ?? 'engine-failed', message: error?.message ?? String(error) });
  } finally {
    busy = false;
    controller = null;
  }
};
