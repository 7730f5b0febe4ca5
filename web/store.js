// The model store: GGUF files kept in IndexedDB as fixed-size chunks plus one metadata record, so
// a download can resume after a network error or a reload, and the engine can stream a model
// chunk by chunk without ever holding the whole file in one ArrayBuffer. A vision model's
// projector (mmproj) is a stored file like any model; its record's `projectorFor` names the model
// it was downloaded for, so the two are listed, and deleted, as one model.
// Works in a page and in a worker (IndexedDB, fetch, navigator.storage and navigator.locks only).

import { Sha256 } from './sha256.js';

export const CHUNK_SIZE = 16 * 1024 * 1024;
export const DB_NAME = 'burrow';
// 2: the photos of conversations (IMAGES).
const DB_VERSION = 2;
const MODELS = 'models';
const CHUNKS = 'chunks';
export const CONVERSATIONS = 'conversations';
// A conversation's photos, one record each ({conversation, id, blob}), keyed [conversation, id]:
// written once, not with every save of the conversation (web/conversations.js).
export const IMAGES = 'images';
const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"
// Whether `bytes` (at least the magic's length) start as a GGUF file does.
const isGguf = (bytes) => GGUF_MAGIC.every((byte, i) => bytes[i] === byte);
const MAX_RETRIES = 3;
const RETRY_DELAY_MS = 500;
const PROGRESS_INTERVAL_MS = 200;
const MB = 1e6;
const HTTP_RANGE_NOT_SATISFIABLE = 416;
const STALL_TIMEOUT_MS = 15_000;

export class StoreError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}

let databasePromise = null;

export function openDatabase() {
  databasePromise ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = (event) => {
      const db = request.result;
      if (event.oldVersion < 1) {
        db.createObjectStore(MODELS, { keyPath: 'url' });
        // Chunks are keyed [url, index] so one key range covers a model, in order.
        db.createObjectStore(CHUNKS);
        db.createObjectStore(CONVERSATIONS, { keyPath: 'id' }).createIndex('updatedAt', 'updatedAt');
      }
      if (event.oldVersion < 2) db.createObjectStore(IMAGES, { keyPath: ['conversation', 'id'] });
    };
    request.onsuccess = () => {
      const db = request.result;
      // Another context upgrading the schema must not be blocked by this connection.
      db.onversionchange = () => {
        db.close();
        databasePromise = null;
      };
      resolve(db);
    };
    request.onerror = () => {
      databasePromise = null;
      reject(request.error);
    };
  });
  return databasePromise;
}

export function requestResult(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export function transactionDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new DOMException('Transaction aborted', 'AbortError'));
    tx.onerror = (event) => event.preventDefault();
  });
}

const chunkRange = (url) => IDBKeyRange.bound([url, 0], [url, Infinity]);

export async function get(url) {
  const db = await openDatabase();
  return (await requestResult(db.transaction(MODELS).objectStore(MODELS).get(url))) ?? null;
}

export async function list() {
  const db = await openDatabase();
  return requestResult(db.transaction(MODELS).objectStore(MODELS).getAll());
}

// Whether a stored record is a vision projector rather than a model.
export const isProjector = (meta) => Boolean(meta?.projectorFor);

// The stored vision projectors of the model at `url`.
export async function projectorsOf(url) {
  return (await list()).filter((meta) => meta.projectorFor === url);
}

// Deletes the model's record and chunks. Holds the model's download lock, so a download (in
// this tab or another) cannot write its record back afterwards: while one runs, this fails with
// code "busy". Named `remove` because `delete` is reserved; also exported as `delete`.
export async function remove(url) {
  return withDownloadLock(url, 'This model is being downloaded (here or in another tab); stop that download first.', () => removeStored(url));
}
export { remove as delete };

// Deletes the model's record and chunks; the caller holds its download lock.
async function removeStored(url) {
  const db = await openDatabase();
  const tx = db.transaction([MODELS, CHUNKS], 'readwrite');
  tx.objectStore(MODELS).delete(url);
  tx.objectStore(CHUNKS).delete(chunkRange(url));
  await transactionDone(tx);
}

