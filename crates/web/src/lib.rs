//! Burrow's engine in the browser: the wasm-bindgen surface `web/worker.js` drives.
//!
//! The worker streams the stored model into [`Engine::push_chunk`] chunk by chunk (each tensor
//! goes to the GPU as its bytes arrive, so the wasm heap never holds more than a piece of it), then
//! chats through [`Engine::chat`]. Every GPU read is awaited. Errors reach JavaScript as `Error`
//! objects with a `code` (see `web/worker.js`); nothing here panics on bad input.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;

use burrow_engine::{Engine as Core, GenerateOptions};
use burrow_gpu::{Gpu, KernelChoice, Kernels};
use burrow_model::{SamplerConfig, Session, StreamLoader};
use burrow_text::ChatMessage;
use js_sys::{Function, Reflect};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

/// The context a chat gets when the model allows that much: its KV cache is preallocated, so
/// this bounds the memory a conversation takes (SmolLM2-135M: 46 KiB per position).
const CHAT_CONTEXT: usize = 2048;

/// Tokens a reply may have when the request does not say.
const DEFAULT_MAX_TOKENS: usize = 512;

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
    session: Session,
    /// The token ids the session's cache holds, to reuse the shared prefix of the next turn.
    cached: Vec<u32>,
}

#[wasm_bindgen]
pub struct Engine {
    state: State,
    kernels: Kernels,
}

#[wasm_bindgen]
impl Engine {
    /// Acquires the WebGPU device and prepares to receive a GGUF file of `size` bytes, to run the
    /// kernel family `kernels` (`auto`, the default, `gpu` or `cpu-adapter`; `auto` picks by the
    /// adapter, a CPU one if `cpu_adapter` says so).
    pub async fn create(size: f64, kernels: Option<String>, cpu_adapter: Option<bool>) -> Result<Engine, JsValue> {
        if !(size.is_finite() && size > 0.0) {
            return Err(error("bad-request", format!("a model size of {size} bytes")));
        }
        let choice = kernels.as_deref().map_or(Ok(KernelChoice::Auto), KernelChoice::parse).map_err(bad)?;
        let gpu = gpu(cpu_adapter).await?;
        let kernels = Kernels::choose(choice, &gpu.adapter);
        Ok(Engine { state: State::Loading(StreamLoader::new(size as u64, &gpu.device, Some(kernels))), kernels })
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
            return Err(error("engine-failed", format!("The model cannot be loaded: {e}")));
        }
        Ok(())
    }

    /// Ends loading: the weights are on the GPU, the tokenizer and chat template built.
    pub fn finish(&mut self) -> Result<(), JsValue> {
        let State::Loading(loader) = std::mem::replace(&mut self.state, State::Broken) else {
            return Err(error("bad-request", "the model is not being loaded"));
        };
        let fail = |e: String| error("engine-failed", format!("The model cannot be loaded: {e}"));
        let (gguf, model) = loader.finish().map_err(|e| fail(e.to_string()))?;
        let n_ctx = model.config.n_ctx_train.clamp(1, CHAT_CONTEXT);
        let core = Core::new(&gguf, model).map_err(fail)?;
        let session = core.new_session(n_ctx).map_err(fail)?;
        self.state = State::Ready(Box::new(Chat { core, session, cached: Vec::new() }));
        Ok(())
    }

    /// Answers the conversation `messages_json` (`[{role, content}]`) with the options
    /// `options_json` (`temperature`, `top_p`, `top_k`, `min_p`, `repeat_penalty`, `max_tokens`,
    /// `stop`, `seed`), calling `on_token(text)` for each piece; `on_token` returns false to stop.
    /// Resolves to JSON: `finish_reason`, `prompt_tokens`, `completion_tokens`,
    /// `tokens_per_second`, `prefill_tokens_per_second`, `ids`.
    pub async fn chat(&mut self, messages_json: String, options_json: String, on_token: Function) -> Result<String, JsValue> {
        let State::Ready(chat) = &mut self.state else {
            return Err(error("not-loaded", "No model is loaded."));
        };
        let messages = parse_messages(&messages_json)?;
        let opts = parse_options(&options_json)?;
        let core = &chat.core;
        let text = core.render_chat(&messages).map_err(|e| error("engine-failed", e))?;
        let ids = core.tokenizer.encode(&text, true).map_err(|e| error("engine-failed", e.to_string()))?;
        let room = chat.session.context_length();
        if ids.len() >= room {
            return Err(error(
                "too-long",
                format!("The conversation has {} tokens; the context holds {room}. Start a new chat.", ids.len()),
            ));
        }
        // Reuse the cache for the prefix this conversation shares with the previous one.
        let shared = chat.cached.iter().zip(&ids).take_while(|(a, b)| a == b).count().min(ids.len() - 1);
        chat.session.truncate(shared);
        let opts = GenerateOptions { max_tokens: opts.max_tokens.min(room - ids.len()), ..opts };
        let result = core
            .generate(&mut chat.session, &ids[shared..], &opts, |piece| {
                piece.is_empty()
                    || on_token
                        .call1(&JsValue::NULL, &JsValue::from_str(piece))
                        .map(|keep| keep.as_bool() != Some(false))
                        .unwrap_or(false)
            })
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                chat.session.truncate(0);
                chat.cached.clear();
                return Err(error("engine-failed", e));
            }
        };
        chat.cached = ids.clone();
        chat.cached.extend(&out.ids);
        chat.cached.truncate(chat.session.position());
        Ok(json!({
            "finish_reason": out.finish_reason,
            "prompt_tokens": ids.len(),
            "completion_tokens": out.ids.len(),
            "tokens_per_second": out.decode_tok_s(),
            "prefill_tokens_per_second": out.prefill_tok_s(ids.len() - shared),
            "ids": out.ids,
        })
        .to_string())
    }

    /// Continues the token ids `ids_json` (a JSON array) from an empty context, for callers that
    /// tokenize themselves (and for checking the engine against reference token sequences).
    /// `options_json` takes the sampling options of [`Engine::chat`] and `ignore_eos`. Resolves
    /// to JSON: `finish_reason`, `ids`, `tokens_per_second`, `prefill_tokens_per_second`. The
    /// chat's cached conversation is dropped.
    pub async fn complete(&mut self, ids_json: String, options_json: String) -> Result<String, JsValue> {
        let State::Ready(chat) = &mut self.state else {
            return Err(error("not-loaded", "No model is loaded."));
        };
        let ids: Vec<u32> = serde_json::from_str(&ids_json).map_err(|e| bad(format!("ids must be a JSON array of token ids: {e}")))?;
        let mut opts = parse_options(&options_json)?;
        opts.ignore_eos = serde_json::from_str::<Value>(&options_json)
            .ok()
            .and_then(|v| v.get("ignore_eos").and_then(Value::as_bool))
            .unwrap_or(false);
        let room = chat.session.context_length();
        if ids.is_empty() || ids.len() >= room {
            return Err(error("too-long", format!("{} prompt tokens for a context of {room}", ids.len())));
        }
        chat.session.truncate(0);
        chat.cached.clear();
        let opts = GenerateOptions { max_tokens: opts.max_tokens.min(room - ids.len()), ..opts };
        let out = chat.core.generate(&mut chat.session, &ids, &opts, |_| true).await.map_err(|e| {
            chat.session.truncate(0);
            error("engine-failed", e)
        })?;
        chat.session.truncate(0);
        Ok(json!({
            "finish_reason": out.finish_reason,
            "ids": out.ids,
            "tokens_per_second": out.decode_tok_s(),
            "prefill_tokens_per_second": out.prefill_tok_s(ids.len()),
        })
        .to_string())
    }

    /// Bytes of wasm linear memory: the heap's high-water mark (memory never shrinks).
    pub fn wasm_memory_bytes() -> f64 {
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        let buffer: js_sys::ArrayBuffer = memory.buffer().unchecked_into();
        buffer.byte_length() as f64
    }
}

