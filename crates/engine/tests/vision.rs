//! A prompt with an image on the CPU reference, against llama.cpp's mtmd on the SmolVLM fixtures
//! (tests/vision-fixtures, scripts/fixtures_vision.py): the prompt's layout (text tokens around
//! each tile, positions) equals mtmd_tokenize's for every test image, the logits at the last
//! position of a chat prompt are within 5e-3 of llama.cpp's, and the greedy tokens are the same
//! (every step's reference margin is at least 1.0).

use std::path::PathBuf;

use burn::tensor::Device;
use burrow_engine::{block_on, Engine, GenerateOptions, ImageInput, PromptPiece};
use burrow_gguf::Gguf;
use burrow_gpu::{Gpu, Kernels};
use burrow_model::{load_model, FileBytes, SamplerConfig, VisionEncoder};
use burrow_text::{ChatMessage, ChatTemplate};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vision-fixtures")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("vision.json")).unwrap()).unwrap()
}

fn load(manifest: &Value) -> Engine {
    load_on(manifest, &Device::flex(), None)
}

/// SmolVLM's chat template (HuggingFaceTB/SmolVLM-256M-Instruct): it reads each message's content
/// as a list of typed parts. The fixture language model has no template of its own.
const SMOLVLM_TEMPLATE: &str = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

/// The fixtures' pair on `device`, running `kernels` (`None`: the CPU reference).
fn load_on(manifest: &Value, device: &Device, kernels: Option<Kernels>) -> Engine {
    let lm = std::fs::read(fixtures().join(manifest["lm"]["file"].as_str().unwrap())).unwrap();
    let gguf = Gguf::parse(&lm, lm.len() as u64).unwrap();
    let mut engine = Engine::new(&gguf, load_model(&gguf, &mut FileBytes(&lm), device, kernels).unwrap()).unwrap();
    engine.template = Some(ChatTemplate::new(SMOLVLM_TEMPLATE, "<|im_start|>", "<end_of_utterance>").unwrap());
    let proj = std::fs::read(fixtures().join(manifest["mmproj"]["file"].as_str().unwrap())).unwrap();
    let vision = VisionEncoder::load(&Gguf::parse(&proj, proj.len() as u64).unwrap(), &proj, device, kernels).unwrap();
    engine.attach_vision(vision).unwrap();
    engine
}

fn image(path: &str) -> ImageInput {
    ImageInput::from_file(std::fs::read(fixtures().join(path)).unwrap())
}