// Chunks of a complete model, in order, each read in its own transaction (a transaction cannot
// stay open while the consumer awaits GPU uploads).
export async function* readChunks(url) {
  const meta = await get(url);
  if (!meta?.complete) throw new StoreError('not-stored', `The model ${url} is not stored completely.`);
  const db = await openDatabase();
  for (let index = 0; index < meta.chunksDone; index++) {
    const chunk = await requestResult(db.transaction(CHUNKS).objectStore(CHUNKS).get([url, index]));
    if (!chunk) throw new StoreError('corrupt', `Chunk ${index} of ${url} is missing from storage.`);
    yield chunk;
  }
}

export async function estimate() {
  return navigator.storage.estimate();
}

// Asks the browser not to evict the models under storage pressure; true if granted.
export async function persist() {
  if (!navigator.storage?.persist) return false;
  return (await navigator.storage.persisted()) || navigator.storage.persist();
}

// Deletes the whole database: every model and conversation. Other tabs' connections close
// themselves (onversionchange); the model downloads must have stopped.
export async function deleteAll() {
  const db = await databasePromise?.catch(() => null);
  db?.close();
  databasePromise = null;
  await new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(DB_NAME);
    request.onsuccess = () => resolve();
    request.onerror = () => reject(request.error);
  });
}

export async function persisted() {
  return navigator.storage?.persisted ? navigator.storage.persisted() : false;
}

export const megabytes = (bytes) => (bytes / MB).toFixed(1);

// The first `length` bytes of `url` (fewer if the file is shorter) and the file's size (null if
// the server does not say), by an HTTP Range request; a server that ignores the range is read
// only that far. Nothing is stored. Errors as download's.
export async function readStart(url, length, { signal } = {}) {
  const response = await fetch(url, { signal, cache: 'no-store', headers: { Range: `bytes=0-${length - 1}` } }).catch(async (error) => {
    throw asStoreError(await requestFailure(url, error, signal), signal);
  });
  if (!response.ok) throw httpError(response, url);
  const size = totalSize(response);
  const bytes = new Uint8Array(Math.min(length, size ?? length));
  const reader = response.body.getReader();
  let filled = 0;
  try {
    while (filled < bytes.length) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, bytes.length - filled);
      bytes.set(value.subarray(0, take), filled);
      filled += take;
    }
  } catch (error) {
    throw asStoreError(error, signal);
  } finally {
    reader.cancel().catch(() => {});
  }
  if (filled >= GGUF_MAGIC.length && !isGguf(bytes)) {
    throw new StoreError('not-gguf', `Not a GGUF file: ${url} does not start with "GGUF".`);
  }
  return { bytes: bytes.subarray(0, filled), size };
}

// Downloads `url` into the store, resuming a partial download, and returns its metadata record.
// Options: expectedSha256, name, onProgress, signal, and for a vision projector projectorFor (the
// URL of its model). Errors are StoreError with `code`: http, network, aborted, quota, not-gguf,
// checksum, no-size, too-long, busy.
export async function download(url, options = {}) {
  // Two tabs writing the same chunks would corrupt the running hash.
  return withDownloadLock(url, 'This model is already being downloaded in another tab.', () => downloadWithRetries(url, options));
}

// Runs `work` holding the model's download lock, or fails with code "busy" (`busyMessage`).
function withDownloadLock(url, busyMessage, work) {
  if (!globalThis.navigator?.locks) return work();
  return navigator.locks.request(`burrow-download ${url}`, { ifAvailable: true }, (lock) => {
    if (!lock) throw new StoreError('busy', busyMessage);
    return work();
  });
}

async function downloadWithRetries(url, options) {
  const expectedSha256 = options.expectedSha256?.toLowerCase() ?? null;
  const stored = await get(url);
  if (stored?.complete && (!expectedSha256 || stored.sha256 === expectedSha256)) {
    // A projector is listed with the model it was last loaded with.
    if (!options.projectorFor || stored.projectorFor === options.projectorFor) return stored;
    const linked = { ...stored, projectorFor: options.projectorFor };
    await putMeta(linked);
    return linked;
  }
  // The caller expects other bytes than the stored (or partly stored) ones: fetch them again.
  if (stored && expectedSha256 && stored.sha256 && stored.sha256 !== expectedSha256) await removeStored(url);
  const retries = options.retries ?? MAX_RETRIES;
  for (let attempt = 0; ; attempt++) {
    try {
      return await downloadOnce(url, { ...options, expectedSha256 });
    } catch (error) {
      const failure = asStoreError(error, options.signal);
      if (failure.code !== 'network' || attempt >= retries) throw failure;
      await sleep(RETRY_DELAY_MS * 2 ** attempt, options.signal);
    }
  }
}