fn bad(message: impl AsRef<str>) -> JsValue {
    error("bad-request", message)
}

fn parse_messages(text: &str) -> Result<Vec<ChatMessage>, JsValue> {
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("messages are not JSON: {e}")))?;
    let list = value.as_array().filter(|l| !l.is_empty()).ok_or_else(|| bad("messages must be a non-empty array"))?;
    list.iter()
        .map(|m| {
            let field = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            match (field("role"), field("content")) {
                (Some(role), Some(content)) => Ok(ChatMessage { role, content }),
                _ => Err(bad("each message needs a string role and content")),
            }
        })
        .collect()
}

fn parse_options(text: &str) -> Result<GenerateOptions, JsValue> {
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("options are not JSON: {e}")))?;
    let defaults = SamplerConfig::default();
    let number = |k: &str| value.get(k).filter(|v| !v.is_null()).map(|v| v.as_f64().ok_or_else(|| bad(format!("{k} must be a number"))));
    let f32_or = |k: &str, d: f32| -> Result<f32, JsValue> { Ok(number(k).transpose()?.map_or(d, |v| v as f32)) };
    let count_or = |k: &str, d: usize| -> Result<usize, JsValue> {
        match number(k).transpose()? {
            Some(v) if v >= 0.0 && v.fract() == 0.0 => Ok(v as usize),
            Some(_) => Err(bad(format!("{k} must be a whole number"))),
            None => Ok(d),
        }
    };
    let stop = match value.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(|| bad("stop must be a string or a list of strings")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("stop must be a string or a list of strings")),
    };
    Ok(GenerateOptions {
        max_tokens: count_or("max_tokens", DEFAULT_MAX_TOKENS)?,
        sampler: SamplerConfig {
            temperature: f32_or("temperature", defaults.temperature)?,
            top_k: count_or("top_k", defaults.top_k)?,
            top_p: f32_or("top_p", defaults.top_p)?,
            min_p: f32_or("min_p", defaults.min_p)?,
            repeat_penalty: f32_or("repeat_penalty", defaults.repeat_penalty)?,
            repeat_last_n: defaults.repeat_last_n,
            seed: count_or("seed", defaults.seed as usize)? as u64,
        },
        stop,
        ignore_eos: false,
    })
}
