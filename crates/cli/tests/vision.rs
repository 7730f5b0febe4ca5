//! `burrow generate --mmproj PROJ --image FILE`, `burrow logits --image` and `burrow info --mmproj`
//! on the SmolVLM fixtures (tests/vision-fixtures, made with llama.cpp's mtmd): the greedy tokens
//! of a chat prompt with an image equal llama.cpp's, with the prompt's text tokens and image tokens
//! reported, and its last logits are within 5e-3 of llama.cpp's (wgpu: 5e-2); a projector
//! is described and checked against a language model; bad input gets one clear line.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{model_path, read_json, root, run_json};

fn fixture(name: &str) -> String {
    root().join("tests/vision-fixtures").join(name).to_str().unwrap().to_string()
}

fn burrow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_burrow")).args(args).output().expect("burrow runs");
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn an_image_in_a_chat_prompt_answers_as_llama_cpp() {
    let manifest = read_json(&PathBuf::from(fixture("vision.json")));
    let chat = &manifest["chat"];
    let expected: Vec<u64> = chat["greedy"]["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let (lm, proj, image) = (fixture("smolvlm-tiny-lm-f32.gguf"), fixture("smolvlm-tiny-mmproj-f32.gguf"), fixture(chat["image"].as_str().unwrap()));
    let max_tokens = expected.len().to_string();
    let out = run_json(&[
        "generate", "--model", &lm, "--mmproj", &proj, "--image", &image, "--prompt", chat["prompt"].as_str().unwrap(),
        "--max-tokens", &max_tokens, "--ignore-eos", "--json",
    ]);
    let ids: Vec<u64> = out["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ids, expected);
    // The text tokens are mtmd's text chunks, in order; the image is 7 tiles of 16 tokens.
    let text: Vec<u64> = chat["chunks"].as_array().unwrap().iter().filter(|c| c["type"] == "text").flat_map(|c| c["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap())).collect();
    let prompt_ids: Vec<u64> = out["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(prompt_ids, text);
    assert_eq!(out["image_tokens"], serde_json::json!([chat["n_positions"].as_u64().unwrap() - text.len() as u64]));
}

#[test]
fn logits_with_an_image_match_llama_cpp_on_each_backend() {
    let manifest = read_json(&PathBuf::from(fixture("vision.json")));
    let chat = &manifest["chat"];
    let (lm, proj, image) = (fixture("smolvlm-tiny-lm-f32.gguf"), fixture("smolvlm-tiny-mmproj-f32.gguf"), fixture(chat["image"].as_str().unwrap()));
    let reference: Vec<f64> = chat["logits_last"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for (backend, tolerance) in [("cpu", 5e-3), ("wgpu", 5e-2)] {
        let out = run_json(&[
            "logits", "--model", &lm, "--mmproj", &proj, "--image", &image, "--prompt", chat["prompt"].as_str().unwrap(),
            "--context", "512", "--backend", backend, "--json",
        ]);
        assert_eq!(out["positions"].as_u64(), chat["n_positions"].as_u64());
        let row = out["logits"][0].as_array().unwrap();
        let worst = row.iter().zip(&reference).map(|(a, b)| (a.as_f64().unwrap() - b).abs()).fold(0.0, f64::max);
        assert_eq!(row.len(), reference.len());
        assert!(worst <= tolerance, "{backend}: max |Δ| {worst} from llama.cpp");
    }
}

#[test]
fn info_describes_a_projector_and_whether_it_pairs_with_a_model() {
    let proj = fixture("smolvlm-tiny-mmproj-f32.gguf");
    let (ok, out, err) = burrow(&["info", "--mmproj", &proj, "--model", &fixture("smolvlm-tiny-lm-f32.gguf")]);
    assert!(ok, "{err}");
    assert!(out.contains("architecture: clip\n"), "{out}");
    assert!(out.contains("vision projector: idefics3\n"), "{out}");
    assert!(out.contains("encoder: 2 blocks, 64 wide, 4 heads; 16 tokens per tile\n"), "{out}");
    assert!(out.contains("smolvlm-tiny-lm-f32.gguf: yes (its embeddings are 128 wide)"), "{out}");
    let default = model_path();
    let (ok, out, _) = burrow(&["info", "--mmproj", &proj, "--model", default.to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains(": no (this vision projector writes embeddings 128 wide, but the language model's are 576 wide: they are not a pair)"), "{out}");
}

#[test]
fn bad_images_and_mismatched_pairs_get_one_clear_line() {
    let proj = fixture("smolvlm-tiny-mmproj-f32.gguf");
    let lm = fixture("smolvlm-tiny-lm-f32.gguf");
    let dir = std::env::temp_dir().join(format!("burrow-vision-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_image = dir.join("notes.png");
    std::fs::write(&not_image, "this is text, not a picture").unwrap();
    let cut = dir.join("cut.png");
    let png = std::fs::read(fixture("images/large_160x160.png")).unwrap();
    std::fs::write(&cut, &png[..png.len() / 2]).unwrap();
    for (image, message) in [
        (not_image.to_str().unwrap(), "notes.png: this file is not an image Burrow can read (PNG, JPEG or WebP)"),
        (cut.to_str().unwrap(), "cut.png: the image could not be decoded (is the file complete?)"),
    ] {
        let (ok, _, err) = burrow(&["generate", "--model", &lm, "--mmproj", &proj, "--image", image, "--prompt", "What is it?"]);
        assert!(!ok);
        assert!(err.contains(message) && err.lines().count() == 1, "{err}");
    }
    // The projector of another model: refused, saying why.
    let default = model_path();
    let (ok, _, err) = burrow(&["generate", "--model", default.to_str().unwrap(), "--mmproj", &proj, "--image", &fixture("images/tiny_13x9.png"), "--prompt", "What is it?"]);
    assert!(!ok);
    assert!(err.contains("this vision projector writes embeddings 128 wide, but the language model's are 576 wide: they are not a pair"), "{err}");
    // A language model given as the projector.
    let (ok, _, err) = burrow(&["generate", "--model", &lm, "--mmproj", &lm, "--image", &fixture("images/tiny_13x9.png"), "--prompt", "What is it?"]);
    assert!(!ok);
    assert!(err.contains("this is not a vision projector (mmproj) file: its architecture is llama"), "{err}");
    // --image without --mmproj is a usage error.
    let (ok, _, err) = burrow(&["generate", "--model", &lm, "--image", &fixture("images/tiny_13x9.png"), "--prompt", "x"]);
    assert!(!ok && err.contains("--mmproj"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Qwen2.5-VL (tests/vision-fixtures/qwen2vl, made with llama.cpp's mtmd and a budget of 32
/// tokens an image, `--image-max-tokens 32` here as in llama-mtmd-cli): the chat prompt's greedy
/// tokens equal llama.cpp's and its last logits are within 5e-3 of llama.cpp's on the CPU
/// reference and 5e-2 on wgpu; `info` describes the projector; the budget is refused for SmolVLM's
/// fixed tiles.
#[test]
fn qwen25vl_answers_as_llama_cpp_from_the_command_line() {
    let dir = root().join("tests/vision-fixtures/qwen2vl");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let manifest = read_json(&dir.join("qwen2vl.json"));
    let chat = &manifest["chat"];
    let (lm, proj, image) = (path("qwen2vl-tiny-lm-f32.gguf"), path("qwen2vl-tiny-mmproj-f32.gguf"), path(chat["image"].as_str().unwrap()));
    let budget = manifest["reference"]["mtmd_context_params"]["image_max_tokens"].to_string();
    let expected: Vec<u64> = chat["greedy"]["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let max_tokens = expected.len().to_string();
    let prompt = chat["prompt"].as_str().unwrap();
    let out = run_json(&[
        "generate", "--model", &lm, "--mmproj", &proj, "--image", &image, "--image-max-tokens", &budget, "--prompt", prompt,
        "--max-tokens", &max_tokens, "--ignore-eos", "--json",
    ]);
    let ids: Vec<u64> = out["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(ids, expected);
    assert_eq!(out["image_tokens"], serde_json::json!([chat["chunks"][1]["n_tokens"]]));
    let reference: Vec<f64> = chat["logits_last"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for (backend, tolerance) in [("cpu", 5e-3), ("wgpu", 5e-2)] {
        let out = run_json(&[
            "logits", "--model", &lm, "--mmproj", &proj, "--image", &image, "--image-max-tokens", &budget, "--prompt", prompt,
            "--context", "512", "--backend", backend, "--json",
        ]);
        assert_eq!(out["positions"].as_u64(), chat["n_tokens"].as_u64());
        let row = out["logits"][0].as_array().unwrap();
        let worst = row.iter().zip(&reference).map(|(a, b)| (a.as_f64().unwrap() - b).abs()).fold(0.0, f64::max);
        assert_eq!(row.len(), reference.len());
        assert!(worst <= tolerance, "{backend}: max |Δ| {worst} from llama.cpp");
    }

    let (ok, out, err) = burrow(&["info", "--mmproj", &proj, "--model", &lm]);
    assert!(ok, "{err}");
    assert!(out.contains("vision projector: qwen2.5vl_merger\n"), "{out}");
    assert!(out.contains("images: any size, patches of 14 px, 2 × 2 merged into a token, 8 to 4096 tokens an image\n"), "{out}");
    assert!(out.contains("encoder: 4 blocks, 64 wide, 4 heads; attention within windows of 4 × 4 tokens, over the whole image every 2 blocks\n"), "{out}");
    assert!(out.contains("qwen2vl-tiny-lm-f32.gguf: yes (its embeddings are 128 wide)"), "{out}");
    // SmolVLM's language model is as wide, but reads no grid.
    let (ok, out, _) = burrow(&["info", "--mmproj", &proj, "--model", &fixture("smolvlm-tiny-lm-f32.gguf")]);
    assert!(ok);
    assert!(out.contains(": no (this vision projector (qwen2.5vl_merger) places image tokens on a grid, but the language model (llama) has no M-RoPE to read them so: they are not a pair)"), "{out}");

    let (ok, _, err) = burrow(&[
        "generate", "--model", &fixture("smolvlm-tiny-lm-f32.gguf"), "--mmproj", &fixture("smolvlm-tiny-mmproj-f32.gguf"), "--image",
        &fixture("images/tiny_13x9.png"), "--image-max-tokens", "32", "--prompt", "What is it?",
    ]);
    assert!(!ok);
    assert!(err.contains("SmolVLM's images are cut into tiles of a fixed size: they take no token budget") && err.lines().count() == 1, "{err}");
}
