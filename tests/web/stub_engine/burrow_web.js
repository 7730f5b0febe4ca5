// Test double for the engine contract in web/worker.js: no model and no wasm, just enough to
// drive the worker protocol, the Burrow API and the chat UI. Its replies echo the prompt.

const TOKEN_DELAY_MS = 5;
const LONG_REPLY_TOKENS = 2000;

export default async function init() {}

export class Engine {
  #size;
  #received = 0;
  #kernels;

  static async create(size, kernels = 'auto') {
    const engine = new Engine();
    engine.#size = size;
    engine.#kernels = kernels === 'gpu' ? 'gpu' : 'cpu-adapter';
    return engine;
  }

  kernels() {
    return this.#kernels;
  }

  async push_chunk(chunk) {
    this.#received += chunk.length;
  }

  async finish() {
    if (this.#received !== this.#size) throw new Error(`got ${this.#received} of ${this.#size} bytes`);
  }

  // A prompt containing "long" produces a reply long enough to be stopped; one containing
  // "too long" fails before any token, as a prompt longer than the context does.
  async chat(messagesJson, optionsJson, onToken, onPrompt) {
    const messages = JSON.parse(messagesJson);
    const options = JSON.parse(optionsJson);
    const prompt = messages.at(-1).content;
    if (prompt.includes('too long')) {
      throw Object.assign(new Error('the message is 9999 tokens long; with room for a reply, the context holds 1536'), { code: 'too-long' });
    }
    onPrompt?.(messages.length);
    const tokens = prompt.includes('long')
      ? Array.from({ length: LONG_REPLY_TOKENS }, (_, i) => ` ${i}`)
      : `echo: ${prompt} (temperature ${options.temperature ?? 'default'}, ${messages.length} messages)`.split(/(?= )/);
    let sent = 0;
    let finishReason = 'stop';
    for (const token of tokens) {
      await new Promise((resolve) => setTimeout(resolve, TOKEN_DELAY_MS));
      sent += 1;
      if (!onToken(token)) {
        finishReason = 'abort';
        break;
      }
      if (options.max_tokens && sent >= options.max_tokens) {
        finishReason = 'length';
        break;
      }
    }
    return JSON.stringify({ finish_reason: finishReason, prompt_tokens: messages.length, completion_tokens: sent, tokens_per_second: 12.5, prefill_tokens_per_second: 40 });
  }

  free() {}

  static wasm_memory_bytes() {
    return 0;
  }
}
