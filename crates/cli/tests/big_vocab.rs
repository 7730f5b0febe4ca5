//! A vocabulary of 262,144 tokens (Gemma 3's): more output rows than a dispatch dimension's 65,535
//! workgroups would cover at a workgroup per few rows, so every kernel that spreads the output
//! head or the logits over workgroups must fold them into two dimensions. A tiny Llama with that
//! vocabulary is written here as a GGUF file (random weights, the embedding Q8_0 and tied to the
//! output head), and both kernel families are checked against the CPU reference: logits at every
//! position (as one batch, and one token at a time) and the greedy continuation.

mod common;

use std::path::PathBuf;

use burrow_gguf::GgmlType;
use common::gguf::{random_blocks, Rng, Writer, GGML_Q8_0};
use common::run_json;
use serde_json::Value;

const VOCAB: usize = 262_144;
const EMBD: usize = 64;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const FF: usize = 128;

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
        w.llama_vocab(VOCAB);
        let mut rng = Rng(262_144);
        let kv = KV_HEADS * EMBD / HEADS;
        w.tensor("token_embd.weight", &[EMBD, VOCAB], GGML_Q8_0, random_blocks(GgmlType::Q8_0, EMBD * VOCAB, &mut rng));
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

fn logits(backend: &str, kernels: &str, fast_paths: &str, decode: bool) -> Vec<Vec<f64>> {
    let path = model();
    let mut args = vec![
        "logits", "--model", path.to_str().unwrap(), "--ids", IDS, "--backend", backend, "--kernels", kernels, "--fast-paths", fast_paths,
        "--json",
    ];
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
    let want = logits("cpu", "auto", "auto", false);
    assert_eq!(want.len(), IDS.split(',').count());
    assert!(want.iter().all(|row| row.len() == VOCAB));
    let reference = greedy("cpu", "auto");
    // The GPU family's prompt also with its fast paths (lavapipe has 8-bit dot products, whose
    // quantized activations move logits as llama.cpp's do: the architecture tests' 0.15).
    let runs = [
        ("cpu-adapter", "auto", false, 5e-3),
        ("cpu-adapter", "auto", true, 5e-3),
        ("gpu", "off", false, 2e-2),
        ("gpu", "auto", false, 0.15),
        ("gpu", "auto", true, 2e-2),
    ];
    for (kernels, fast_paths, decode, tolerance) in runs {
        let got = logits("wgpu", kernels, fast_paths, decode);
        let worst = got.iter().zip(&want).flat_map(|(g, w)| g.iter().zip(w).map(|(a, b)| (a - b).abs())).fold(0.0, f64::max);
        assert!(worst <= tolerance, "{kernels} {fast_paths} (decode {decode}): max |Δ| {worst} against the CPU reference");
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
