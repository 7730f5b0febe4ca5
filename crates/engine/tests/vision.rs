//! A prompt with an image on the CPU reference, against llama.cpp's mtmd on the SmolVLM fixtures
//! (tests/vision-fixtures, scripts/fixtures_vision.py): the prompt's layout (text tokens around
//! each tile, positions) equals mtmd_tokenize's for every test image, the logits at the last
//! position of a chat prompt are within 5e-3 of llama.cpp's, and the greedy tokens are the same
//! (every step's reference margin is at least 1.0).

use std::path::PathBuf;

use burn::tensor::Device;
use burrow_engine::{block_on, Engine, GenerateOptions, PromptPiece};
use burrow_gguf::Gguf;
use burrow_model::{load_model, FileBytes, SamplerConfig, VisionEncoder};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vision-fixtures")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("vision.json")).unwrap()).unwrap()
}

fn load(manifest: &Value) -> (Engine, VisionEncoder) {
    let device = Device::flex();
    let lm = std::fs::read(fixtures().join(manifest["lm"]["file"].as_str().unwrap())).unwrap();
    let gguf = Gguf::parse(&lm, lm.len() as u64).unwrap();
    let engine = Engine::new(&gguf, load_model(&gguf, &mut FileBytes(&lm), &device, None).unwrap()).unwrap();
    let proj = std::fs::read(fixtures().join(manifest["mmproj"]["file"].as_str().unwrap())).unwrap();
    let vision = VisionEncoder::load(&Gguf::parse(&proj, proj.len() as u64).unwrap(), &proj, &device).unwrap();
    (engine, vision)
}

fn image(path: &str) -> burrow_vision::Rgb {
    burrow_vision::decode(&std::fs::read(fixtures().join(path)).unwrap()).unwrap()
}

/// The layout as `(text ids | image tokens)` pieces, mtmd's chunk list's shape.
fn layout(pieces: &[PromptPiece]) -> Vec<Value> {
    pieces
        .iter()
        .map(|p| match p {
            PromptPiece::Tokens(ids) => serde_json::json!({ "type": "text", "tokens": ids }),
            PromptPiece::Image(rows) => serde_json::json!({ "type": "image", "n_tokens": rows.dims()[0] }),
        })
        .collect()
}

fn mtmd_layout(chunks: &Value) -> Vec<Value> {
    chunks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| match c["type"].as_str().unwrap() {
            "text" => serde_json::json!({ "type": "text", "tokens": c["tokens"] }),
            _ => serde_json::json!({ "type": "image", "n_tokens": c["n_tokens"] }),
        })
        .collect()
}

#[test]
fn every_test_image_is_laid_out_as_llama_cpp_does() {
    let manifest = manifest();
    let (engine, vision) = load(&manifest);
    for entry in manifest["images"].as_array().unwrap() {
        let name = entry["image"].as_str().unwrap();
        // The EXIF photo is turned upright here and not by llama.cpp; its layout is the one of its
        // stored orientation.
        let rgb = if name.contains("exif") {
            let stored = &entry["decoded_rgb"];
            let shape: Vec<u32> = stored["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            burrow_vision::Rgb::new(shape[1], shape[0], std::fs::read(fixtures().join(stored["file"].as_str().unwrap())).unwrap())
        } else {
            image(name)
        };
        let prompt = engine.image_prompt(&vision, entry["prompt"].as_str().unwrap(), &[rgb]).unwrap();
        assert_eq!(layout(&prompt.pieces), mtmd_layout(&entry["chunks"]), "{name}");
        assert_eq!(prompt.len() as u64, entry["n_tokens_total"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn a_chat_prompt_with_an_image_answers_as_llama_cpp() {
    let manifest = manifest();
    let (engine, vision) = load(&manifest);
    let chat = &manifest["chat"];
    let prompt = engine.image_prompt(&vision, chat["prompt"].as_str().unwrap(), &[image(chat["image"].as_str().unwrap())]).unwrap();
    assert_eq!(layout(&prompt.pieces), mtmd_layout(&chat["chunks"]));

    let logits = block_on(engine.image_prompt_logits(&prompt, 512)).unwrap();
    let reference: Vec<f32> = chat["logits_last"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let worst = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst <= 5e-3, "max |Δ| {worst} from llama.cpp's logits");

    let expected: Vec<u32> = chat["greedy"]["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    // The default sampler is greedy.
    let opts = GenerateOptions { max_tokens: expected.len(), sampler: SamplerConfig::default(), stop: Vec::new(), ignore_eos: true };
    let mut session = engine.new_session(512).unwrap();
    let out = block_on(engine.generate_with_images(&mut session, &prompt, &opts, |_| true)).unwrap();
    assert_eq!(out.ids, expected);
}

#[test]
fn images_and_markers_must_agree_and_the_pair_must_match() {
    let manifest = manifest();
    let (engine, vision) = load(&manifest);
    let one = image("images/tiny_13x9.png");
    let err = engine.image_prompt(&vision, "no marker here", &[one.clone()]).err().unwrap();
    assert_eq!(err.to_string(), "the prompt marks 0 images but 1 were given");
    assert_eq!(err.code(), "bad-request");
}
