//! The `burrow` command against llama.cpp's reference data for SmolLM2-135M-Instruct Q4_1
//! (tests/golden/smollm2, see its README): tokenization, logits at every position and greedy
//! generation, held to the exact-math reference (llama.cpp on the F32-dequantized weights).

mod common;

use std::path::PathBuf;

use common::{model_path, read_json, root, run_json};
use serde_json::Value;

/// What each backend is held to.
struct Limits {
    backend: &'static str,
    /// The kernel family on wgpu (`--kernels`).
    kernels: &'static str,
    /// Evaluate the logits one token at a time (`logits --decode`: the decode kernels).
    decode: bool,
    /// Largest |Δ| allowed on any logit.
    logits: f32,
    /// Positions whose reference top-1/top-2 margin is at most this may legitimately change argmax.
    argmax_margin: f32,
    /// Greedy paths are compared up to the first step whose reference margin is below this.
    greedy_margin: f64,
    /// Also run each case without --ignore-eos and check where and how it stops. The stopping
    /// logic is the shared generation loop's, so the slower GPU backend skips it.
    check_stop: bool,
}

/// The CPU reference backend: f32 weights, f32 math.
const CPU: Limits =
    Limits { backend: "cpu", kernels: "auto", decode: false, logits: 0.01, argmax_margin: 0.01, greedy_margin: 0.05, check_stop: true };
/// wgpu with Burrow's kernels (weights quantized, another summation order): the engine-core
/// limits with the logit tolerance relaxed to 0.05, as the WebGPU issue asks.
const WGPU: Limits = Limits {
    backend: "wgpu",
    kernels: "cpu-adapter",
    decode: false,
    logits: 0.05,
    argmax_margin: 0.05,
    greedy_margin: 0.05,
    check_stop: false,
};
/// The GPU family (its decode kernels, an f16 KV cache): as the decode issue asks, logits within
/// 0.05 and greedy paths equal up to the first reference margin below 0.1.
const GPU_FAMILY: Limits =
    Limits { backend: "wgpu", kernels: "gpu", decode: true, logits: 0.05, argmax_margin: 0.05, greedy_margin: 0.1, check_stop: false };
/// The logits files store round(logit × scale) as i16; this is their worst rounding error.
const STORAGE_ERROR: f32 = 1e-3;

fn golden(name: &str) -> PathBuf {
    root().join("tests/golden/smollm2").join(name)
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

fn ids_arg(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn tokenize_matches_llama_cpp() {
    let model = model_path();
    let model = model.to_str().unwrap();
    let fixture = read_json(&golden("tokenize.json"));
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 17);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = run_json(&["tokenize", "--model", model, "--text", text, "--json"]);
        assert_eq!(ids(&got["ids"]), ids(&case["ids_special"]), "case {}", case["name"]);
    }
}

fn reference_logits(case: &Value) -> (usize, usize, Vec<f32>) {
    let shape = ids(&case["shape"]);
    let scale = case["scale"].as_f64().unwrap() as f32;
    let bytes = std::fs::read(golden(case["file"].as_str().unwrap())).unwrap();
    let values = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / scale).collect::<Vec<_>>();
    assert_eq!(values.len() as u64, shape[0] * shape[1]);
    (shape[0] as usize, shape[1] as usize, values)
}

fn top2(row: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    let mut second = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            second = best.1;
            best = (i, v);
        } else if v > second {
            second = v;
        }
    }
    (best.0, best.1 - second)
}

#[test]
fn logits_match_exact_reference_at_every_position() {
    logits_match(&CPU);
}

#[test]
fn logits_match_exact_reference_at_every_position_on_wgpu() {
    logits_match(&WGPU);
}

#[test]
fn logits_match_exact_reference_at_every_position_on_the_gpu_family() {
    logits_match(&GPU_FAMILY);
}

