//! Native glue: a model file on disk becomes a tokenizer, a chat template and a model on the
//! CPU reference device, and the generation loop that drives them.

use std::fmt::Write as _;
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use burrow_gguf::Gguf;
use burrow_model::{load_model, FileBytes, Model, Sampler, SamplerConfig, Session, StopStrings};
use burrow_text::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer};

/// Context used by the interactive chat when the model allows that much.
pub const DEFAULT_CHAT_CONTEXT: usize = 4096;

pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
}

pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
}

pub struct Generated {
    /// Every sampled token, including the end-of-generation token that ended it.
    pub ids: Vec<u32>,
    pub text: String,
    /// "stop" (end-of-generation token or stop string) or "length".
    pub finish_reason: &'static str,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// Tokens evaluated one at a time after the prompt.
    pub decoded: usize,
}

impl Generated {
    pub fn prefill_tok_s(&self, prompt_tokens: usize) -> f64 {
        rate(prompt_tokens, self.prefill_seconds)
    }
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.decoded, self.decode_seconds)
    }
}

fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn read_gguf(path: &str) -> Result<(Vec<u8>, Gguf), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let gguf = Gguf::parse(&bytes, bytes.len() as u64).map_err(|e| e.to_string())?;
    Ok((bytes, gguf))
}

pub fn load_tokenizer(path: &str) -> Result<Tokenizer, String> {
    let (_, gguf) = read_gguf(path)?;
    Tokenizer::from_gguf(&gguf).map_err(|e| e.to_string())
}

/// Reads a float tensor back to the host (the CPU backend reads synchronously).
fn read_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>, String> {
    let [rows, cols] = t.dims();
    let data = t.try_into_data().map_err(|e| format!("reading logits failed: {e:?}"))?;
    let flat = data.try_into_vec::<f32>().map_err(|e| format!("reading logits failed: {e:?}"))?;
    Ok((0..rows).map(|r| flat[r * cols..(r + 1) * cols].to_vec()).collect())
}

impl Engine {
    pub fn load(path: &str) -> Result<Engine, String> {
        let (bytes, gguf) = read_gguf(path)?;
        let tokenizer = Tokenizer::from_gguf(&gguf).map_err(|e| e.to_string())?;
        let template = ChatTemplate::from_gguf(&gguf).map_err(|e| e.to_string())?;
        let device = Device::flex();
        let model = load_model(&gguf, &mut FileBytes(&bytes), &device).map_err(|e| e.to_string())?;
        Ok(Engine { model, tokenizer, template })
    }

    pub fn new_session(&self, n_ctx: usize) -> Result<Session, String> {
        self.model.new_session(n_ctx).map_err(|e| e.to_string())
    }

    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, String> {
        let template = self.template.as_ref().ok_or("the file has no chat template (tokenizer.chat_template)")?;
        template.render(messages, true).map_err(|e| e.to_string())
    }

