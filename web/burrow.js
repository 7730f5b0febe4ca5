// Burrow's API for embedding developers:
//
//   import { Burrow } from './web/burrow.js';
//   const engine = await Burrow.create({ model: url, onProgress });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) {
//     output.textContent += chunk.choices[0].delta.content ?? '';
//   }
//
// Images, with a vision model and its projector (mmproj), as OpenAI's content parts:
//
//   const engine = await Burrow.create({ model: url, mmproj: mmprojUrl });   // engine.model.vision
//   await engine.chat.completions.create({ messages: [{ role: 'user', content: [
//     { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,…' } },  // the file's bytes
//     { type: 'text', text: 'What is in this photo?' },
//   ] }] });
//
// Images are given as data: URLs (nothing is fetched: they stay on the device), PNG, JPEG or WebP
// of up to 50 megapixels; a broken one fails with code "bad-image", any image sent to a model
// loaded without a projector with "bad-request".
// The model is downloaded once into IndexedDB (resumable) and the engine runs in a worker.
// `Burrow.create({ kernels })` picks the kernel family: 'auto' (the default: kernels shaped for
// GPUs, or on a CPU adapter such as SwiftShader those shaped for it), 'gpu' or 'cpu-adapter';
// `engine.model.kernels` says which runs.
// Every failure is an Error with a `.code` (see web/worker.js for the list). `unload()` settles
// a request still running with code "unloaded"; a lost engine (GPU reset, out of GPU memory, a
// crash) settles it with its own code and calls `onLost`.

import { isImageDataUrl } from './images.js';

export const DEFAULT_MODEL = Object.freeze({
  url: 'models/SmolLM2-135M-Instruct.Q4_1.gguf',
  name: 'SmolLM2-135M-Instruct Q4_1',
  size: 98362432,
  sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
});

const WORKER_URL = new URL('./worker.js', import.meta.url);
// How long the model's chat template may take to render a prompt (real ones take milliseconds).
// The engine bounds a template's steps and output, but a step can still run for minutes (`in` on
// a huge string); past this the worker, stuck inside it, is ended.
export const TEMPLATE_DEADLINE_MS = 10_000;
const ROLES = new Set(['system', 'user', 'assistant']);

export class BurrowError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'BurrowError';
    this.code = code;
  }
}

const toError = (data) => new BurrowError(data.code, data.message);

// The engine's largest image token budget (crates/model's MAX_IMAGE_TOKENS).
const MAX_IMAGE_TOKENS = 65536;

// The request options that reach the engine, with their checks.
const OPTIONS = {
  temperature: (v) => v >= 0 || 'temperature must be a number >= 0 (0 = greedy).',
  top_p: (v) => (v > 0 && v <= 1) || 'top_p must be in (0, 1].',
  top_k: (v) => (Number.isInteger(v) && v >= 0) || 'top_k must be a whole number (0 = off).',
  min_p: (v) => (v >= 0 && v <= 1) || 'min_p must be in [0, 1].',
  repeat_penalty: (v) => v > 0 || 'repeat_penalty must be a number > 0 (1 = off).',
  max_tokens: (v) => (Number.isInteger(v) && v > 0) || 'max_tokens must be a positive integer.',
  stop: (v) => typeof v === 'string' || (Array.isArray(v) && v.every((s) => typeof s === 'string')) || 'stop must be a string or an array of strings.',
  seed: (v) => (Number.isInteger(v) && v >= 0) || 'seed must be a whole number.',
  // For models that size images to a budget (Qwen2.5-VL): the most tokens an image becomes.
  image_max_tokens: (v) => (Number.isInteger(v) && v > 0 && v <= MAX_IMAGE_TOKENS) || `image_max_tokens must be a whole number from 1 to ${MAX_IMAGE_TOKENS}.`,
};

const fail = (message) => {
  throw new BurrowError('bad-request', message);
};

// A content part's problem, or null: text, or an image as a data: URL.
function partProblem(part, role) {
  if (part?.type === 'text') return typeof part.text === 'string' ? null : 'a "text" part needs a string "text".';
  if (part?.type !== 'image_url') return `a content part's type must be "text" or "image_url", not ${JSON.stringify(part?.type ?? null)}.`;
  if (role !== 'user') return `only user messages can carry images, not ${role} messages.`;
  const url = part.image_url?.url;
  if (typeof url !== 'string') return 'an "image_url" part needs image_url: {url: "data:image/…;base64,…"}.';
  if (isImageDataUrl(url)) return null;
  if (/^data:/i.test(url)) {
    return `image_url.url must be a data: URL of an image in base64 (PNG, JPEG or WebP), not one of ${/^data:([^;,]*)/i.exec(url)[1] || 'text'}.`;
  }
  return 'image_url.url must be a data: URL (data:image/jpeg;base64,…): Burrow does not download images, so nothing leaves the device.';
}

