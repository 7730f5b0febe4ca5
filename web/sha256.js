// Incremental SHA-256 (FIPS 180-4) in plain JS. WebCrypto only digests one whole buffer, which
// would need the entire model in memory; this hashes chunk by chunk, and its state can be saved
// next to the stored chunks so an interrupted download resumes hashing where it stopped.

const BLOCK_BYTES = 64;

// Int32 arrays keep V8 on small-integer arithmetic (uint32 values above 2^31 become doubles).
const K = Int32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
);

const INITIAL_HASH = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

export class Sha256 {
  #h;
  #bytes;
  #tail = new Uint8Array(BLOCK_BYTES);
  #tailLength = 0;
  #w = new Int32Array(64);

  // `state` is a value from `state()` (plain data, so it can go into IndexedDB).
  constructor(state = null) {
    this.#h = Int32Array.from(state ? state.h : INITIAL_HASH);
    this.#bytes = state ? state.bytes : 0;
    if (state && state.tail.length > 0) {
      this.#tail.set(state.tail);
      this.#tailLength = state.tail.length;
    }
  }

  get bytes() {
    return this.#bytes;
  }

  state() {
    return { h: Array.from(this.#h), bytes: this.#bytes, tail: this.#tail.slice(0, this.#tailLength) };
  }

  update(data) {
    this.#bytes += data.length;
    let offset = 0;
    if (this.#tailLength > 0) {
      const take = Math.min(BLOCK_BYTES - this.#tailLength, data.length);
      this.#tail.set(data.subarray(0, take), this.#tailLength);
      this.#tailLength += take;
      offset = take;
      if (this.#tailLength < BLOCK_BYTES) return this;
      this.#compress(this.#tail, 0);
      this.#tailLength = 0;
    }
    for (; offset + BLOCK_BYTES <= data.length; offset += BLOCK_BYTES) this.#compress(data, offset);
    this.#tail.set(data.subarray(offset));
    this.#tailLength = data.length - offset;
    return this;
  }

  // Finishes a copy, so the running state stays usable.
  hex() {
    const copy = new Sha256(this.state());
    return copy.#finish();
  }

  #finish() {
    const bitsHigh = Math.floor(this.#bytes / 0x20000000);
    const bitsLow = (this.#bytes * 8) >>> 0;
    const padLength = (this.#tailLength < 56 ? 56 : 120) - this.#tailLength;
    const pad = new Uint8Array(padLength + 8);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(padLength, bitsHigh);
    view.setUint32(padLength + 4, bitsLow);
    const bytes = this.#bytes;
    this.update(pad);
    this.#bytes = bytes;
    return Array.from(this.#h, (word) => (word >>> 0).toString(16).padStart(8, '0')).join('');
  }

  #compress(data, offset) {
    const w = this.#w;
    for (let i = 0; i < 16; i++) {
      const j = offset + i * 4;
      w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15];
      const b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const h = this.#h;
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let i = 0; i < 64; i++) {
      const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + s1 + ch + K[i] + w[i]) | 0;
      const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (s0 + maj) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
  }
}