/// The layout as `(text ids | image tokens)` pieces, mtmd's chunk list's shape.
fn layout(pieces: &[PromptPiece]) -> Vec<Value> {
    pieces
        .iter()
        .map(|p| match p {
            PromptPiece::Tokens(ids) => serde_json::json!({ "type": "text", "tokens": ids }),
            PromptPiece::Image { tokens, .. } => serde_json::json!({ "type": "image", "n_tokens": tokens }),
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
    let engine = load(&manifest);
    for entry in manifest["images"].as_array().unwrap() {
        let name = entry["image"].as_str().unwrap();
        // The EXIF photo is turned upright here and not by llama.cpp; its layout is the one of its
        // stored orientation.
        let rgb = if name.contains("exif") {
            let stored = &entry["decoded_rgb"];
            let shape: Vec<u32> = stored["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            ImageInput::from_pixels(burrow_vision::Rgb::new(shape[1], shape[0], std::fs::read(fixtures().join(stored["file"].as_str().unwrap())).unwrap()))
        } else {
            image(name)
        };
        let prompt = engine.image_prompt(entry["prompt"].as_str().unwrap(), &[rgb]).unwrap();
        assert_eq!(layout(&prompt.pieces), mtmd_layout(&entry["chunks"]), "{name}");
        assert_eq!(prompt.len() as u64, entry["n_tokens_total"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn a_chat_prompt_with_an_image_answers_as_llama_cpp() {
    let manifest = manifest();
    let engine = load(&manifest);
    let chat = &manifest["chat"];
    let prompt = engine.image_prompt(chat["prompt"].as_str().unwrap(), &[image(chat["image"].as_str().unwrap())]).unwrap();
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
    let engine = load(&manifest);
    let one = image("images/tiny_13x9.png");
    let err = engine.image_prompt("no marker here", &[one.clone()]).err().unwrap();
    assert_eq!(err.to_string(), "the prompt marks 0 images but 1 were given");
    assert_eq!(err.code(), "bad-request");
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { max_tokens, sampler: SamplerConfig::default(), stop: Vec::new(), ignore_eos: true }
}

fn user(content: &str) -> ChatMessage {
    ChatMessage { role: "user".into(), content: content.into() }
}

/// The KV cache holds an image like text: a follow-up question about the same photo evaluates
/// only the new turn (the image is not encoded again), and answers exactly as a fresh
/// conversation that evaluates everything.
#[test]
fn a_follow_up_about_the_same_photo_reuses_the_cache() {
    let engine = load(&manifest());
    let photo = image("images/large_160x160.png");
    let mut chat = engine.new_chat(512).unwrap();
    let mut messages = vec![user("<__media__>What is in the picture?")];
    let first = block_on(engine.chat(&mut chat, &messages, &[photo.clone()], &greedy(4), |_| true)).unwrap();
    assert_eq!(first.evaluated_tokens, first.prompt_tokens);
    messages.push(ChatMessage { role: "assistant".into(), content: first.generated.text.clone() });
    messages.push(user("And its colours?"));
    let images = [photo.clone()];
    let follow_up = block_on(engine.chat(&mut chat, &messages, &images, &greedy(6), |_| true)).unwrap();
    assert!(
        follow_up.evaluated_tokens <= follow_up.prompt_tokens - first.prompt_tokens,
        "evaluated {} of {} positions; the first turn took {}",
        follow_up.evaluated_tokens,
        follow_up.prompt_tokens,
        first.prompt_tokens
    );
    let mut fresh = engine.new_chat(512).unwrap();
    let whole = block_on(engine.chat(&mut fresh, &messages, &images, &greedy(6), |_| true)).unwrap();
    assert_eq!(whole.evaluated_tokens, whole.prompt_tokens);
    assert_eq!(follow_up.generated.ids, whole.generated.ids);
}

/// A conversation longer than the context loses its oldest turn together with that turn's image.
#[test]
fn the_oldest_turn_leaves_with_its_image() {
    let engine = load(&manifest());
    let (a, b) = (image("images/large_160x160.png"), image("images/wide_100x37.png"));
    let messages = [
        user("<__media__>What is this?"),
        ChatMessage { role: "assistant".into(), content: "A pattern.".into() },
        user("<__media__>And this one?"),
    ];
    let mut whole = engine.new_chat(512).unwrap();
    let both = block_on(engine.chat(&mut whole, &messages, &[a.clone(), b.clone()], &greedy(2), |_| true)).unwrap();
    assert_eq!(both.dropped_messages, 0);
    // Room for the last turn alone, with a reply.
    let mut small = engine.new_chat(both.prompt_tokens - 20).unwrap();
    let last = block_on(engine.chat(&mut small, &messages, &[a, b.clone()], &greedy(2), |_| true)).unwrap();
    assert_eq!(last.dropped_messages, 2);
    let mut alone = engine.new_chat(512).unwrap();
    let expected = block_on(engine.chat(&mut alone, &messages[2..], &[b], &greedy(2), |_| true)).unwrap();
    assert_eq!((last.prompt_tokens, &last.generated.ids), (expected.prompt_tokens, &expected.generated.ids));
}

/// Images for a model without a projector, a file that is not an image, and markers that do not
/// match the images: each a clear error, and the conversation goes on afterwards.
#[test]
fn bad_image_requests_are_refused_and_the_chat_goes_on() {
    let manifest = manifest();
    let engine = load(&manifest);
    let mut chat = engine.new_chat(512).unwrap();
    let ask = [user("<__media__>What is this?")];
    let err = block_on(engine.chat(&mut chat, &ask, &[ImageInput::from_file(b"not a picture".to_vec())], &greedy(2), |_| true)).unwrap_err();
    assert_eq!((err.code(), err.to_string().as_str()), ("bad-image", "this file is not an image Burrow can read (PNG, JPEG or WebP)"));
    let err = block_on(engine.chat(&mut chat, &ask, &[], &greedy(2), |_| true)).unwrap_err();
    assert_eq!((err.code(), err.to_string().as_str()), ("bad-request", "the messages mark 1 images but 0 were given"));
    let ok = block_on(engine.chat(&mut chat, &ask, &[image("images/tiny_13x9.png")], &greedy(2), |_| true)).unwrap();
    assert_eq!(ok.generated.ids.len(), 2);

    let lm = std::fs::read(fixtures().join(manifest["lm"]["file"].as_str().unwrap())).unwrap();
    let gguf = Gguf::parse(&lm, lm.len() as u64).unwrap();
    let mut blind = Engine::new(&gguf, load_model(&gguf, &mut FileBytes(&lm), &Device::flex(), None).unwrap()).unwrap();
    blind.template = Some(ChatTemplate::new(SMOLVLM_TEMPLATE, "<|im_start|>", "<end_of_utterance>").unwrap());
    let mut chat = blind.new_chat(512).unwrap();
    let err = block_on(blind.chat(&mut chat, &ask, &[image("images/tiny_13x9.png")], &greedy(2), |_| true)).unwrap_err();
    assert_eq!(err.code(), "bad-request");
    assert_eq!(err.to_string(), "this model does not read images: no vision projector (mmproj) is loaded with it");
}

/// The wgpu device, opened once for this binary (a second init fails).
fn gpu() -> &'static Gpu {
    static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Gpu::open().expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)"))
}

/// The whole path on wgpu, in each kernel family (the encoder's matrices and the language model
/// in Burrow's kernels): the chat prompt's logits within 5e-2 of llama.cpp's and the same greedy
/// tokens (every reference margin is at least 1.0).
#[test]
fn on_wgpu_each_kernel_family_answers_as_llama_cpp() {
    let gpu = gpu();
    let manifest = manifest();
    let chat = &manifest["chat"];
    let mut families = vec![Kernels::cpu_adapter(), Kernels::gpu(false)];
    if gpu.adapter.subgroups {
        families.push(Kernels::gpu(true));
    }
    for kernels in families {
        let engine = load_on(&manifest, &gpu.device, Some(kernels));
        let prompt = engine.image_prompt(chat["prompt"].as_str().unwrap(), &[image(chat["image"].as_str().unwrap())]).unwrap();
        let logits = block_on(engine.image_prompt_logits(&prompt, 512)).unwrap();
        let reference: Vec<f32> = chat["logits_last"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let worst = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst <= 5e-2, "{kernels:?}: max |Δ| {worst} from llama.cpp's logits");
        let expected: Vec<u32> = chat["greedy"]["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut session = engine.new_session(512).unwrap();
        let out = block_on(engine.generate_with_images(&mut session, &prompt, &greedy(expected.len()), |_| true)).unwrap();
        assert_eq!(out.ids, expected, "{kernels:?}");
    }
}

// Qwen2.5-VL (`qwen2vl` language model with M-RoPE + `qwen2.5vl_merger`) against llama.cpp's mtmd
// on tests/vision-fixtures/qwen2vl (scripts/fixtures_vision_qwen2vl.py): each test image's layout
// and every position (time, row, column) equal mtmd's, with the references' budget (8 to 32
// tokens an image) and llama.cpp's default; the chat prompt's last logits are within 5e-3 of
// llama.cpp's on the CPU reference and 5e-2 on wgpu, and the greedy tokens equal (every margin
// at least 1.0).

fn qwen_fixtures() -> PathBuf {
    fixtures().join("qwen2vl")
}

fn qwen_manifest() -> Value {
    serde_json::from_slice(&std::fs::read(qwen_fixtures().join("qwen2vl.json")).unwrap()).unwrap()
}

/// Qwen2-VL's chat format for string contents (the fixture language model has no template).
const QWEN_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The pair on `device` running `kernels`; `max_tokens`: an image's token budget's top, as
/// llama.cpp's `--image-max-tokens` (`None`: its default).
fn qwen_on(manifest: &Value, device: &Device, kernels: Option<Kernels>, max_tokens: Option<usize>) -> Engine {
    let lm = std::fs::read(qwen_fixtures().join(manifest["lm"]["file"].as_str().unwrap())).unwrap();
    let gguf = Gguf::parse(&lm, lm.len() as u64).unwrap();
    let mut engine = Engine::new(&gguf, load_model(&gguf, &mut FileBytes(&lm), device, kernels).unwrap()).unwrap();
    engine.template = Some(ChatTemplate::new(QWEN_TEMPLATE, "", "<|im_end|>").unwrap());
    let proj = std::fs::read(qwen_fixtures().join(manifest["mmproj"]["file"].as_str().unwrap())).unwrap();
    let mut vision = VisionEncoder::load(&Gguf::parse(&proj, proj.len() as u64).unwrap(), &proj, device, kernels).unwrap();
    if let Some(max) = max_tokens {
        vision.set_image_token_budget(8, max).unwrap();
    }
    engine.attach_vision(vision).unwrap();
    engine
}

/// The references' budget.
fn qwen_test_budget(manifest: &Value) -> Option<usize> {
    Some(manifest["reference"]["mtmd_context_params"]["image_max_tokens"].as_u64().unwrap() as usize)
}

fn qwen_image(path: &str) -> ImageInput {
    ImageInput::from_file(std::fs::read(qwen_fixtures().join(path)).unwrap())
}

/// The image as llama.cpp decoded it: the JPEG as stored (stb_image ignores EXIF), the others
/// as they are.
fn qwen_as_llama_cpp_decoded(entry: &Value) -> ImageInput {
    let stored = &entry["decoded_rgb"];
    match stored["file"].as_str() {
        Some(raw) => {
            let shape: Vec<u32> = stored["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            ImageInput::from_pixels(burrow_vision::Rgb::new(shape[1], shape[0], std::fs::read(qwen_fixtures().join(raw)).unwrap()))
        }
        None => qwen_image(entry["image"].as_str().unwrap()),
    }
}

/// mtmd's positions: `[t, h, w, 0]` per token → `[t, h, w]`.
fn mtmd_positions(v: &Value) -> Vec<[u32; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p: Vec<u32> = p.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            assert_eq!(p[3], 0);
            [p[0], p[1], p[2]]
        })
        .collect()
}

/// A prompt's positions from mtmd's chunks: text tokens one after another, an image's as mtmd
/// lists them, the text after it from its first position plus `n_pos`.
fn mtmd_chunk_positions(chunks: &Value) -> Vec<[u32; 3]> {
    let mut out = Vec::new();
    let mut next = 0;
    for c in chunks.as_array().unwrap() {
        if c["type"] == "text" {
            for _ in c["tokens"].as_array().unwrap() {
                out.push([next; 3]);
                next += 1;
            }
        } else {
            out.extend(mtmd_positions(&c["positions"]));
            next += c["n_pos"].as_u64().unwrap() as u32;
        }
    }
    out
}

#[test]
fn qwen_every_test_image_is_laid_out_and_placed_as_llama_cpp_does() {
    let manifest = qwen_manifest();
    let engine = qwen_on(&manifest, &Device::flex(), None, qwen_test_budget(&manifest));
    let default = qwen_on(&manifest, &Device::flex(), None, None);
    for entry in manifest["images"].as_array().unwrap() {
        let name = entry["image"].as_str().unwrap();
        let prompt = engine.image_prompt(entry["prompt"].as_str().unwrap(), &[qwen_as_llama_cpp_decoded(entry)]).unwrap();
        assert_eq!(layout(&prompt.pieces), mtmd_layout(&entry["chunks"]), "{name}");
        assert_eq!(prompt.len() as u64, entry["n_tokens_total"].as_u64().unwrap(), "{name}");
        let positions = prompt.positions();
        assert_eq!(positions, mtmd_chunk_positions(&entry["chunks"]), "{name}");
        assert_eq!(positions.last().unwrap()[0] as u64 + 1, entry["n_positions_total"].as_u64().unwrap(), "{name}");
        // llama.cpp's default budget of 8 to 4096 tokens.
        let prompt = default.image_prompt(entry["prompt"].as_str().unwrap(), &[qwen_as_llama_cpp_decoded(entry)]).unwrap();
        assert_eq!(prompt.image_tokens, [entry["default_budget"]["n_image_tokens"].as_u64().unwrap() as usize], "{name}");
    }
}

/// The chat prompt's last logits within `tolerance` of llama.cpp's, and its greedy tokens.
fn qwen_chat_answers_as_llama_cpp(engine: &Engine, tolerance: f32, what: &str) {
    let manifest = qwen_manifest();
    let chat = &manifest["chat"];
    let prompt = engine.image_prompt(chat["prompt"].as_str().unwrap(), &[qwen_image(chat["image"].as_str().unwrap())]).unwrap();
    assert_eq!(layout(&prompt.pieces), mtmd_layout(&chat["chunks"]), "{what}");
    assert_eq!(prompt.positions(), mtmd_positions(&chat["positions"]), "{what}");

    let logits = block_on(engine.image_prompt_logits(&prompt, 512)).unwrap();
    let reference: Vec<f32> = chat["logits_last"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let worst = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst <= tolerance, "{what}: max |Δ| {worst} from llama.cpp's logits");

    let expected: Vec<u32> = chat["greedy"]["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let mut session = engine.new_session(512).unwrap();
    let out = block_on(engine.generate_with_images(&mut session, &prompt, &greedy(expected.len()), |_| true)).unwrap();
    assert_eq!(out.ids, expected, "{what}");
    // The reply's positions went on from llama.cpp's n_past, not from the cache slots.
    let n_past = chat["n_past"].as_u64().unwrap() as usize;
    assert_eq!(session.position() - session.rope_position(), prompt.len() - n_past, "{what}");
}

#[test]
fn qwen_a_chat_prompt_with_an_image_answers_as_llama_cpp() {
    let manifest = qwen_manifest();
    let engine = qwen_on(&manifest, &Device::flex(), None, qwen_test_budget(&manifest));
    qwen_chat_answers_as_llama_cpp(&engine, 5e-3, "cpu");
}

#[test]
fn qwen_on_wgpu_each_kernel_family_answers_as_llama_cpp() {
    let gpu = gpu();
    let manifest = qwen_manifest();
    let mut families = vec![Kernels::cpu_adapter(), Kernels::gpu(false)];
    if gpu.adapter.subgroups {
        families.push(Kernels::gpu(true));
    }
    for kernels in families {
        let engine = qwen_on(&manifest, &gpu.device, Some(kernels), qwen_test_budget(&manifest));
        qwen_chat_answers_as_llama_cpp(&engine, 5e-2, &format!("{kernels:?}"));
    }
}

/// A follow-up about the same photo evaluates only the new turn, with the positions after the
/// image (which trail the cache slots) carried over, and answers exactly as a conversation
/// evaluated from scratch.
#[test]
fn qwen_a_follow_up_about_the_same_photo_reuses_the_cache() {
    let manifest = qwen_manifest();
    let engine = qwen_on(&manifest, &Device::flex(), None, qwen_test_budget(&manifest));
    let photo = qwen_image(manifest["chat"]["image"].as_str().unwrap());
    let mut chat = engine.new_chat(512).unwrap();
    let mut messages = vec![user("<__media__>Describe this image.")];
    let first = block_on(engine.chat(&mut chat, &messages, &[photo.clone()], &greedy(4), |_| true)).unwrap();
    assert_eq!(first.evaluated_tokens, first.prompt_tokens);
    messages.push(ChatMessage { role: "assistant".into(), content: first.generated.text.clone() });
    messages.push(user("And its colours?"));
    let images = [photo];
    let follow_up = block_on(engine.chat(&mut chat, &messages, &images, &greedy(6), |_| true)).unwrap();
    assert!(follow_up.evaluated_tokens <= follow_up.prompt_tokens - first.prompt_tokens, "evaluated {} of {}", follow_up.evaluated_tokens, follow_up.prompt_tokens);
    let mut fresh = engine.new_chat(512).unwrap();
    let whole = block_on(engine.chat(&mut fresh, &messages, &images, &greedy(6), |_| true)).unwrap();
    assert_eq!(whole.evaluated_tokens, whole.prompt_tokens);
    assert_eq!(follow_up.generated.ids, whole.generated.ids);
}

/// Each projector places its images as its language model reads them: Qwen2.5-VL's grid needs
/// an M-RoPE model, and SmolVLM's tiles a model without one (both pairs are 128 wide here).
#[test]
fn a_projector_pairs_only_with_a_language_model_that_places_images_its_way() {
    let (smol, qwen) = (manifest(), qwen_manifest());
    let device = Device::flex();
    let read = |dir: PathBuf, file: &Value| std::fs::read(dir.join(file.as_str().unwrap())).unwrap();
    let engine_of = |lm: Vec<u8>| {
        let gguf = Gguf::parse(&lm, lm.len() as u64).unwrap();
        Engine::new(&gguf, load_model(&gguf, &mut FileBytes(&lm), &device, None).unwrap()).unwrap()
    };
    let encoder_of = |proj: Vec<u8>| VisionEncoder::load(&Gguf::parse(&proj, proj.len() as u64).unwrap(), &proj, &device, None).unwrap();
    let mut smol_lm = engine_of(read(fixtures(), &smol["lm"]["file"]));
    let err = smol_lm.attach_vision(encoder_of(read(qwen_fixtures(), &qwen["mmproj"]["file"]))).unwrap_err();
    assert_eq!(err.code(), "unsupported");
    assert_eq!(
        err.to_string(),
        "this vision projector (qwen2.5vl_merger) places image tokens on a grid, but the language model (llama) has no M-RoPE to read them so: they are not a pair"
    );
    let mut qwen_lm = engine_of(read(qwen_fixtures(), &qwen["lm"]["file"]));
    let err = qwen_lm.attach_vision(encoder_of(read(fixtures(), &smol["mmproj"]["file"]))).unwrap_err();
    assert_eq!(err.code(), "unsupported");
}