    /// Logits at every position of `ids`, evaluated as one batch from an empty cache.
    pub fn all_logits(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>, String> {
        let mut session = self.new_session(ids.len().max(1))?;
        let hidden = self.model.forward(&mut session, ids).map_err(|e| e.to_string())?;
        read_rows(self.model.logits(hidden))
    }

    fn next_logits(&self, session: &mut Session, ids: &[u32]) -> Result<Vec<f32>, String> {
        let hidden = self.model.forward(session, ids).map_err(|e| e.to_string())?;
        Ok(read_rows(self.model.last_logits(hidden))?.swap_remove(0))
    }

    /// Evaluates `prompt` after what `session` holds, then samples up to `max_tokens` tokens,
    /// streaming their text (minus any stop string) to `on_text`.
    pub fn generate(
        &self,
        session: &mut Session,
        prompt: &[u32],
        opts: &GenerateOptions,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generated, String> {
        let room = session.context_length() - session.position();
        if prompt.len() > room {
            return Err(format!("the prompt has {} tokens but the context has room for {room}", prompt.len()));
        }
        let max_tokens = opts.max_tokens.min(room - prompt.len() + 1);
        let mut sampler = Sampler::new(opts.sampler.clone());
        let mut decoder = StreamDecoder::new(&self.tokenizer);
        let mut stops = StopStrings::new(&opts.stop);
        let mut history = prompt.to_vec();
        let mut out = Generated {
            ids: Vec::new(),
            text: String::new(),
            finish_reason: "length",
            prefill_seconds: 0.0,
            decode_seconds: 0.0,
            decoded: 0,
        };
        if max_tokens == 0 {
            return Ok(out);
        }

        let started = Instant::now();
        let mut logits = self.next_logits(session, prompt)?;
        out.prefill_seconds = started.elapsed().as_secs_f64();
        let decode_started = Instant::now();
        loop {
            let id = sampler.sample(&mut logits, &history);
            out.ids.push(id);
            history.push(id);
            if !opts.ignore_eos && self.tokenizer.is_eog(id) {
                out.finish_reason = "stop";
                break;
            }
            let emit = stops.push(&decoder.push(id));
            out.text.push_str(&emit.text);
            on_text(&emit.text);
            if emit.stopped {
                out.finish_reason = "stop";
                break;
            }
            if out.ids.len() == max_tokens {
                break;
            }
            logits = self.next_logits(session, &[id])?;
            out.decoded += 1;
        }
        out.decode_seconds = decode_started.elapsed().as_secs_f64();
        if out.finish_reason == "length" {
            let rest = stops.push(&decoder.finish());
            let rest = if rest.stopped { rest.text } else { rest.text + &stops.finish() };
            out.text.push_str(&rest);
            on_text(&rest);
        }
        Ok(out)
    }
}

/// `burrow info`: what the file is and whether Burrow runs it.
pub fn inspect(path: &str) -> Result<String, String> {
    let (bytes, gguf) = read_gguf(path)?;
    let mut s = String::new();
    let arch = gguf.architecture().unwrap_or("(none)");
    let _ = writeln!(s, "file: {path} ({} bytes, GGUF v{})", bytes.len(), gguf.version);
    let _ = writeln!(s, "architecture: {arch}");
    if let Some(name) = gguf.get_str("general.name") {
        let _ = writeln!(s, "name: {name}");
    }
    for key in [
        "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
        "attention.head_count_kv", "rope.freq_base", "rope.dimension_count", "attention.layer_norm_rms_epsilon",
    ] {
        if let Some(v) = gguf.get(&format!("{arch}.{key}")) {
            let _ = writeln!(s, "{key}: {}", value_text(v));
        }
    }
    let params: u64 = gguf.tensors.iter().map(|t| t.n_elements).sum();
    let _ = writeln!(s, "tensors: {} ({params} parameters)", gguf.tensors.len());
    let mut by_type: Vec<(&str, usize, u64)> = Vec::new();
    for t in &gguf.tensors {
        match by_type.iter_mut().find(|(n, _, _)| *n == t.ty.name()) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.n_bytes;
            }
            None => by_type.push((t.ty.name(), 1, t.n_bytes)),
        }
    }
    for (ty, n, b) in by_type {
        let _ = writeln!(s, "  {ty}: {n} tensors, {b} bytes");
    }
    let tok = gguf.get_str("tokenizer.ggml.model").unwrap_or("(none)");
    let _ = writeln!(s, "tokenizer: {tok}{}", gguf.get_str("tokenizer.ggml.pre").map(|p| format!(" (pre: {p})")).unwrap_or_default());
    let _ = writeln!(s, "chat template: {}", if gguf.get("tokenizer.chat_template").is_some() { "yes" } else { "no" });

    let mut problems: Vec<String> = burrow_model::check_support(&gguf).iter().map(|e| e.to_string()).collect();
    if let Err(e) = Tokenizer::from_gguf(&gguf) {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        let _ = writeln!(s, "supported: yes (backends: cpu)");
    } else {
        let _ = writeln!(s, "supported: no");
        for p in problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    Ok(s)
}

fn value_text(v: &burrow_gguf::Value) -> String {
    match v {
        burrow_gguf::Value::String(s) => s.clone(),
        burrow_gguf::Value::Array(a) => format!("[{} values]", a.len()),
        other => other
            .as_f64()
            .map(|f| f.to_string())
            .or_else(|| other.as_bool().map(|b| b.to_string()))
            .unwrap_or_default(),
    }
}
