// Rewrites a GGUF file's metadata (tests only): sets string values, keeping the tensors. The
// tensor data moves with the header, so it is re-aligned as the format requires.

const STRING = 8;
const ARRAY = 9;
// Bytes of each fixed-size GGUF value type (u8, i8, u16, i16, u32, i32, f32, bool, -, -, u64, i64, f64).
const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const DEFAULT_ALIGNMENT = 32;

function reader(buffer) {
  let at = 0;
  const r = {
    get at() { return at; },
    u32() { const v = buffer.readUInt32LE(at); at += 4; return v; },
    u64() { const v = Number(buffer.readBigUInt64LE(at)); at += 8; return v; },
    string() { const n = r.u64(); const s = buffer.toString('utf8', at, at + n); at += n; return s; },
    skip(type) {
      if (type === STRING) r.string();
      else if (type === ARRAY) {
        const inner = r.u32();
        const count = r.u64();
        for (let i = 0; i < count; i++) r.skip(inner);
      } else at += SIZES[type];
    },
  };
  return r;
}

const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const str = (s) => { const bytes = Buffer.from(s, 'utf8'); return Buffer.concat([u64(bytes.length), bytes]); };

// `buffer` with each key of `strings` set to that string value (replaced, or added).
export function withStrings(buffer, strings) {
  const r = reader(buffer);
  if (buffer.toString('latin1', 0, 4) !== 'GGUF') throw new Error('not a GGUF file');
  r.u32(); // magic
  const version = r.u32();
  const tensors = r.u64();
  const kvs = r.u64();
  const parts = [];
  const pending = new Map(Object.entries(strings));
  let alignment = DEFAULT_ALIGNMENT;
  for (let i = 0; i < kvs; i++) {
    const start = r.at;
    const key = r.string();
    const type = r.u32();
    if (key === 'general.alignment') alignment = buffer.readUInt32LE(r.at);
    r.skip(type);
    if (pending.has(key)) {
      parts.push(Buffer.concat([str(key), u32(STRING), str(pending.get(key))]));
      pending.delete(key);
    } else {
      parts.push(buffer.subarray(start, r.at));
    }
  }
  for (const [key, value] of pending) parts.push(Buffer.concat([str(key), u32(STRING), str(value)]));
  const infoStart = r.at;
  for (let i = 0; i < tensors; i++) {
    r.string();
    const dims = r.u32();
    for (let d = 0; d < dims; d++) r.u64();
    r.u32();
    r.u64();
  }
  const infos = buffer.subarray(infoStart, r.at);
  const dataStart = Math.ceil(r.at / alignment) * alignment;
  const head = Buffer.concat([Buffer.from('GGUF', 'latin1'), u32(version), u64(tensors), u64(kvs + pending.size), ...parts, infos]);
  const padding = Buffer.alloc(Math.ceil(head.length / alignment) * alignment - head.length);
  return Buffer.concat([head, padding, buffer.subarray(dataStart)]);
}