function asStoreError(error, signal) {
  if (error instanceof StoreError) return error;
  if (signal?.aborted || error?.name === 'AbortError') {
    return new StoreError('aborted', 'The download was stopped; it will resume where it left off.', { cause: error });
  }
  if (error?.name === 'QuotaExceededError') return quotaWriteError(error);
  const offline = globalThis.navigator?.onLine === false ? 'you are offline' : error?.message ?? String(error);
  return new StoreError('network', `The download was interrupted (${offline}); it will resume from the stored part.`, { cause: error });
}

// `meta`, when known: the download so far, which is kept.
function quotaWriteError(cause, meta) {
  if (!meta) {
    return new StoreError('quota', 'Storage is full: the browser refused to store more of the model. Free some space and try again.', { cause });
  }
  const stored = Math.min(meta.size, meta.chunksDone * meta.chunkSize);
  return new StoreError('quota', `Storage is full: ${megabytes(stored)} MB of the model are stored and ${megabytes(meta.size - stored)} MB more are needed. `
    + 'Free that much space (delete other models or other sites\' data), then press Load: the download resumes where it stopped.', { cause });
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new StoreError('aborted', 'The download was stopped; it will resume where it left off.'));
    }, { once: true });
  });
}

function validators(response) {
  return { etag: response.headers.get('ETag'), lastModified: response.headers.get('Last-Modified') };
}

function sameValidators(meta, current) {
  if (meta.etag) return meta.etag === current.etag;
  if (meta.lastModified) return meta.lastModified === current.lastModified;
  return true;
}

function parseContentRange(header) {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header ?? '');
  return match ? { start: Number(match[1]), end: Number(match[2]), total: Number(match[3]) } : null;
}

// Why a request got no response at all. The browser does not say (a TypeError either way), so an
// opaque request decides: if the server answers that, it refused this site (CORS); if not, it
// cannot be reached. Offline and stopped requests stay network errors, to be resumed.
async function requestFailure(url, cause, signal) {
  if (signal?.aborted || globalThis.navigator?.onLine === false) return cause;
  const answered = await fetch(url, { mode: 'no-cors', cache: 'no-store', signal }).then(
    (response) => response.body?.cancel().then(() => true, () => true) ?? true,
    () => false,
  );
  const host = new URL(url).host;
  if (answered) {
    return new StoreError('cors', `${host} does not let other sites download this file (blocked by its CORS policy). `
      + 'Use a URL from a server that allows it, such as the Hugging Face Hub.', { cause });
  }
  return new StoreError('unreachable', `${host} cannot be reached: the server is down or the address is wrong. Check the URL, then press Load.`, { cause });
}

function httpError(response, url) {
  const status = `${response.status} ${response.statusText}`.trim();
  const what = response.status === 404 ? 'not found' : 'failed';
  return new StoreError('http', `Download ${what} (HTTP ${status}): ${url}`);
}

// Opens the response to continue `meta` (or start over), deciding whether the server resumed.
async function openResponse(url, meta, signal) {
  const start = meta ? meta.chunksDone * meta.chunkSize : 0;
  // The HTTP cache must not serve a range of an older version of the file.
  const init = { signal, cache: 'no-store' };
  if (start > 0) init.headers = { Range: `bytes=${start}-` };
  const response = await fetch(url, init).catch(async (error) => {
    throw await requestFailure(url, error, signal);
  });
  if (start > 0 && response.status === HTTP_RANGE_NOT_SATISFIABLE) {
    // The file shrank since the partial download began.
    await removeStored(url);
    return openResponse(url, null, signal);
  }
  if (!response.ok) throw httpError(response, url);
  if (start === 0) return { response, meta: null, start: 0 };

  const range = parseContentRange(response.headers.get('Content-Range'));
  const resumed = response.status === 206 && range?.start === start && range.total === meta.size
    && sameValidators(meta, validators(response));
  if (resumed) return { response, meta, start };

  // The server ignored the range, or the file changed: drop what we have and start over.
  await removeStored(url);
  if (response.status === 200) return { response, meta: null, start: 0 };
  await response.body?.cancel();
  return openResponse(url, null, signal);
}