// `messages` checked, as the engine takes them: a user message's content may be an array of parts
// (text and images, passed on as they are); a system or assistant message's text parts are joined
// into one string, one line each.
function checkedMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) fail('messages must be a non-empty array.');
  return messages.map((message, index) => {
    const { role, content } = message ?? {};
    if (!ROLES.has(role) || (typeof content !== 'string' && !Array.isArray(content))) {
      fail('each message needs a role (system, user or assistant) and a content: a string or an array of content parts.');
    }
    if (typeof content === 'string') return { role, content };
    if (content.length === 0) fail(`message ${index}: its content array is empty.`);
    for (const part of content) {
      const problem = partProblem(part, role);
      if (problem) fail(`message ${index}: ${problem}`);
    }
    if (role !== 'user') return { role, content: content.map((part) => part.text).join('\n') };
    return { role, content: content.map((part) => (part.type === 'text' ? { type: 'text', text: part.text } : { type: 'image_url', image_url: { url: part.image_url.url } })) };
  });
}

const carriesImage = (message) => Array.isArray(message.content) && message.content.some((part) => part.type === 'image_url');

// The sampler options of `request`, checked.
function requestOptions(request) {
  const options = {};
  for (const [key, check] of Object.entries(OPTIONS)) {
    if (request[key] === undefined || request[key] === null) continue;
    const verdict = check(request[key]);
    if (verdict !== true) fail(verdict);
    options[key] = request[key];
  }
  return options;
}

export class Burrow {
  #worker;
  #nextId = 1;
  #pending = new Map(); // id → message handler
  #model;
  #busy = false;
  // Set when the engine is gone (a BurrowError): every request then fails with it.
  #lost = null;
  #onLost;

