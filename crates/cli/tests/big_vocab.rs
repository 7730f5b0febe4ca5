//! A vocabulary of 262,144 tokens (Gemma 3's): more output rows than a dispatch dimension's 65,535
//! workgroups would cover at a workgroup per few rows, so every kernel that spreads the output
//! head or the logits over workgroups must fold them into two dimensions. A tiny Llama with that
//! vocabulary is written here as a GGUF file (random weights, the embedding Q8_0 and tied to the
//! output head), and both kernel families are checked against the CPU reference: logits at every
//! position (as one batch, and one token at a time) and the greedy continuation.

mod common;

use std::path::PathBuf;

use common::run_json;
use serde_json::Value;

const VOCAB: usize = 262_144;
const EMBD: usize = 64;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const FF: usize = 128;

/// GGUF metadata value types and tensor types used here.
const GGUF_U32: u32 = 4;
const GGUF_I32: u32 = 5;
const GGUF_F32: u32 = 6;
const GGUF_STRING: u32 = 8;
const GGUF_ARRAY: u32 = 9;
const GGML_F32: u32 = 0;
const GGML_Q8_0: u32 = 8;
/// GGUF's default data alignment.
const ALIGN: usize = 32;

/// splitmix64, for the weights.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A GGUF file being written: metadata first, then tensor infos and data.
#[derive(Default)]
struct Writer {
    kv: Vec<u8>,
    kv_count: u64,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Writer {
    fn key(&mut self, key: &str, ty: u32) {
        string(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv_count += 1;
    }

    fn u32(&mut self, key: &str, v: u32) {
        self.key(key, GGUF_U32);
        self.kv.extend(v.to_le_bytes());
    }

    fn f32(&mut self, key: &str, v: f32) {
        self.key(key, GGUF_F32);
        self.kv.extend(v.to_le_bytes());
    }

    fn str(&mut self, key: &str, v: &str) {
        self.key(key, GGUF_STRING);
        string(&mut self.kv, v);
    }

    /// An array of `n` elements of type `ty`, written by `each`.
    fn array(&mut self, key: &str, ty: u32, n: usize, mut each: impl FnMut(&mut Vec<u8>, usize)) {
        self.key(key, GGUF_ARRAY);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend((n as u64).to_le_bytes());
        for i in 0..n {
            each(&mut self.kv, i);
        }
    }

    fn tensor(&mut self, name: &str, dims: &[usize], ty: u32, data: Vec<u8>) {
        self.tensors.push((name.to_string(), dims.iter().map(|&d| d as u64).collect(), ty, data));
    }

    /// Random f32 values of magnitude up to `scale`, or `1 + ` them for a norm weight.
    fn f32_tensor(&mut self, name: &str, dims: &[usize], scale: f32, offset: f32, rng: &mut Rng) {
        let n: usize = dims.iter().product();
        let data = (0..n).flat_map(|_| (offset + scale * rng.unit()).to_le_bytes()).collect();
        self.tensor(name, dims, GGML_F32, data);
    }

    fn bytes(self) -> Vec<u8> {
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

/// Q8_0 blocks of random values: an f16 scale of 1/128 and random codes.
fn q8_0(n: usize, rng: &mut Rng) -> Vec<u8> {
    let scale = 0x2000u16.to_le_bytes(); // 2^-7 in f16
    let mut out = Vec::with_capacity(n / 32 * 34);
    for _ in 0..n / 32 {
        out.extend(scale);
        out.extend((0..32).map(|_| rng.next() as u8));
    }
    out
}

/// Writes the model once per test binary.
fn model() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llama-vocab-262144.gguf");
    static WRITTEN: std::sync::Once = std::sync::Once::new();
    WRITTEN.call_once(|| {
        let mut w = Writer::default();
        w.str("general.architecture", "llama");
        w.u32("llama.context_length", 256);
        w.u32("llama.embedding_length", EMBD as u32);
        w.u32("llama.block_count", 1);
        w.u32("llama.feed_forward_length", FF as u32);
        w.u32("llama.attention.head_count", HEADS as u32);
        w.u32("llama.attention.head_count_kv", KV_HEADS as u32);
        w.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
        w.str("tokenizer.ggml.model", "llama");
        w.array("tokenizer.ggml.tokens", GGUF_STRING, VOCAB, |out, i| match i {
            0 => string(out, "<unk>"),
            1 => string(out, "<s>"),
            2 => string(out, "</s>"),
            _ => string(out, &format!("\u{2581}t{i}")),
        });
        w.array("tokenizer.ggml.scores", GGUF_F32, VOCAB, |out, i| out.extend((-(i as f32)).to_le_bytes()));
        // Unknown, control, control, then normal tokens (gguf-py's TokenType).
        w.array("tokenizer.ggml.token_type", GGUF_I32, VOCAB, |out, i| out.extend([2i32, 3, 3].get(i).unwrap_or(&1).to_le_bytes()));
        w.u32("tokenizer.ggml.bos_token_id", 1);
        w.u32("tokenizer.ggml.eos_token_id", 2);
        let mut rng = Rng(262_144);
        let kv = KV_HEADS * EMBD / HEADS;
        w.tensor("token_embd.weight", &[EMBD, VOCAB], GGML_Q8_0, q8_0(EMBD * VOCAB, &mut rng));
        w.f32_tensor("output_norm.weight", &[EMBD], 0.1, 1.0, &mut rng);
        w.f32_tensor("blk.0.attn_norm.weight", &[EMBD], 0.1, 1.0, &mut rng);
        w.f32_tensor("blk.0.ffn_norm.weight", &[EMBD], 0.1, 1.0, &mut rng);
        for (name, dims) in [
            ("attn_q", [EMBD, EMBD]),
            ("attn_k", [EMBD, kv]),
            ("attn_v", [EMBD, kv]),
            ("attn_output", [EMBD, EMBD]),
            ("ffn_gate", [EMBD, FF]),
            ("ffn_up", [EMBD, FF]),
            ("ffn_down", [FF, EMBD]),
        ] {
            w.f32_tensor(&format!("blk.0.{name}.weight"), &dims, 0.2, 0.0, &mut rng);
        }
        std::fs::write(&path, w.bytes()).unwrap();
    });
    path
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Ids on both sides of 65,535 and at the end of the vocabulary.
const IDS: &str = "1,70000,5,262143,131072,65535,65536,200000";

fn logits(backend: &str, kernels: &str, decode: bool) -> Vec<Vec<f64>> {
    let path = model();
    let mut args = vec!["logits", "--model", path.to_str().unwrap(), "--ids", IDS, "--backend", backend, "--kernels", kernels, "--json"];
    if decode {
        args.push("--decode");
    }
    run_json(&args)["logits"].as_array().unwrap().iter().map(floats).collect()
}

fn greedy(backend: &str, kernels: &str) -> Vec<u64> {
    let path = model();
    let got = run_json(&[
        "generate", "--model", path.to_str().unwrap(), "--ids", IDS, "--max-tokens", "6", "--temperature", "0", "--ignore-eos",
        "--backend", backend, "--kernels", kernels, "--json",
    ]);
    got["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

#[test]
fn a_262144_token_vocabulary_runs_on_both_families() {
    let want = logits("cpu", "auto", false);
    assert_eq!(want.len(), IDS.split(',').count());
    assert!(want.iter().all(|row| row.len() == VOCAB));
    let reference = greedy("cpu", "auto");
    for (kernels, decode, tolerance) in [("cpu-adapter", false, 5e-3), ("cpu-adapter", true, 5e-3), ("gpu", false, 2e-2), ("gpu", true, 2e-2)] {
        let got = logits("wgpu", kernels, decode);
        let worst = got.iter().zip(&want).flat_map(|(g, w)| g.iter().zip(w).map(|(a, b)| (a - b).abs())).fold(0.0, f64::max);
        assert!(worst <= tolerance, "{kernels} (decode {decode}): max |Δ| {worst} against the CPU reference");
        // Every row's largest logit, wherever it falls among the 262,144.
        for (p, (g, w)) in got.iter().zip(&want).enumerate() {
            let best = |r: &[f64]| (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b });
            let mut sorted = w.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > 2.0 * tolerance {
                assert_eq!(best(g), best(w), "{kernels} (decode {decode}): argmax at position {p}");
            }
        }
    }
    for kernels in ["cpu-adapter", "gpu"] {
        assert_eq!(greedy("wgpu", kernels), reference, "{kernels}: greedy continuation");
    }
}