function totalSize(response) {
  if (response.status === 206) return parseContentRange(response.headers.get('Content-Range'))?.total ?? null;
  const encoding = response.headers.get('Content-Encoding');
  const length = response.headers.get('Content-Length');
  // A compressed body's length is not the file's size.
  if (length === null || (encoding && encoding !== 'identity')) return null;
  return Number(length);
}

async function checkSpace(needed) {
  // Some browsers (private modes) lack or refuse estimate(); writing then finds the real limit.
  const estimate = await navigator.storage?.estimate?.().catch(() => null);
  if (!estimate) return;
  const { usage = 0, quota = Infinity } = estimate;
  const free = Math.max(0, quota - usage);
  if (needed > free) {
    throw new StoreError('quota', `Not enough storage: the model needs ${megabytes(needed)} MB, ${megabytes(free)} MB free.`);
  }
}

async function writeChunk(meta, index, bytes) {
  const db = await openDatabase();
  const tx = db.transaction([MODELS, CHUNKS], 'readwrite');
  // Chunk and the record that counts it commit together: a failed write counts nothing.
  tx.objectStore(CHUNKS).put(bytes, [meta.url, index]);
  tx.objectStore(MODELS).put(meta);
  try {
    await transactionDone(tx);
  } catch (error) {
    throw error?.name === 'QuotaExceededError' ? quotaWriteError(error) : error;
  }
}

async function putMeta(meta) {
  const db = await openDatabase();
  const tx = db.transaction(MODELS, 'readwrite');
  tx.objectStore(MODELS).put(meta);
  await transactionDone(tx);
}

function nameFromUrl(url) {
  const path = new URL(url, globalThis.location?.href).pathname;
  const last = path.slice(path.lastIndexOf('/') + 1);
  try {
    return decodeURIComponent(last) || url;
  } catch {
    // Not valid percent-encoding: the name as it is written.
    return last || url;
  }
}

// One attempt, given up as a network error when no data arrives for STALL_TIMEOUT_MS: a phone
// that loses its connection can leave a request hanging without any error.
async function downloadOnce(url, options) {
  const controller = new AbortController();
  const forwardAbort = () => controller.abort();
  options.signal?.addEventListener('abort', forwardAbort, { once: true });
  if (options.signal?.aborted) controller.abort();
  const stallMs = options.stallTimeoutMs ?? STALL_TIMEOUT_MS;
  let stalled = false;
  let timer = null;
  const watchdog = {
    reset() {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        controller.abort();
      }, stallMs);
    },
    pause() {
      clearTimeout(timer);
    },
  };
  try {
    watchdog.reset();
    return await transfer(url, options, controller.signal, watchdog);
  } catch (error) {
    if (stalled) throw new StoreError('network', `The download stalled: no data for ${stallMs / 1000} s.`, { cause: error });
    throw error;
  } finally {
    watchdog.pause();
    options.signal?.removeEventListener('abort', forwardAbort);
  }
}

