// Burrow's API for embedding developers:
//
//   import { Burrow } from './web/burrow.js';
//   const engine = await Burrow.create({ model: url, onProgress });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) {
//     output.textContent += chunk.choices[0].delta.content ?? '';
//   }
//
// The model is downloaded once into IndexedDB (resumable) and the engine runs in a worker.
// `Burrow.create({ kernels })` picks the kernel family: 'auto' (the default: kernels shaped for
// GPUs, or on a CPU adapter such as SwiftShader those shaped for it), 'gpu' or 'cpu-adapter';
// `engine.model.kernels` says which runs.
// Every failure is an Error with a `.code` (see web/worker.js for the list).

export const DEFAULT_MODEL = Object.freeze({
  url: 'models/SmolLM2-135M-Instruct.Q4_1.gguf',
  name: 'SmolLM2-135M-Instruct Q4_1',
  size: 98362432,
  sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
});

const WORKER_URL = new URL('./worker.js', import.meta.url);
const ROLES = new Set(['system', 'user', 'assistant']);

export class BurrowError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'BurrowError';
    this.code = code;
  }
}

const toError = (data) => new BurrowError(data.code, data.message);

function validateRequest({ messages, temperature, top_p: topP, max_tokens: maxTokens, stop, seed }) {
  const fail = (message) => {
    throw new BurrowError('bad-request', message);
  };
  if (!Array.isArray(messages) || messages.length === 0) fail('messages must be a non-empty array.');
  for (const message of messages) {
    if (!ROLES.has(message?.role) || typeof message.content !== 'string') {
      fail('each message needs a role (system, user or assistant) and a string content.');
    }
  }
  if (temperature !== undefined && !(temperature >= 0)) fail('temperature must be a number >= 0 (0 = greedy).');
  if (topP !== undefined && !(topP > 0 && topP <= 1)) fail('top_p must be in (0, 1].');
  if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens > 0)) fail('max_tokens must be a positive integer.');
  if (stop !== undefined && typeof stop !== 'string' && !(Array.isArray(stop) && stop.every((s) => typeof s === 'string'))) {
    fail('stop must be a string or an array of strings.');
  }
  if (seed !== undefined && !Number.isInteger(seed)) fail('seed must be an integer.');
}

export class Burrow {
  #worker;
  #nextId = 1;
  #pending = new Map(); // id → message handler
  #model;
  #busy = false;

  constructor(worker, model) {
    this.#worker = worker;
    this.#model = model;
    worker.onmessage = ({ data }) => this.#pending.get(data.id)?.(data);
    worker.onerror = (event) => {
      const error = { code: 'engine-failed', message: `The engine worker crashed: ${event.message ?? 'unknown error'}` };
      for (const handler of this.#pending.values()) handler({ type: 'error', ...error });
    };
    this.chat = { completions: { create: (request) => this.#createCompletion(request) } };
  }

  // Downloads (or finds in storage) the model and starts the engine on it.
  // `size` (bytes, optional): the file's expected size, to refuse up front a model the device
  // cannot hold.
  static async create({ model = DEFAULT_MODEL.url, expectedSha256, name, size, kernels, onProgress, signal } = {}) {
    const url = new URL(model, globalThis.location?.href).href;
    const isDefault = url === new URL(DEFAULT_MODEL.url, globalThis.location?.href).href;
    const worker = new Worker(WORKER_URL, { type: 'module' });
    const engine = new Burrow(worker, null);
    const abort = () => engine.abort();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      const ready = await engine.#request(
        {
          type: 'load',
          url,
          expectedSha256: expectedSha256 ?? (isDefault ? DEFAULT_MODEL.sha256 : undefined),
          name: name ?? (isDefault ? DEFAULT_MODEL.name : undefined),
          expectedSize: size ?? (isDefault ? DEFAULT_MODEL.size : undefined),
          kernels,
        },
        (data) => data.type === 'progress' && onProgress?.(data),
      );
      engine.#model = ready.model;
      return engine;
    } catch (error) {
      worker.terminate();
      throw error;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  get model() {
    return this.#model;
  }

  // Sends one request; resolves with its final message, passes others to `onMessage`.
  #request(message, onMessage) {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (data) => {
        if (data.type === 'error' || data.type === 'ready' || data.type === 'done' || data.type === 'unloaded') {
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

  async #createCompletion(request = {}) {
    validateRequest(request);
    if (!this.#worker) throw new BurrowError('not-loaded', 'This engine was unloaded.');
    if (this.#busy) throw new BurrowError('busy', 'Another completion is still running.');
    const { messages, stream = false, ...rest } = request;
    const options = {};
    for (const key of ['temperature', 'top_p', 'max_tokens', 'stop', 'seed']) {
      if (rest[key] !== undefined) options[key] = rest[key];
    }
    const id = `chatcmpl-${crypto.randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.#model?.name ?? this.#model?.url ?? 'burrow';
    this.#busy = true;

    if (!stream) {
      let content = '';
      try {
        const done = await this.#request({ type: 'chat', messages, options }, (data) => {
          if (data.type === 'token') content += data.text;
        });
        return {
          id,
          object: 'chat.completion',
          created,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: done.finishReason }],
          usage: { ...done.usage, total_tokens: done.usage.prompt_tokens + done.usage.completion_tokens },
          tokens_per_second: done.tokensPerSecond,
          prefill_tokens_per_second: done.prefillTokensPerSecond,
          // Burrow's extension: the generated token ids, for checks against other engines.
          token_ids: done.tokenIds,
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
    const finished = this.#request({ type: 'chat', messages, options }, (data) => {
      if (data.type === 'token') push({ delta: { content: data.text }, finish_reason: null });
    }).then(
      (done) => push({ delta: {}, finish_reason: done.finishReason, usage: done.usage, tokensPerSecond: done.tokensPerSecond, prefillTokensPerSecond: done.prefillTokensPerSecond, tokenIds: done.tokenIds, last: true }),
      (error) => push({ error, last: true }),
    );
    const release = () => {
      this.#busy = false;
    };
    finished.then(release);
    const chunk = (item) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta: item.delta, finish_reason: item.finish_reason }],
      ...(item.usage ? {
        usage: item.usage,
        tokens_per_second: item.tokensPerSecond,
        prefill_tokens_per_second: item.prefillTokensPerSecond,
        token_ids: item.tokenIds,
      } : {}),
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

  // Frees the engine and its worker. The model stays stored for next time.
  async unload() {
    if (!this.#worker) return;
    await this.#request({ type: 'unload' });
    this.#worker.terminate();
    this.#worker = null;
  }
}
