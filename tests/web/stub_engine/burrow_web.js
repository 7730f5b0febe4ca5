// Test double for the engine contract in web/worker.js: no model and no wasm, just enough to
// drive the worker protocol, the Burrow API and the chat UI. Its replies echo the prompt.
//
// Vision, as the real engine does it but observable: a projector file is one with the text
// "mmproj" in its first bytes (tests write it after the GGUF magic); "mmproj-mismatch" there makes
// it one that does not pair with the model (code unsupported), "mmproj-broken" a broken file (code
// bad-file). A reply to a conversation with images lists every image it was given, in order:
// "[N images: TYPE WxH BYTES bytes sha256 HEX16; …]", so a test can check the engine got the exact
// bytes of each file.

import { imageSize, imageType } from '../web/images.js';

const TOKEN_DELAY_MS = 5;
const LONG_REPLY_TOKENS = 2000;
// As crates/vision: the most pixels an image may have.
const MAX_IMAGE_PIXELS = 50_000_000;
// How far into a projector file its marker is looked for.
const MARKER_BYTES = 64;
const SHA_HEX_SHOWN = 16;

const failure = (code, message) => Object.assign(new Error(message), { code });
const text = (bytes) => String.fromCharCode(...bytes.subarray(0, MARKER_BYTES));

export default async function init() {}

// Checks a vision projector by its first bytes, as admit does a model.
export function admit_projector(prefix, fileLen) {
  if (prefix.length < MARKER_BYTES && fileLen > prefix.length) return JSON.stringify({ needed: MARKER_BYTES });
  if (!text(prefix).includes('mmproj')) {
    throw failure('unsupported', 'this file is not a vision projector (its general.architecture is not "clip"); pick the mmproj file made for the model');
  }
  return JSON.stringify({ projector: 'idefics3', projection_dim: 576 });
}

export class Engine {
  #size;
  #received = 0;
  #kernels;
  #projector = null;

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

  start_projector(size) {
    if (this.#received !== this.#size) throw new Error('start_projector before the model was finished');
    this.#projector = { size, received: 0, head: new Uint8Array(0), ready: false };
  }

  push_projector_chunk(chunk) {
    const projector = this.#projector;
    if (projector.head.length < MARKER_BYTES) {
      const head = new Uint8Array(Math.min(MARKER_BYTES, projector.head.length + chunk.length));
      head.set(projector.head);
      head.set(chunk.subarray(0, head.length - projector.head.length), projector.head.length);
      projector.head = head;
    }
    projector.received += chunk.length;
  }

  finish_projector() {
    const projector = this.#projector;
    if (projector.received !== projector.size) throw new Error(`got ${projector.received} of ${projector.size} projector bytes`);
    const marker = text(projector.head);
    if (marker.includes('mmproj-broken')) throw failure('bad-file', 'the vision projector is broken: tensor v.patch_embd.weight ends past the end of the file');
    if (marker.includes('mmproj-mismatch')) {
      throw failure('unsupported', 'this vision projector does not pair with the language model: it projects to 576 values, the model takes 960; use the mmproj file made for this model');
    }
    projector.ready = true;
  }

  has_vision() {
    return Boolean(this.#projector?.ready);
  }

  // A prompt containing "long" produces a reply long enough to be stopped; one containing
  // "too long" fails before any token, as a prompt longer than the context does.
  async chat(messagesJson, optionsJson, onToken, onPrompt) {
    const messages = JSON.parse(messagesJson);
    const options = JSON.parse(optionsJson);
    const images = [];
    for (const message of messages) {
      if (typeof message.content === 'string') continue;
      for (const part of message.content) {
        if (part.type === 'image_url') images.push(await this.#image(part.image_url?.url));
      }
    }
    const last = messages.at(-1).content;
    const prompt = typeof last === 'string' ? last : last.filter((part) => part.type === 'text').map((part) => part.text).join('\n');
    if (prompt.includes('too long')) {
      throw Object.assign(new Error('the message is 9999 tokens long; with room for a reply, the context holds 1536'), { code: 'too-long' });
    }
    onPrompt?.(messages.length);
    const seen = images.length ? ` [${images.length} images: ${images.join('; ')}]` : '';
    const tokens = prompt.includes('long')
      ? Array.from({ length: LONG_REPLY_TOKENS }, (_, i) => ` ${i}`)
      : `echo: ${prompt}${seen} (temperature ${options.temperature ?? 'default'}, ${messages.length} messages)`.split(/(?= )/);
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

  // An image part's data: URL decoded, checked as crates/vision checks it, and described.
  async #image(url) {
    if (!this.has_vision()) throw failure('bad-request', 'this model does not read images: no vision projector is loaded');
    const match = /^data:image\/[\w.+-]+;base64,(.*)$/s.exec(url ?? '');
    if (!match) throw failure('bad-request', 'an image_url must be a data: URL of an image in base64');
    const bytes = Uint8Array.from(atob(match[1]), (c) => c.charCodeAt(0));
    const type = imageType(bytes);
    if (!type) throw failure('bad-image', 'this file is not an image Burrow can read (PNG, JPEG or WebP)');
    const size = imageSize(bytes);
    if (!size) throw failure('bad-image', 'the image could not be decoded (is the file complete?): no size in its header');
    if (size.width * size.height > MAX_IMAGE_PIXELS) {
      throw failure('bad-image', `the image is ${size.width} × ${size.height} pixels; Burrow takes images of up to ${MAX_IMAGE_PIXELS / 1e6} megapixels`);
    }
    try {
      (await createImageBitmap(new Blob([bytes], { type }))).close();
    } catch (error) {
      throw failure('bad-image', `the image could not be decoded (is the file complete?): ${error.message}`);
    }
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('').slice(0, SHA_HEX_SHOWN);
    return `${type.slice('image/'.length)} ${size.width}x${size.height} ${bytes.length} bytes sha256 ${hex}`;
  }

  free() {}

  static wasm_memory_bytes() {
    return 0;
  }
}
