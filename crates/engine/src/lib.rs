//! tokens → text: a loaded model with its tokenizer and chat template, and the generation loop
//! (prefill, sample, stream text, stop) that the command-line tool and the browser share.
//!
//! Every GPU read is awaited (`into_data_async`): in a browser a synchronous read panics. Native
//! callers drive the futures with [`block_on`].

use std::future::Future;

use burn::tensor::Tensor;
use burrow_gguf::Gguf;
use burrow_model::{Model, Sampler, SamplerConfig, Session, StopStrings};
use burrow_text::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer};
use web_time::Instant;

/// The most prompt tokens one forward pass evaluates (at least; kernels whose prefill tile is
/// larger take a tile): longer prompts run in passes of this many, so a pass's activations stay a
/// few MB (GPU memory stays near the weights plus the KV cache whatever the prompt) while a pass
/// is still large enough to amortize its dispatches.
pub const PREFILL_CHUNK_TOKENS: usize = 64;

pub use burrow_model::ModelError;

/// A model ready to chat: weights on a device, the file's vocabulary and chat template.
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
}

/// How to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
}

/// What a generation produced.
#[derive(Clone, Debug)]
pub struct Generated {
    /// Every sampled token, including the end-of-generation token that ended it.
    pub ids: Vec<u32>,
    pub text: String,
    /// "stop" (end-of-generation token or stop string), "length", or "abort" (the caller's
    /// callback asked to stop).
    pub finish_reason: &'static str,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// Tokens evaluated one at a time after the prompt.
    pub decoded: usize,
    /// Bytes read back from the device to choose the tokens after the first (4 per token when
    /// the GPU samples, the whole row of logits otherwise).
    pub decode_readback_bytes: usize,
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

/// Runs a future to completion on this thread (native only: a browser cannot block).
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    burn::tensor::try_read_sync(future).expect("native futures can block")
}

/// Reads `[rows, cols]` f32 rows back to the host.
async fn read_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>, String> {
    let [rows, cols] = t.dims();
    let data = t.into_data_async().await.map_err(|e| format!("reading logits from the device failed: {e:?}"))?;
    let flat = data.try_into_vec::<f32>().map_err(|e| format!("reading logits failed: {e:?}"))?;
    Ok((0..rows).map(|r| flat[r * cols..(r + 1) * cols].to_vec()).collect())
}

impl Engine {
    /// Builds the tokenizer and chat template from the file's metadata around a loaded `model`.
    pub fn new(gguf: &Gguf, model: Model) -> Result<Engine, String> {
        let tokenizer = Tokenizer::from_gguf(gguf).map_err(|e| e.to_string())?;
        let template = ChatTemplate::from_gguf(gguf).map_err(|e| e.to_string())?;
        Ok(Engine { model, tokenizer, template })
    }

    pub fn new_session(&self, n_ctx: usize) -> Result<Session, String> {
        self.model.new_session(n_ctx).map_err(|e| e.to_string())
    }