async function transfer(url, options, signal, watchdog) {
  const { expectedSha256, onProgress } = options;
  const stored = await get(url);
  // Every chunk was stored but the run stopped before the final record was written.
  if (stored && stored.chunksDone * stored.chunkSize >= stored.size) {
    return finish(stored, new Sha256(stored.hashState), expectedSha256);
  }
  const opened = await openResponse(url, stored, signal);
  const { response, start } = opened;
  let meta = opened.meta;
  const size = meta?.size ?? totalSize(response);
  if (size === null || !Number.isFinite(size)) {
    await response.body?.cancel();
    throw new StoreError('no-size', `The server did not report the size of ${url}, so it cannot be stored in parts.`);
  }
  try {
    await checkSpace(size - start);
  } catch (error) {
    await response.body?.cancel();
    throw error;
  }
  if (!meta) {
    const current = validators(response);
    meta = {
      url,
      name: options.name ?? nameFromUrl(url),
      size,
      sha256: expectedSha256,
      chunkSize: options.chunkSize ?? CHUNK_SIZE,
      chunksDone: 0,
      complete: false,
      etag: current.etag,
      lastModified: current.lastModified,
      hashState: null,
      createdAt: Date.now(),
      ...(options.projectorFor ? { projectorFor: options.projectorFor } : {}),
    };
  }

  const chunkCount = Math.ceil(size / meta.chunkSize);
  const chunkLength = (index) => Math.min(meta.chunkSize, size - index * meta.chunkSize);
  const hasher = new Sha256(meta.hashState);
  const progress = progressReporter(onProgress, start, size);
  let index = meta.chunksDone;
  let buffer = new Uint8Array(index < chunkCount ? chunkLength(index) : 0);
  let filled = 0;
  let magicChecked = start > 0;

  const reader = response.body.getReader();
  try {
    while (index < chunkCount) {
      const { done, value } = await reader.read();
      watchdog.reset();
      if (done) throw new StoreError('network', `The download of ${url} ended early, at byte ${index * meta.chunkSize + filled} of ${size}.`);
      let offset = 0;
      while (offset < value.length) {
        if (index >= chunkCount) throw new StoreError('too-long', `The server sent more than the announced ${size} bytes for ${url}.`);
        const take = Math.min(value.length - offset, buffer.length - filled);
        buffer.set(value.subarray(offset, offset + take), filled);
        filled += take;
        offset += take;
        if (!magicChecked && filled >= GGUF_MAGIC.length) {
          if (!isGguf(buffer)) {
            throw new StoreError('not-gguf', `Not a GGUF file: ${url} does not start with "GGUF".`);
          }
          magicChecked = true;
        }
        if (filled === buffer.length) {
          hasher.update(buffer);
          meta = { ...meta, chunksDone: index + 1, hashState: hasher.state() };
          watchdog.pause();
          await writeChunk(meta, index, buffer);
          watchdog.reset();
          index += 1;
          buffer = new Uint8Array(index < chunkCount ? chunkLength(index) : 0);
          filled = 0;
        }
      }
      // The last chunk may be short: after it, index * chunkSize overshoots the size.
      progress(Math.min(size, index * meta.chunkSize + filled));
    }
    const trailing = await reader.read();
    if (!trailing.done) throw new StoreError('too-long', `The server sent more than the announced ${size} bytes for ${url}.`);
  } catch (error) {
    reader.cancel().catch(() => {});
    // A full storage keeps what was written: the download resumes from it once there is space.
    if (error instanceof StoreError && ['not-gguf', 'too-long'].includes(error.code)) await removeStored(url);
    if (error instanceof StoreError && error.code === 'quota') throw quotaWriteError(error.cause, { ...meta, chunksDone: index });
    throw error;
  }

  progress(size, true);
  return finish(meta, hasher, expectedSha256);
}

async function finish(meta, hasher, expectedSha256) {
  const sha256 = hasher.hex();
  if (expectedSha256 && sha256 !== expectedSha256) {
    await removeStored(meta.url);
    throw new StoreError('checksum', `Checksum mismatch for ${meta.url}: expected sha256 ${expectedSha256}, got ${sha256}. The download was deleted.`);
  }
  const complete = { ...meta, sha256, complete: true, hashState: null, completedAt: Date.now() };
  await putMeta(complete);
  return complete;
}

// Reports {bytes, total, mb_per_sec, eta_seconds} at most every PROGRESS_INTERVAL_MS, and at the end.
function progressReporter(onProgress, startBytes, total) {
  if (!onProgress) return () => {};
  const startedAt = performance.now();
  let last = -Infinity;
  return (bytes, final = false) => {
    const now = performance.now();
    if (!final && now - last < PROGRESS_INTERVAL_MS) return;
    last = now;
    const seconds = (now - startedAt) / 1000;
    const rate = seconds > 0 ? (bytes - startBytes) / seconds : 0;
    onProgress({
      bytes,
      total,
      mb_per_sec: rate / MB,
      eta_seconds: rate > 0 ? (total - bytes) / rate : null,
    });
  };
}
