//! Burrow's engine in the browser: the wasm-bindgen surface `web/worker.js` drives.
//!
//! The worker streams the stored model into [`Engine::push_chunk`] chunk by chunk (each tensor
//! goes to the GPU as its bytes arrive, so the wasm heap never holds more than a piece of it), the
//! same for a vision projector ([`Engine::push_projector_chunk`]), then chats through
//! [`Engine::chat`], whose messages may carry images as OpenAI content parts. Every GPU read is awaited. Errors reach JavaScript as `Error`
//! objects with a `code` (see `web/worker.js`); nothing here panics on bad input.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;

use base64::Engine as _;
use burn::tensor::Device;
use burrow_engine::{
    projector_error, Admission, ChatSession, Engine as Core, EngineError, FinishReason, GenerateOptions, ImageInput, ProjectorAdmission,
    MEDIA_MARKER,
};
use burrow_gpu::{Gpu, KernelChoice, Kernels};
use burrow_model::{SamplerConfig, StreamLoader, VisionBuilder};
use burrow_text::ChatMessage;
use js_sys::{Function, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

/// The context a chat gets by default when the model allows that much: its KV cache is
/// preallocated, so this bounds the memory a conversation takes (SmolLM2-135M: 46 KiB per
/// position).
const CHAT_CONTEXT: usize = 2048;

/// Tokens a reply may have when the request does not say.
const DEFAULT_MAX_TOKENS: usize = 512;

/// The most tokens an image becomes by default in the browser, where a projector sizes images to
/// a budget (Qwen2.5-VL): about 0.8 megapixels, a few seconds of a phone GPU and some tens of MB
/// of activations; llama.cpp's own default, 4096, is for desktops. A request's
/// `image_max_tokens` raises it (the app's "Photo detail" setting).
const PHONE_IMAGE_MAX_TOKENS: usize = 1024;

/// The fewest tokens an image becomes (llama.cpp's default for Qwen2.5-VL).
const IMAGE_MIN_TOKENS: usize = burrow_vision::Qwen2Vl::DEFAULT_MIN_TOKENS as usize;

thread_local! {
    /// One WebGPU device per worker: Burn initializes a device once.
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

unsafe extern "C" {
    /// The static constructors wasm-ld collects (cubecl registers its IR dialects through
    /// `inventory` constructors).
    fn __wasm_call_ctors();
}

/// Runs the static constructors once. Unless the module calls `__wasm_call_ctors` itself,
/// wasm-ld treats it as a run-once "command" and calls every constructor again at the start of
/// each export, that is on every call from JavaScript (each GPU callback and promise): that
/// re-registration took most of the time of a decode step in the browser.
///
/// A bug that panics still aborts the wasm instance; the hook at least puts its message in the
/// console instead of a bare "unreachable".
#[wasm_bindgen(start)]
fn start() {
    // SAFETY: called once, first, before any other code of this module runs on this instance.
    unsafe { __wasm_call_ctors() };
    std::panic::set_hook(Box::new(|info| {
        let console = Reflect::get(&js_sys::global(), &"console".into()).ok();
        let log = console.as_ref().and_then(|c| Reflect::get(c, &"error".into()).ok());
        if let (Some(console), Some(log)) = (console, log.and_then(|f| f.dyn_into::<Function>().ok())) {
            let _ = log.call1(&console, &JsValue::from_str(&format!("burrow: {info}")));
        }
    }));
}

/// A JavaScript `Error` with a `code` property.
fn error(code: &str, message: impl AsRef<str>) -> JsValue {
    let e = js_sys::Error::new(message.as_ref());
    let _ = Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

/// An engine error for JavaScript, its code telling the worker what it may do (delete the file
/// only for `bad-file`, offer a reload for `gpu-lost`).
fn engine_error(e: EngineError) -> JsValue {
    error(e.code(), e.to_string())
}

/// A failure while loading: which file is named by the worker.
fn load_error(e: EngineError) -> JsValue {
    error(e.code(), format!("The model cannot be loaded: {e}"))
}

/// A failure while loading the vision projector.
fn projector_load_error(e: EngineError) -> JsValue {
    error(e.code(), format!("The vision projector cannot be loaded: {e}"))
}

/// The worker's WebGPU device; `cpu_hint` is what the page read from the adapter's info (wgpu
/// learns neither its name nor its type in a browser).
async fn gpu(cpu_hint: Option<bool>) -> Result<Gpu, JsValue> {
    if let Some(gpu) = GPU.with(|g| g.borrow().clone()) {
        return Ok(gpu);
    }
    let gpu = Gpu::open_async(cpu_hint).await.map_err(|e| error("no-webgpu", format!("WebGPU could not be started: {e}")))?;
    GPU.with(|g| *g.borrow_mut() = Some(gpu.clone()));
    Ok(gpu)
}

enum State {
    Loading(StreamLoader),
    Ready(Box<Chat>),
    /// After an error while loading: the engine must be created again.
    Broken,
}

/// A loaded model and the conversation held in its KV cache.
struct Chat {
    core: Core,
    chat: ChatSession,
    /// A vision projector on its way in.
    projector: Option<StreamLoader<VisionBuilder>>,
}

/// A message as the API takes it: `content` is a string or OpenAI content parts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestMessage {
    role: String,
    content: Content,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

/// The messages as the engine takes them: text with a [`MEDIA_MARKER`] where each image was, and
/// the images in order, decoded from their `data:` URLs (the engine decodes the pixels itself).
fn parse_messages(json: &str) -> Result<(Vec<ChatMessage>, Vec<ImageInput>), JsValue> {
    let request: Vec<RequestMessage> = serde_json::from_str(json).map_err(|e| {
        bad(format!("messages must be [{{role, content}}], content a string or a list of text and image_url parts: {e}"))
    })?;
    let mut images = Vec::new();
    let mut messages = Vec::with_capacity(request.len());
    let plain = |text: String| {
        if text.contains(MEDIA_MARKER) {
            return Err(bad(format!("a message's text may not contain {MEDIA_MARKER}, Burrow's image marker; send images as image_url parts")));
        }
        Ok(text)
    };
    for message in request {
        let content = match message.content {
            Content::Text(text) => plain(text)?,
            Content::Parts(parts) => {
                let mut content = String::new();
                for part in parts {
                    match part {
                        Part::Text { text } => content.push_str(&plain(text)?),
                        Part::ImageUrl { image_url } => {
                            images.push(ImageInput::from_file(data_url_bytes(&image_url.url)?));
                            content.push_str(MEDIA_MARKER);
                        }
                    }
                }
                content
            }
        };
        messages.push(ChatMessage { role: message.role, content });
    }
    Ok((messages, images))
}

/// The bytes of a base64 `data:` URL. Other URLs are refused: fetching one would send the
/// conversation's images off the device, and the engine decodes the file itself.
fn data_url_bytes(url: &str) -> Result<Vec<u8>, JsValue> {
    let refuse = || bad("an image_url must be a data: URL of the image file (data:image/jpeg;base64,…)");
    let rest = url.strip_prefix("data:").ok_or_else(refuse)?;
    let (header, data) = rest.split_once(',').ok_or_else(refuse)?;
    if !header.ends_with(";base64") {
        return Err(refuse());
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| error("bad-image", format!("the image's data URL is not valid base64: {e}")))
}

/// `options` of a chat or completion request, as the OpenAI-style API names them.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestOptions {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    max_tokens: Option<usize>,
    stop: Option<Stop>,
    seed: Option<u64>,
    /// For `complete` only: keep generating past end-of-generation tokens.
    ignore_eos: Option<bool>,
    /// The most tokens an image becomes, where the projector takes a budget.
    image_max_tokens: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

impl RequestOptions {
    fn parse(json: &str) -> Result<RequestOptions, JsValue> {
        serde_json::from_str(json).map_err(|e| bad(format!("options: {e}")))
    }

    fn generate(&self) -> GenerateOptions {
        let d = SamplerConfig::default();
        GenerateOptions {
            max_tokens: self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            sampler: SamplerConfig {
                temperature: self.temperature.unwrap_or(d.temperature),
                top_k: self.top_k.unwrap_or(d.top_k),
                top_p: self.top_p.unwrap_or(d.top_p),
                min_p: self.min_p.unwrap_or(d.min_p),
                repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
                repeat_last_n: d.repeat_last_n,
                seed: self.seed.unwrap_or(d.seed),
            },
            stop: match &self.stop {
                None => Vec::new(),
                Some(Stop::One(s)) => vec![s.clone()],
                Some(Stop::Many(list)) => list.clone(),
            },
            ignore_eos: self.ignore_eos.unwrap_or(false),
        }
    }
}

/// What `chat` resolves to.
#[derive(Serialize)]
struct ChatStats {
    finish_reason: FinishReason,
    prompt_tokens: usize,
    completion_tokens: usize,
    tokens_per_second: f64,
    prefill_tokens_per_second: f64,
    ids: Vec<u32>,
    /// The oldest messages left out so that the conversation fit in the context.
    dropped_messages: usize,
}

/// What `complete` resolves to.
#[derive(Serialize)]
struct CompleteStats {
    finish_reason: FinishReason,
    ids: Vec<u32>,
    tokens_per_second: f64,
    prefill_tokens_per_second: f64,
}

fn to_json(value: &impl Serialize) -> Result<String, JsValue> {
    serde_json::to_string(value).map_err(|e| error("engine-failed", e.to_string()))
}

#[wasm_bindgen]
pub struct Engine {
    state: State,
    device: Device,
    kernels: Kernels,
    /// The most tokens a conversation keeps, at most the model's own context.
    context_length: usize,
}

#[wasm_bindgen]
impl Engine {
    /// Acquires the WebGPU device and prepares to receive a GGUF file of `size` bytes, to run the
    /// kernel family `kernels` (`auto`, the default, `gpu` or `cpu-adapter`; `auto` picks by the
    /// adapter, a CPU one if `cpu_adapter` says so), with conversations of up to
    /// `context_length` tokens (the model's own limit and [`CHAT_CONTEXT`] by default).
    pub async fn create(
        size: f64,
        kernels: Option<String>,
        cpu_adapter: Option<bool>,
        context_length: Option<u32>,
    ) -> Result<Engine, JsValue> {
        if !(size.is_finite() && size > 0.0) {
            return Err(error("bad-request", format!("a model size of {size} bytes")));
        }
        if context_length == Some(0) {
            return Err(bad("contextLength must be at least 1"));
        }
        let choice = kernels.as_deref().map_or(Ok(KernelChoice::Auto), KernelChoice::parse).map_err(bad)?;
        let gpu = gpu(cpu_adapter).await?;
        let kernels = Kernels::choose(choice, &gpu.adapter);
        let loader = StreamLoader::new(size as u64, &gpu.device, Some(kernels));
        Ok(Engine {
            state: State::Loading(loader),
            device: gpu.device.clone(),
            kernels,
            context_length: context_length.map_or(CHAT_CONTEXT, |n| n as usize),
        })
    }

    /// The kernel family the engine runs: `gpu` or `cpu-adapter`.
    pub fn kernels(&self) -> String {
        self.kernels.name().to_string()
    }

    /// The next chunk of the file, in order.
    pub fn push_chunk(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        let State::Loading(loader) = &mut self.state else {
            return Err(error("bad-request", "the model is already loaded"));
        };
        if let Err(e) = loader.push(chunk) {
            self.state = State::Broken;
            return Err(load_error(e.into()));
        }
        Ok(())
    }

    /// Ends loading: the weights are on the GPU, the tokenizer and chat template built.
    pub fn finish(&mut self) -> Result<(), JsValue> {
        let State::Loading(loader) = std::mem::replace(&mut self.state, State::Broken) else {
            return Err(error("bad-request", "the model is not being loaded"));
        };
        let (gguf, model) = loader.finish().map_err(|e| load_error(e.into()))?;
        let n_ctx = model.config.n_ctx_train.clamp(1, self.context_length);
        let core = Core::new(&gguf, model).map_err(load_error)?;
        let chat = core.new_chat(n_ctx).map_err(load_error)?;
        self.state = State::Ready(Box::new(Chat { core, chat, projector: None }));
        Ok(())
    }

    /// After [`Engine::finish`]: prepares to receive a vision projector (mmproj GGUF) of `size`
    /// bytes, in order through [`Engine::push_projector_chunk`], then
    /// [`Engine::finish_projector`].
    pub fn start_projector(&mut self, size: f64) -> Result<(), JsValue> {
        let State::Ready(ready) = &mut self.state else {
            return Err(error("bad-request", "load the language model before its vision projector"));
        };
        if !(size.is_finite() && size > 0.0) {
            return Err(error("bad-request", format!("a projector size of {size} bytes")));
        }
        ready.projector = Some(StreamLoader::of(size as u64, &self.device, Some(self.kernels)));
        Ok(())
    }

    /// The next chunk of the projector file, in order.
    pub fn push_projector_chunk(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        let State::Ready(ready) = &mut self.state else {
            return Err(error("bad-request", "no vision projector is being loaded"));
        };
        let loader = ready.projector.as_mut().ok_or_else(|| error("bad-request", "no vision projector is being loaded"))?;
        if let Err(e) = loader.push(chunk) {
            ready.projector = None;
            return Err(projector_load_error(projector_error(e)));
        }
        Ok(())
    }

    /// Ends loading the projector: the model reads images from now on. A projector that does
    /// not pair with the model is refused (`unsupported`) and the model goes on without it.
    pub fn finish_projector(&mut self) -> Result<(), JsValue> {
        let State::Ready(ready) = &mut self.state else {
            return Err(error("bad-request", "no vision projector is being loaded"));
        };
        let loader = ready.projector.take().ok_or_else(|| error("bad-request", "no vision projector is being loaded"))?;
        let (_, encoder) = loader.finish().map_err(|e| projector_load_error(projector_error(e)))?;
        ready.core.attach_vision(encoder).map_err(projector_load_error)
    }

    /// Whether the loaded model reads images.
    pub fn has_vision(&self) -> bool {
        matches!(&self.state, State::Ready(ready) if ready.core.vision().is_ok())
    }

    /// Answers the conversation `messages_json` (`[{role, content}]`, each content a string or
    /// OpenAI parts: `{type: "text", text}`, `{type: "image_url", image_url: {url}}` with a
    /// `data:` URL of a PNG, JPEG or WebP file) with the options
    /// `options_json` (`temperature`, `top_p`, `top_k`, `min_p`, `repeat_penalty`, `max_tokens`,
    /// `stop`, `seed`), calling `on_token(text)` for each piece; `on_token` returns false to stop.
    /// `on_prompt(prompt_tokens)` is called once the file's chat template has rendered the prompt
    /// (a template that never ends is bounded by the caller, which learns here that it ended).
    /// A conversation longer than the context loses its oldest turns (system messages kept).
    /// Resolves to JSON: `finish_reason`, `prompt_tokens`, `completion_tokens`,
    /// `tokens_per_second`, `prefill_tokens_per_second`, `ids`, `dropped_messages`.
    pub async fn chat(
        &mut self,
        messages_json: String,
        options_json: String,
        on_token: Function,
        on_prompt: Option<Function>,
    ) -> Result<String, JsValue> {
        let State::Ready(ready) = &mut self.state else {
            return Err(error("not-loaded", "No model is loaded."));
        };
        let (messages, images) = parse_messages(&messages_json)?;
        let request = RequestOptions::parse(&options_json)?;
        // Every request says its budget (the phone default unless it asks for more), so one
        // request's does not carry over to the next.
        if ready.core.vision().is_ok_and(|v| v.config.projector.takes_token_budget()) {
            let max = request.image_max_tokens.unwrap_or(PHONE_IMAGE_MAX_TOKENS).max(IMAGE_MIN_TOKENS);
            ready.core.set_image_token_budget(IMAGE_MIN_TOKENS, max).map_err(engine_error)?;
        }
        let opts = request.generate();
        let prepared = ready.core.prepare_turn(&mut ready.chat, &messages, &images, &opts).map_err(engine_error)?;
        if let Some(on_prompt) = on_prompt {
            let _ = on_prompt.call1(&JsValue::NULL, &JsValue::from(prepared.prompt_tokens() as f64));
        }
        let turn = ready
            .core
            .run_turn(&mut ready.chat, prepared, &opts, |piece| {
                piece.is_empty()
                    || on_token
                        .call1(&JsValue::NULL, &JsValue::from_str(piece))
                        .map(|keep| keep.as_bool() != Some(false))
                        .unwrap_or(false)
            })
            .await
            .map_err(engine_error)?;
        let out = turn.generated;
        to_json(&ChatStats {
            finish_reason: out.finish_reason,
            prompt_tokens: turn.prompt_tokens,
            completion_tokens: out.ids.len(),
            tokens_per_second: out.decode_tok_s(),
            prefill_tokens_per_second: out.prefill_tok_s(turn.evaluated_tokens),
            ids: out.ids,
            dropped_messages: turn.dropped_messages,
        })
    }

    /// Continues the token ids `ids_json` (a JSON array) from an empty context, for callers that
    /// tokenize themselves (and for checking the engine against reference token sequences).
    /// `options_json` takes the sampling options of [`Engine::chat`] and `ignore_eos`. Resolves
    /// to JSON: `finish_reason`, `ids`, `tokens_per_second`, `prefill_tokens_per_second`. The
    /// chat's cached conversation is dropped.
    pub async fn complete(&mut self, ids_json: String, options_json: String) -> Result<String, JsValue> {
        let State::Ready(ready) = &mut self.state else {
            return Err(error("not-loaded", "No model is loaded."));
        };
        let ids: Vec<u32> = serde_json::from_str(&ids_json).map_err(|e| bad(format!("ids must be a JSON array of token ids: {e}")))?;
        let opts = RequestOptions::parse(&options_json)?.generate();
        let out = ready.core.complete(&mut ready.chat, &ids, &opts).await.map_err(engine_error)?;
        to_json(&CompleteStats {
            finish_reason: out.finish_reason,
            tokens_per_second: out.decode_tok_s(),
            prefill_tokens_per_second: out.prefill_tok_s(ids.len()),
            ids: out.ids,
        })
    }

    /// Bytes of wasm linear memory: the heap's high-water mark (memory never shrinks).
    pub fn wasm_memory_bytes() -> f64 {
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        let buffer: js_sys::ArrayBuffer = memory.buffer().unchecked_into();
        buffer.byte_length() as f64
    }
}

/// Checks a GGUF file by its first bytes, before it is downloaded (see [`burrow_engine::admit`]):
/// resolves to JSON, `{"needed": n}` when the header needs the first `n` bytes, or
/// `{"architecture": a}` for a file the engine runs; a file it cannot run is an error with the
/// engine's code (`unsupported`, `bad-file`, `template`).
#[wasm_bindgen]
pub fn admit(prefix: &[u8], file_len: f64) -> Result<String, JsValue> {
    #[derive(Serialize)]
    struct Verdict {
        #[serde(skip_serializing_if = "Option::is_none")]
        needed: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        architecture: Option<String>,
    }
    let verdict = match burrow_engine::admit(prefix, file_len as u64).map_err(|e| error(e.code(), format!("This model cannot run here: {e}.")))? {
        Admission::NeedBytes(n) => Verdict { needed: Some(n), architecture: None },
        Admission::Admitted { architecture } => Verdict { needed: None, architecture: Some(architecture) },
    };
    to_json(&verdict)
}

/// Checks a vision projector (mmproj) by its first bytes, as [`admit`] checks a model: resolves
/// to JSON, `{"needed": n}`, or `{"projector": p, "projection_dim": n}` for a projector the
/// engine runs; one it cannot run is an error (`unsupported`, `bad-file`).
#[wasm_bindgen]
pub fn admit_projector(prefix: &[u8], file_len: f64) -> Result<String, JsValue> {
    #[derive(Serialize)]
    struct Verdict {
        #[serde(skip_serializing_if = "Option::is_none")]
        needed: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        projector: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        projection_dim: Option<usize>,
    }
    let admission = burrow_engine::admit_projector(prefix, file_len as u64)
        .map_err(|e| error(e.code(), format!("This vision projector cannot run here: {e}.")))?;
    to_json(&match admission {
        ProjectorAdmission::NeedBytes(n) => Verdict { needed: Some(n), projector: None, projection_dim: None },
        ProjectorAdmission::Admitted { projector, projection_dim } => {
            Verdict { needed: None, projector: Some(projector), projection_dim: Some(projection_dim) }
        }
    })
}

fn bad(message: impl AsRef<str>) -> JsValue {
    error("bad-request", message)
}
