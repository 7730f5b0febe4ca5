//! Writing GGUF files for tests: models whose shape or tensor types no fixture has, with random
//! weights (their references are computed from the same file).

use burrow_gguf::{byte_size, GgmlType};

/// GGUF metadata value types and ggml tensor types.
pub const GGUF_U32: u32 = 4;
pub const GGUF_I32: u32 = 5;
pub const GGUF_F32: u32 = 6;
pub const GGUF_STRING: u32 = 8;
pub const GGUF_ARRAY: u32 = 9;
pub const GGML_F32: u32 = 0;
pub const GGML_Q8_0: u32 = 8;
/// GGUF's default data alignment.
pub const ALIGN: usize = 32;

/// splitmix64, for the weights.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A GGUF file being written: metadata first, then tensor infos and data.
#[derive(Default)]
pub struct Writer {
    kv: Vec<u8>,
    kv_count: u64,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

pub fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Writer {
    pub fn key(&mut self, key: &str, ty: u32) {
        string(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv_count += 1;
    }

    pub fn u32(&mut self, key: &str, v: u32) {
        self.key(key, GGUF_U32);
        self.kv.extend(v.to_le_bytes());
    }

    pub fn f32(&mut self, key: &str, v: f32) {
        self.key(key, GGUF_F32);
        self.kv.extend(v.to_le_bytes());
    }

    pub fn str(&mut self, key: &str, v: &str) {
        self.key(key, GGUF_STRING);
        string(&mut self.kv, v);
    }

    /// An array of `n` elements of type `ty`, written by `each`.
    pub fn array(&mut self, key: &str, ty: u32, n: usize, mut each: impl FnMut(&mut Vec<u8>, usize)) {
        self.key(key, GGUF_ARRAY);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend((n as u64).to_le_bytes());
        for i in 0..n {
            each(&mut self.kv, i);
        }
    }

    pub fn tensor(&mut self, name: &str, dims: &[usize], ty: u32, data: Vec<u8>) {
        self.tensors.push((name.to_string(), dims.iter().map(|&d| d as u64).collect(), ty, data));
    }

    /// Random f32 values of magnitude up to `scale`, or `1 + ` them for a norm weight.
    pub fn f32_tensor(&mut self, name: &str, dims: &[usize], scale: f32, offset: f32, rng: &mut Rng) {
        let n: usize = dims.iter().product();
        let data = (0..n).flat_map(|_| (offset + scale * rng.unit()).to_le_bytes()).collect();
        self.tensor(name, dims, GGML_F32, data);
    }

    pub fn bytes(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend(self.kv_count.to_le_bytes());
        out.extend(self.kv);
        let mut offset = 0usize;
        for (name, dims, ty, data) in &self.tensors {
            string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset = (offset + data.len()).next_multiple_of(ALIGN);
        }
        out.resize(out.len().next_multiple_of(ALIGN), 0);
        for (_, _, _, data) in &self.tensors {
            out.extend(data);
            out.resize(out.len().next_multiple_of(ALIGN), 0);
        }
        out
    }
}


/// `n` values of `ty` as random blocks: random codes, every f16 scale and minimum 2^-7 (so no
/// block holds an infinity or NaN, and products stay small).
pub fn random_blocks(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let halves: &[usize] = match ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::IQ4_NL | GgmlType::IQ4_XS => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        other => panic!("random_blocks: {other} is not a block type"),
    };
    let len = byte_size(ty, n as u64).expect("whole blocks") as usize;
    let mut out: Vec<u8> = (0..len.div_ceil(8)).flat_map(|_| rng.next().to_le_bytes()).take(len).collect();
    for block in out.chunks_exact_mut(ty.type_size()) {
        for &h in halves {
            block[h..h + 2].copy_from_slice(&0x2000u16.to_le_bytes());
        }
    }
    out
}

impl Writer {
    /// A SentencePiece-style vocabulary of `n` tokens: `<unk>`, `<s>` (BOS), `</s>` (EOS), then
    /// ordinary tokens `▁t<i>`.
    pub fn llama_vocab(&mut self, n: usize) {
        self.str("tokenizer.ggml.model", "llama");
        self.array("tokenizer.ggml.tokens", GGUF_STRING, n, |out, i| match i {
            0 => string(out, "<unk>"),
            1 => string(out, "<s>"),
            2 => string(out, "</s>"),
            _ => string(out, &format!("\u{2581}t{i}")),
        });
        self.array("tokenizer.ggml.scores", GGUF_F32, n, |out, i| out.extend((-(i as f32)).to_le_bytes()));
        // Unknown, control, control, then normal tokens (gguf-py's TokenType).
        self.array("tokenizer.ggml.token_type", GGUF_I32, n, |out, i| out.extend([2i32, 3, 3].get(i).unwrap_or(&1).to_le_bytes()));
        self.u32("tokenizer.ggml.bos_token_id", 1);
        self.u32("tokenizer.ggml.eos_token_id", 2);
    }
}
