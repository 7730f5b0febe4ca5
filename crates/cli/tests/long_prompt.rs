//! A prompt longer than one prefill pass (`burrow_engine::PREFILL_CHUNK_TOKENS`) is evaluated in
//! chunks through the KV cache; the tokens generated after it must be the greedy choices of the
//! logits that one pass over the whole sequence gives (`burrow logits`, itself checked against
//! llama.cpp and a float64 reference by the golden and architecture tests).

mod common;

use common::{root, run_json};
use serde_json::Value;

/// Generated tokens whose logit is within this of the row's largest count as its greedy choice
/// (two summation orders may swap near-ties).
const TIE: f64 = 1e-3;

fn check(backend: &str, kernels: &str) {
    let model = root().join(".cache/fixtures/llama-q4_1.gguf");
    assert!(model.exists(), "{} is missing: run `make fixtures` first", model.display());
    let path = model.to_str().unwrap();
    let chunk = burrow_engine::PREFILL_CHUNK_TOKENS;
    // Two full chunks and part of a third.
    let prompt: Vec<u32> = (0..2 * chunk + chunk / 2).map(|i| (10 + 7 * i % 190) as u32).collect();
    let ids = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let generated = run_json(&["generate", "--model", path, "--backend", backend, "--kernels", kernels, "--ids", &ids(&prompt),
        "--max-tokens", "4", "--ignore-eos", "--temperature", "0", "--json"]);
    let generated: Vec<u32> = generated["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(generated.len(), 4);
    let mut sequence = prompt.clone();
    sequence.extend(&generated[..3]);
    let logits = run_json(&["logits", "--model", path, "--backend", backend, "--kernels", kernels, "--ids", &ids(&sequence), "--json"]);
    let rows: &Vec<Value> = logits["logits"].as_array().unwrap();
    for (i, &token) in generated.iter().enumerate() {
        let row: Vec<f64> = rows[prompt.len() - 1 + i].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let best = row.iter().cloned().fold(f64::MIN, f64::max);
        assert!(row[token as usize] >= best - TIE, "{backend} {kernels}: token {i} ({token}) has logit {} against the best {best}", row[token as usize]);
    }
}

#[test]
fn chunked_prompt_continues_like_one_pass_on_cpu() {
    check("cpu", "auto");
}

#[test]
fn chunked_prompt_continues_like_one_pass_on_wgpu() {
    check("wgpu", "cpu-adapter");
}

#[test]
fn chunked_prompt_continues_like_one_pass_on_the_gpu_family() {
    check("wgpu", "gpu");
}