  constructor(worker, model, { onLost } = {}) {
    this.#worker = worker;
    this.#model = model;
    this.#onLost = onLost;
    worker.onmessage = ({ data }) => {
      if (data.type === 'lost') this.#engineLost(toError(data));
      else this.#pending.get(data.id)?.(data);
    };
    worker.onerror = (event) => {
      this.#engineLost(new BurrowError('engine-crashed', `The engine worker crashed: ${event.message ?? 'unknown error'}. Reload the model.`));
    };
    this.chat = { completions: { create: (request) => this.#createCompletion(request) } };
  }

  // Downloads (or finds in storage) the model and starts the engine on it.
  // `size` (bytes, optional): the file's expected size, to refuse up front a model the device
  // cannot hold. `contextLength`: the most tokens a conversation keeps (the KV cache's size);
  // longer conversations lose their oldest turns. `onLost(error)`: called once if the engine is
  // lost later (GPU reset, out of GPU memory, a crash); load the model again to go on (it is read
  // from storage, not downloaded). `mmproj`: the URL of the model's vision projector, downloaded,
  // stored and checked like the model (`mmprojSha256`, `mmprojSize` as `expectedSha256`, `size`);
  // with it the model reads images (`engine.model.vision`). `onProgress` receives each file's
  // progress in turn, `file` saying which ('model' or 'mmproj').
  static async create({
    model = DEFAULT_MODEL.url, expectedSha256, name, size, kernels, contextLength, onProgress, onLost, signal,
    mmproj, mmprojSha256, mmprojSize,
  } = {}) {
    const url = new URL(model, globalThis.location?.href).href;
    const isDefault = url === new URL(DEFAULT_MODEL.url, globalThis.location?.href).href;
    const worker = new Worker(WORKER_URL, { type: 'module' });
    const engine = new Burrow(worker, null, { onLost });
    const abort = () => engine.abort();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      const ready = await engine.#request(
        {
          type: 'load',
          url,
          expected_sha256: expectedSha256 ?? (isDefault ? DEFAULT_MODEL.sha256 : undefined),
          name: name ?? (isDefault ? DEFAULT_MODEL.name : undefined),
          expected_size: size ?? (isDefault ? DEFAULT_MODEL.size : undefined),
          kernels,
          context_length: contextLength,
          mmproj: mmproj ? new URL(mmproj, globalThis.location?.href).href : undefined,
          mmproj_expected_sha256: mmproj ? mmprojSha256 : undefined,
          mmproj_expected_size: mmproj ? mmprojSize : undefined,
        },
        (data) => data.type === 'progress' && onProgress?.(data),
      );
      engine.#model = ready.model;
      return engine;
    } catch (error) {
      engine.#close();
      throw error;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  get model() {
    return this.#model;
  }

  // Why the engine is gone (a BurrowError with a code), or null while it works.
  get lost() {
    return this.#lost;
  }

  // Sends one request; resolves with its final message, passes others to `onMessage`.
  #request(message, onMessage) {
    if (this.#lost) return Promise.reject(this.#lost);
    if (!this.#worker) return Promise.reject(new BurrowError('not-loaded', 'This engine was unloaded.'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (data) => {
        if (data.type === 'error' || data.type === 'ready' || data.type === 'done') {
          this.#pending.delete(id);
          if (data.type === 'error') reject(toError(data));
          else resolve(data);
        } else {
          onMessage?.(data);
        }
      });
      this.#worker.postMessage({ ...message, id });
    });
  }

  // Ends the worker and settles every pending request with `error`.
  #close(error = new BurrowError('unloaded', 'The engine was unloaded.')) {
    this.#worker?.terminate();
    this.#worker = null;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const handler of pending) handler({ type: 'error', code: error.code, message: error.message });
  }

  #engineLost(error) {
    if (this.#lost || !this.#worker) return;
    this.#lost = error;
    // The worker may be stuck on a device that no longer answers: end it, freeing its memory.
    this.#close(error);
    this.#onLost?.(error);
  }

  // A chat request whose prompt must be rendered within TEMPLATE_DEADLINE_MS.
  #chatRequest(message, onMessage) {
    const deadline = setTimeout(() => {
      const name = this.#model?.name ?? 'the model';
      this.#engineLost(new BurrowError('template', `The chat template of ${name} did not finish within ${TEMPLATE_DEADLINE_MS / 1000} s; `
        + 'it may be hostile. Use another model file.'));
    }, TEMPLATE_DEADLINE_MS);
    return this.#request(message, (data) => {
      if (data.type === 'prompt') clearTimeout(deadline);
      onMessage(data);
    }).finally(() => clearTimeout(deadline));
  }

  async #createCompletion(request = {}) {
    const messages = checkedMessages(request.messages);
    const options = requestOptions(request);
    if (this.#lost) throw this.#lost;
    if (!this.#worker) throw new BurrowError('not-loaded', 'This engine was unloaded.');
    if (this.#model && !this.#model.vision && messages.some(carriesImage)) {
      fail(`${this.#model.name} does not read images: load it with its vision projector (Burrow.create({ mmproj })), or use a model that reads images.`);
    }
    if (this.#busy) throw new BurrowError('busy', 'Another completion is still running.');
    const { stream = false } = request;
    const id = `chatcmpl-${crypto.randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.#model?.name ?? this.#model?.url ?? 'burrow';
    // Burrow's extensions to the OpenAI response: speeds, the generated token ids (for checks
    // against other engines) and how many of the oldest messages the context could not hold.
    const extensions = (done) => ({
      tokens_per_second: done.tokens_per_second,
      prefill_tokens_per_second: done.prefill_tokens_per_second,
      token_ids: done.token_ids,
      dropped_messages: done.dropped_messages,
    });
    this.#busy = true;

    if (!stream) {
      let content = '';
      try {
        const done = await this.#chatRequest({ type: 'chat', messages, options }, (data) => {
          if (data.type === 'token') content += data.text;
        });
        return {
          id,
          object: 'chat.completion',
          created,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: done.finish_reason }],
          usage: { ...done.usage, total_tokens: done.usage.prompt_tokens + done.usage.completion_tokens },
          ...extensions(done),
        };
      } finally {
        this.#busy = false;
      }
    }

    // Streaming: worker messages are queued until the consumer pulls them.
    const queue = [];
    let wake = null;
    const push = (item) => {
      queue.push(item);
      wake?.();
      wake = null;
    };
    const finished = this.#chatRequest({ type: 'chat', messages, options }, (data) => {
      if (data.type === 'token') push({ delta: { content: data.text }, finish_reason: null });
    }).then(
      (done) => push({ delta: {}, finish_reason: done.finish_reason, done, last: true }),
      (error) => push({ error, last: true }),
    );
    finished.then(() => {
      this.#busy = false;
    });
    const chunk = (item) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta: item.delta, finish_reason: item.finish_reason }],
      ...(item.done ? { usage: item.done.usage, ...extensions(item.done) } : {}),
    });
    const engine = this;
    return (async function* completionStream() {
      let ended = false;
      try {
        yield chunk({ delta: { role: 'assistant', content: '' }, finish_reason: null });
        for (;;) {
          if (queue.length === 0) await new Promise((resolve) => { wake = resolve; });
          const item = queue.shift();
          ended = item.last === true;
          if (item.error) throw item.error;
          yield chunk(item);
          if (ended) return;
        }
      } finally {
        // A consumer that stops reading early also stops the generation.
        if (!ended) engine.abort();
      }
    })();
  }

  // Stops the running download or generation; a stream then ends with finish_reason "abort".
  abort() {
    this.#worker?.postMessage({ type: 'abort' });
  }

  // For tests: makes the engine's GPU fail as a phone's can ('lose-device' or 'out-of-memory').
  simulateFault(fault) {
    this.#worker?.postMessage({ type: 'test-fault', fault });
  }

  // Frees the engine and its worker; a request still running fails with code "unloaded". The
  // model stays stored for next time.
  async unload() {
    this.#close();
  }
}