    /// The conversation as the model's chat template renders it, ready for the assistant's turn.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, String> {
        let template = self.template.as_ref().ok_or("the file has no chat template (tokenizer.chat_template)")?;
        template.render(messages, true).map_err(|e| e.to_string())
    }

    /// Logits at every position of `ids`, evaluated as one batch from an empty cache of `n_ctx`
    /// positions (at least the ids').
    pub async fn all_logits(&self, ids: &[u32], n_ctx: usize) -> Result<Vec<Vec<f32>>, String> {
        let mut session = self.new_session(n_ctx.max(ids.len()).max(1))?;
        let hidden = self.model.forward(&mut session, ids).await.map_err(|e| e.to_string())?;
        read_rows(self.model.logits(hidden).map_err(|e| e.to_string())?).await
    }

    /// Logits at every position of `ids`, evaluated one token at a time (decode steps, the kernels a
    /// reply streams through) from an empty cache of `n_ctx` positions (at least the ids').
    pub async fn decoded_logits(&self, ids: &[u32], n_ctx: usize) -> Result<Vec<Vec<f32>>, String> {
        let mut session = self.new_session(n_ctx.max(ids.len()).max(1))?;
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            let hidden = self.model.forward(&mut session, &[id]).await.map_err(|e| e.to_string())?;
            rows.extend(read_rows(self.model.logits(hidden).map_err(|e| e.to_string())?).await?);
        }
        Ok(rows)
    }

    /// Prompt tokens per forward pass: [`PREFILL_CHUNK_TOKENS`], or the GPU family's prefill tile
    /// where that is larger (f16 tiles of 128 tokens), so each pass reads the weights once.
    pub fn prefill_pass_tokens(&self) -> usize {
        self.model.kernels.map_or(PREFILL_CHUNK_TOKENS, |k| PREFILL_CHUNK_TOKENS.max(k.prefill_tile()))
    }

    /// Evaluates `ids` after what `session` holds ([`Engine::prefill_pass_tokens`] at a time) and chooses
    /// the next token with `sampler`
    /// (`history`: the whole sequence so far, for the repetition penalty). On a wgpu device the
    /// choice is made there (`burrow_gpu::choose`: greedy or sampled, the same token the CPU
    /// sampler picks) and read back as one id; otherwise the logits are read and sampled on the
    /// host. Returns the token and the bytes read back.
    pub async fn next_token(
        &self,
        session: &mut Session,
        ids: &[u32],
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<(u32, usize), String> {
        // A long prompt runs in chunks: the activations of a pass grow with its tokens (a
        // 2000-token prompt's FFN output alone is 24 MB), the KV cache does not.
        let mut ids = ids;
        let pass = self.prefill_pass_tokens();
        while ids.len() > pass {
            let (chunk, rest) = ids.split_at(pass);
            drop(self.model.forward(session, chunk).await.map_err(|e| e.to_string())?);
            ids = rest;
        }
        let penalized = sampler.penalized(history);
        // The draw is taken only where the CPU sampler would take one, so a seed gives the same
        // tokens on either side.
        let draw = if sampler.is_greedy() { 0.0 } else { sampler.next_draw() };
        let (hidden, step) = self
            .model
            .forward_step(session, ids, Some((draw as f32, &penalized)))
            .await
            .map_err(|e| e.to_string())?;
        let logits = self.model.last_logits(hidden).map_err(|e| e.to_string())?;
        if let Some(step) = step {
            let chosen = self.model.choose_on_device(logits, &step, sampler.config()).map_err(|e| e.to_string())?;
            let data = chosen.into_data_async().await.map_err(|e| format!("reading the token from the device failed: {e:?}"))?;
            let bytes = data.bytes().len();
            let id = data.convert::<i64>().try_to_vec::<i64>().map_err(|e| format!("reading the token failed: {e:?}"))?;
            return Ok((id[0] as u32, bytes));
        }
        let mut row = read_rows(logits).await?.swap_remove(0);
        let bytes = row.len() * size_of::<f32>();
        Ok((sampler.choose(&mut row, history, draw), bytes))
    }

    /// Evaluates `prompt` after what `session` holds, then samples up to `max_tokens` tokens,
    /// streaming their text (minus any stop string) to `on_text`, which returns false to stop.
    pub async fn generate(
        &self,
        session: &mut Session,
        prompt: &[u32],
        opts: &GenerateOptions,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generated, String> {
        let room = session.context_length() - session.position();
        if prompt.is_empty() {
            return Err("the prompt is empty".into());
        }
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
            decode_readback_bytes: 0,
        };
        if max_tokens == 0 {
            return Ok(out);
        }

        let started = Instant::now();
        let (mut id, _) = self.next_token(session, prompt, &mut sampler, &history).await?;
        out.prefill_seconds = started.elapsed().as_secs_f64();
        let decode_started = Instant::now();
        loop {
            out.ids.push(id);
            history.push(id);
            if !opts.ignore_eos && self.tokenizer.is_eog(id) {
                out.finish_reason = "stop";
                break;
            }
            let emit = stops.push(&decoder.push(id));
            out.text.push_str(&emit.text);
            let go_on = on_text(&emit.text);
            if emit.stopped {
                out.finish_reason = "stop";
                break;
            }
            if !go_on {
                out.finish_reason = "abort";
                break;
            }
            if out.ids.len() == max_tokens {
                break;
            }
            let bytes;
            (id, bytes) = self.next_token(session, &[id], &mut sampler, &history).await?;
            out.decoded += 1;
            out.decode_readback_bytes += bytes;
        }
        out.decode_seconds = decode_started.elapsed().as_secs_f64();
        if out.finish_reason != "stop" {
            let rest = stops.push(&decoder.finish());
            let rest = if rest.stopped { rest.text } else { rest.text + &stops.finish() };
            out.text.push_str(&rest);
            on_text(&rest);
        }
        Ok(out)
    }
}