fn logits_match(limits: &Limits) {
    let model = model_path();
    let model = model.to_str().unwrap();
    let fixture = read_json(&golden("logits_f32model.json"));
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt_ids = ids(&case["prompt_ids"]);
        let (rows, vocab, reference) = reference_logits(case);
        assert_eq!(rows, prompt_ids.len());

        // The prompt text goes through our tokenizer and must reach the same ids.
        let prompt = case["prompt"].as_str().unwrap();
        let mut args = vec!["logits", "--model", model, "--prompt", prompt, "--backend", limits.backend, "--json"];
        if limits.backend == "wgpu" {
            args.extend(["--kernels", limits.kernels]);
        }
        if limits.decode {
            args.push("--decode");
        }
        let got = run_json(&args);
        if limits.backend == "wgpu" {
            assert_eq!(got["kernels"], limits.kernels, "{name}: the kernel family that ran");
        }
        assert_eq!(ids(&got["ids"]), prompt_ids, "{name}: prompt ids");
        let got_rows = got["logits"].as_array().unwrap();
        assert_eq!(got_rows.len(), rows);

        let mut worst = 0f32;
        for (p, row) in got_rows.iter().enumerate() {
            let row: Vec<f32> = row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(row.len(), vocab);
            let want = &reference[p * vocab..(p + 1) * vocab];
            for (a, b) in row.iter().zip(want) {
                worst = worst.max((a - b).abs());
            }
            let (want_arg, margin) = top2(want);
            assert_eq!(want_arg as u64, case["per_position_argmax"][p].as_u64().unwrap(), "{name}: fixture argmax");
            if margin > limits.argmax_margin + 2.0 * STORAGE_ERROR {
                assert_eq!(top2(&row).0, want_arg, "{name}: argmax at position {p} (reference margin {margin})");
            }
        }
        eprintln!("{} {} {name}: max |Δ logit| = {worst:.5} over {rows}×{vocab}", limits.backend, limits.kernels);
        assert!(worst <= limits.logits, "{name}: max |Δ logit| {worst} > {}", limits.logits);
    }
}

#[test]
fn logits_by_ids_equal_logits_by_prompt() {
    let model = model_path();
    let model = model.to_str().unwrap();
    let by_prompt = run_json(&["logits", "--model", model, "--prompt", "The capital of France is", "--json"]);
    let list = ids_arg(&ids(&by_prompt["ids"]));
    let by_ids = run_json(&["logits", "--model", model, "--ids", &list, "--json"]);
    assert_eq!(by_prompt, by_ids);
}

#[test]
fn greedy_generation_matches_exact_reference() {
    greedy_matches(&CPU);
}

#[test]
fn greedy_generation_matches_exact_reference_on_wgpu() {
    greedy_matches(&WGPU);
}

#[test]
fn greedy_generation_matches_exact_reference_on_the_gpu_family() {
    greedy_matches(&GPU_FAMILY);
}

fn greedy_matches(limits: &Limits) {
    let model = model_path();
    let model = model.to_str().unwrap();
    let fixture = read_json(&golden("greedy_f32model.json"));
    let eog = ids(&fixture["eog_ids"]);
    let chat_user = fixture["chat_messages"][0]["content"].as_str().unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let want = ids(&case["gen_ids"]);
        let margins: Vec<f64> =
            case["top1_minus_top2_logit_margin"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let max = want.len().to_string();
        let chat = case["parse_special"].as_bool() == Some(true);
        // The reference runs on past end-of-generation tokens; so do we, to compare every step.
        let mut args = vec![
            "generate", "--model", model, "--max-tokens", &max, "--temperature", "0", "--ignore-eos", "--json",
            "--backend", limits.backend,
        ];
        if limits.backend == "wgpu" {
            args.extend(["--kernels", limits.kernels]);
        }
        if chat {
            args.extend(["--chat", "--prompt", chat_user]);
        } else {
            args.extend(["--prompt", case["prompt"].as_str().unwrap()]);
        }
        let got = run_json(&args);
        assert_eq!(ids(&got["prompt_ids"]), ids(&case["prompt_ids"]), "{name}: prompt ids");
        let got_ids = ids(&got["ids"]);
        assert_eq!(got_ids.len(), want.len(), "{name}: --ignore-eos generates every token");
        let cut = margins.iter().position(|&m| m < limits.greedy_margin).unwrap_or(want.len());
        assert_eq!(got_ids[..cut], want[..cut], "{name}: greedy ids before the first near-tie (step {cut})");
        eprintln!("{} {} {name}: {cut} of {} greedy tokens compared, all equal", limits.backend, limits.kernels, want.len());

        // Without --ignore-eos generation ends at the first end-of-generation token, and the
        // text is the reference's text up to it.
        if let Some(first_eog) = case["first_eog_index"].as_u64().filter(|&i| limits.check_stop && (i as usize) < cut) {
            let args: Vec<&str> = args.iter().copied().filter(|a| *a != "--ignore-eos").collect();
            let got = run_json(&args);
            let got_ids = ids(&got["ids"]);
            assert_eq!(got_ids, want[..=first_eog as usize], "{name}: stops at the first end-of-generation token");
            assert!(eog.contains(got_ids.last().unwrap()));
            assert_eq!(got["finish_reason"], "stop");
            if let Some(text) = case["text_until_eog"].as_str() {
                assert_eq!(got["text"].as_str().unwrap(), text, "{name}: text");
            }
        }
    }
}

