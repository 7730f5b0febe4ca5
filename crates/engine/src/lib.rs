//! tokens → text: a loaded model with its tokenizer and chat template, and the generation loop
//! (prefill, sample, stream text, stop) that the command-line tool and the browser share.
//!
//! Every GPU read is awaited (`into_data_async`): in a browser a synchronous read panics. Native
//! callers drive the futures with [`block_on`].

use std::future::Future;

use burn::tensor::Tensor;
use burrow_gguf::{Gguf, GgufError};
use burrow_gpu::GpuError;
use burrow_model::{Model, Sampler, SamplerConfig, Session, StopStrings, VisionEncoder};
use burrow_text::{ChatMessage, ChatTemplate, StreamDecoder, TextError, Tokenizer};
use serde::Serialize;
use web_time::Instant;

/// The most prompt tokens one forward pass evaluates (at least; kernels whose prefill tile is
/// larger take a tile): longer prompts run in passes of this many, so a pass's activations stay a
/// few MB (GPU memory stays near the weights plus the KV cache whatever the prompt) while a pass
/// is still large enough to amortize its dispatches.
pub const PREFILL_CHUNK_TOKENS: usize = 64;

/// A chat turn keeps at least this share of the context (1/N) free for its reply, when the
/// request's `max_tokens` asks for that much: older turns are left out to make the room.
pub const REPLY_ROOM_SHARE: usize = 4;

pub use burrow_model::ModelError;

mod vision;
pub use vision::{ImageInput, ImagePrompt, PromptPiece, MEDIA_MARKER};
use vision::{Entry, ImageSizes};

/// What went wrong, by what the caller can do about it: the browser deletes a stored file only
/// for [`EngineError::BadFile`], offers a reload after [`EngineError::Gpu`], and so on.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The file itself is broken: it fails parsing or validation (truncated, inconsistent shapes,
    /// a vocabulary that does not add up). Downloading it again will not help.
    #[error("the file is not a usable model: {0}")]
    BadFile(String),
    /// A valid file that this engine cannot run (architecture, weight type, tokenizer).
    #[error("{0}")]
    Unsupported(String),
    /// More than the device's limits or memory allow.
    #[error("too large for this device: {0}")]
    TooLarge(String),
    /// The GPU device failed or was lost: the engine must be loaded again.
    #[error("the GPU failed: {0}")]
    Gpu(String),
    /// The file's chat template failed to compile or render, or exceeded its limits.
    #[error("the model's chat template failed: {0}")]
    Template(String),
    /// The prompt does not fit in the context, even without the older turns.
    #[error("{0}")]
    TooLong(String),
    /// The request itself is unusable (an empty prompt, for example).
    #[error("{0}")]
    BadRequest(String),
    /// An image that cannot be used: not an image, broken, or too large.
    #[error("{0}")]
    Image(String),
}

impl EngineError {
    /// The error's code in the browser API (`web/worker.js` lists them).
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::BadFile(_) => "bad-file",
            EngineError::Unsupported(_) => "unsupported",
            EngineError::TooLarge(_) => "too-large",
            EngineError::Gpu(_) => "gpu-lost",
            EngineError::Template(_) => "template",
            EngineError::TooLong(_) => "too-long",
            EngineError::BadRequest(_) => "bad-request",
            EngineError::Image(_) => "bad-image",
        }
    }
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> EngineError {
        let text = e.to_string();
        match e {
            ModelError::Gguf(_)
            | ModelError::MissingKey(_)
            | ModelError::BadValue { .. }
            | ModelError::MissingTensor(_)
            | ModelError::BadShape { .. }
            | ModelError::WrongShape { .. }
            | ModelError::Gpu(GpuError::Shape(_) | GpuError::Size { .. }) => EngineError::BadFile(text),
            ModelError::UnsupportedArchitecture(_)
            | ModelError::UnsupportedTensorType { .. }
            | ModelError::Gpu(GpuError::UnsupportedType(_)) => EngineError::Unsupported(text),
            ModelError::Gpu(GpuError::TooLarge(_)) => EngineError::TooLarge(text),
            ModelError::Gpu(_) => EngineError::Gpu(text),
            ModelError::Context(_) => EngineError::BadRequest(text),
        }
    }
}

impl From<TextError> for EngineError {
    fn from(e: TextError) -> EngineError {
        let text = e.to_string();
        match e {
            TextError::InvalidVocab(_) => EngineError::BadFile(text),
            TextError::Unsupported(_) => EngineError::Unsupported(text),
            TextError::Template(_) | TextError::TemplateLimit(_) => EngineError::Template(text),
            TextError::Tokenizer(_) => EngineError::BadRequest(text),
        }
    }
}

impl From<burrow_vision::VisionError> for EngineError {
    fn from(e: burrow_vision::VisionError) -> EngineError {
        EngineError::Image(e.to_string())
    }
}

/// What the start of a file says about it, before the rest is downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The header goes on past the bytes given: read this many from the start and ask again.
    NeedBytes(u64),
    /// The header describes a model this engine runs.
    Admitted { architecture: String },
}

/// Checks a GGUF file by its first bytes (`prefix`, of a file of `file_len` bytes): the header,
/// the architecture, every tensor's shape and type, the tokenizer and the chat template, so that
/// a file this engine cannot run is refused before it is downloaded.
pub fn admit(prefix: &[u8], file_len: u64) -> Result<Admission, EngineError> {
    let gguf = match Gguf::parse(prefix, file_len) {
        Err(GgufError::Incomplete { needed }) => return Ok(Admission::NeedBytes(needed)),
        parsed => parsed.map_err(ModelError::Gguf)?,
    };
    if let Some(problem) = burrow_model::check_support(&gguf).into_iter().next() {
        return Err(problem.into());
    }
    Tokenizer::from_gguf(&gguf)?;
    ChatTemplate::from_gguf(&gguf)?;
    Ok(Admission::Admitted { architecture: gguf.architecture().unwrap_or_default().to_string() })
}

/// What the start of a vision projector (mmproj) file says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectorAdmission {
    /// The header goes on past the bytes given: read this many from the start and ask again.
    NeedBytes(u64),
    /// A projector this engine runs, writing embeddings `projection_dim` wide.
    Admitted { projector: String, projection_dim: usize },
}

/// Checks a vision projector (mmproj) by its first bytes, as [`admit`] checks a model: its
/// metadata and every tensor's shape and type.
pub fn admit_projector(prefix: &[u8], file_len: u64) -> Result<ProjectorAdmission, EngineError> {
    let gguf = match Gguf::parse(prefix, file_len) {
        Err(GgufError::Incomplete { needed }) => return Ok(ProjectorAdmission::NeedBytes(needed)),
        parsed => parsed.map_err(ModelError::Gguf)?,
    };
    let config = burrow_model::VisionConfig::check(&gguf).map_err(projector_error)?;
    Ok(ProjectorAdmission::Admitted { projector: config.projector.name().to_string(), projection_dim: config.projection_dim })
}

/// A projector file that is not one Burrow runs (another kind of file, a projector type it does
/// not know) is unsupported, not a bad request; a broken one is a bad file.
pub fn projector_error(e: ModelError) -> EngineError {
    match e {
        ModelError::Context(text) => EngineError::Unsupported(text),
        e => e.into(),
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the end of the context.
    Length,
    /// The caller's callback asked to stop.
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// A model ready to chat: weights on a device, the file's vocabulary and chat template, and the
/// vision encoder when it reads images ([`Engine::attach_vision`]).
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    vision: Option<VisionEncoder>,
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
    pub finish_reason: FinishReason,
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

/// For callers that only print the error (the command-line tool).
impl From<EngineError> for String {
    fn from(e: EngineError) -> String {
        e.to_string()
    }
}

/// Reads `[rows, cols]` f32 rows back to the host; a failed read is the device's failure.
async fn read_rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>, EngineError> {
    let [rows, cols] = t.dims();
    let data = t.into_data_async().await.map_err(|e| EngineError::Gpu(format!("reading logits from the device failed: {e:?}")))?;
    let flat = data.try_into_vec::<f32>().map_err(|e| EngineError::Gpu(format!("reading logits failed: {e:?}")))?;
    Ok((0..rows).map(|r| flat[r * cols..(r + 1) * cols].to_vec()).collect())
}

impl Engine {
    /// Builds the tokenizer and chat template from the file's metadata around a loaded `model`.
    pub fn new(gguf: &Gguf, model: Model) -> Result<Engine, EngineError> {
        let tokenizer = Tokenizer::from_gguf(gguf)?;
        let template = ChatTemplate::from_gguf(gguf)?;
        Ok(Engine { model, tokenizer, template, vision: None })
    }

    pub fn new_session(&self, n_ctx: usize) -> Result<Session, EngineError> {
        Ok(self.model.new_session(n_ctx)?)
    }

    /// The conversation as the model's chat template renders it, ready for the assistant's turn.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let template = self
            .template
            .as_ref()
            .ok_or_else(|| EngineError::Template("the file has no chat template (tokenizer.chat_template)".into()))?;
        Ok(template.render(messages, true)?)
    }

    /// Logits at every position of `ids`, evaluated as one batch from an empty cache of `n_ctx`
    /// positions (at least the ids').
    pub async fn all_logits(&self, ids: &[u32], n_ctx: usize) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut session = self.new_session(n_ctx.max(ids.len()).max(1))?;
        let hidden = self.model.forward(&mut session, ids).await?;
        read_rows(self.model.logits(hidden)?).await
    }

    /// Logits at every position of `ids`, evaluated one token at a time (decode steps, the kernels a
    /// reply streams through) from an empty cache of `n_ctx` positions (at least the ids').
    pub async fn decoded_logits(&self, ids: &[u32], n_ctx: usize) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut session = self.new_session(n_ctx.max(ids.len()).max(1))?;
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            let hidden = self.model.forward(&mut session, &[id]).await?;
            rows.extend(read_rows(self.model.logits(hidden)?).await?);
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
    ) -> Result<(u32, usize), EngineError> {
        // A long prompt runs in chunks: the activations of a pass grow with its tokens (a
        // 2000-token prompt's FFN output alone is 24 MB), the KV cache does not.
        let mut ids = ids;
        let pass = self.prefill_pass_tokens();
        while ids.len() > pass {
            let (chunk, rest) = ids.split_at(pass);
            drop(self.model.forward(session, chunk).await?);
            ids = rest;
        }
        let penalized = sampler.penalized(history);
        // The draw is taken only where the CPU sampler would take one, so a seed gives the same
        // tokens on either side.
        let draw = if sampler.is_greedy() { 0.0 } else { sampler.next_draw() };
        let (hidden, step) = self
            .model
            .forward_step(session, ids, Some((draw as f32, &penalized)))
            .await?;
        let logits = self.model.last_logits(hidden)?;
        if let Some(step) = step {
            let chosen = self.model.choose_on_device(logits, &step, sampler.config())?;
            let data = chosen
                .into_data_async()
                .await
                .map_err(|e| EngineError::Gpu(format!("reading the token from the device failed: {e:?}")))?;
            let bytes = data.bytes().len();
            let id = data
                .convert::<i64>()
                .try_to_vec::<i64>()
                .map_err(|e| EngineError::Gpu(format!("reading the token failed: {e:?}")))?;
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
    ) -> Result<Generated, EngineError> {
        let room = session.context_length() - session.position();
        if prompt.is_empty() {
            return Err(EngineError::BadRequest("the prompt is empty".into()));
        }
        if prompt.len() > room {
            return Err(EngineError::TooLong(format!("the prompt has {} tokens but the context has room for {room}", prompt.len())));
        }
        let max_tokens = opts.max_tokens.min(room - prompt.len() + 1);
        let mut sampler = Sampler::new(opts.sampler.clone());
        let mut decoder = StreamDecoder::new(&self.tokenizer);
        let mut stops = StopStrings::new(&opts.stop);
        let mut history = prompt.to_vec();
        let mut out = Generated {
            ids: Vec::new(),
            text: String::new(),
            finish_reason: FinishReason::Length,
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
                out.finish_reason = FinishReason::Stop;
                break;
            }
            let emit = stops.push(&decoder.push(id));
            out.text.push_str(&emit.text);
            let go_on = on_text(&emit.text);
            if emit.stopped {
                out.finish_reason = FinishReason::Stop;
                break;
            }
            if !go_on {
                out.finish_reason = FinishReason::Abort;
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
        if out.finish_reason != FinishReason::Stop {
            let rest = stops.push(&decoder.finish());
            let rest = if rest.stopped { rest.text } else { rest.text + &stops.finish() };
            out.text.push_str(&rest);
            on_text(&rest);
        }
        Ok(out)
    }
}

/// A conversation kept in a session's KV cache: each turn evaluates only what follows the prefix
/// it shares with the previous one, images included.
pub struct ChatSession {
    session: Session,
    /// What the cache holds, position by position.
    cached: Vec<Entry>,
    /// The sizes of the images seen, to lay out the next turns without decoding them again.
    image_sizes: ImageSizes,
}

/// What one chat turn did.
#[derive(Clone, Debug)]
pub struct ChatTurn {
    pub generated: Generated,
    /// Tokens of the rendered conversation the reply followed.
    pub prompt_tokens: usize,
    /// Of those, the tokens evaluated for this turn (the rest were in the cache).
    pub evaluated_tokens: usize,
    /// Messages left out, oldest first, so that the conversation fits in the context (system
    /// messages are always kept).
    pub dropped_messages: usize,
}

impl ChatSession {
    /// The context's length in tokens.
    pub fn context_length(&self) -> usize {
        self.session.context_length()
    }

    /// Forgets the cached conversation (the next turn evaluates everything).
    pub fn reset(&mut self) {
        self.session.truncate(0);
        self.cached.clear();
    }
}

/// A chat turn rendered and tokenized, ready to run ([`Engine::prepare_turn`]).
#[derive(Clone, Debug)]
pub struct PreparedTurn {
    prompt: TurnPrompt,
    dropped_messages: usize,
}

#[derive(Clone, Debug)]
enum TurnPrompt {
    Text(Vec<u32>),
    Images(ImagePrompt),
}

impl PreparedTurn {
    /// Positions of the rendered conversation (its tokens and its images').
    pub fn prompt_tokens(&self) -> usize {
        match &self.prompt {
            TurnPrompt::Text(ids) => ids.len(),
            TurnPrompt::Images(prompt) => prompt.len(),
        }
    }
}

/// Index of the first message of the oldest turn that can be left out of `messages` (the last
/// message, the one being answered, always stays): the first one that is not a system message.
/// Returns the range to remove: that turn up to the next user message, so the roles that remain
/// still alternate from a user message.
fn oldest_turn(messages: &[ChatMessage]) -> Option<std::ops::Range<usize>> {
    let last = messages.len().checked_sub(1)?;
    let start = messages[..last].iter().position(|m| m.role != "system")?;
    let end = (start + 1..last).find(|&i| messages[i].role == "user").unwrap_or(last);
    Some(start..end)
}

impl Engine {
    /// A conversation of up to `n_ctx` tokens.
    pub fn new_chat(&self, n_ctx: usize) -> Result<ChatSession, EngineError> {
        Ok(ChatSession { session: self.new_session(n_ctx)?, cached: Vec::new(), image_sizes: ImageSizes::default() })
    }

    /// Answers `messages` (rendered with the file's chat template) in `chat`, streaming the reply
    /// to `on_text` as [`Engine::generate`] does: [`Engine::prepare_turn`], then
    /// [`Engine::run_turn`].
    pub async fn chat(
        &self,
        chat: &mut ChatSession,
        messages: &[ChatMessage],
        images: &[ImageInput],
        opts: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<ChatTurn, EngineError> {
        let turn = self.prepare_turn(chat, messages, images, opts)?;
        self.run_turn(chat, turn, opts, on_text).await
    }

    /// Renders and tokenizes the conversation for the next turn of `chat`: `images` are the
    /// images of `messages` in order, each where a message's content has a [`MEDIA_MARKER`].
    /// When it does not fit in the context with room for the reply (`max_tokens`, or at least
    /// 1/[`REPLY_ROOM_SHARE`] of the context), its oldest turns are left out with their images,
    /// system messages kept; only a last message that cannot fit by itself is an error
    /// ([`EngineError::TooLong`]). This is where the file's chat template runs: a caller that
    /// must bound it (the browser) learns here that it ended. Images not seen before are decoded
    /// here, to lay them out.
    pub fn prepare_turn(
        &self,
        chat: &mut ChatSession,
        messages: &[ChatMessage],
        images: &[ImageInput],
        opts: &GenerateOptions,
    ) -> Result<PreparedTurn, EngineError> {
        if messages.is_empty() {
            return Err(EngineError::BadRequest("there are no messages to answer".into()));
        }
        let markers = |m: &[ChatMessage]| m.iter().map(|m| m.content.matches(MEDIA_MARKER).count()).sum::<usize>();
        if markers(messages) != images.len() {
            return Err(EngineError::BadRequest(format!("the messages mark {} images but {} were given", markers(messages), images.len())));
        }
        if !images.is_empty() {
            self.vision()?;
        }
        let n_ctx = chat.session.context_length();
        let reply_room = opts.max_tokens.clamp(1, (n_ctx / REPLY_ROOM_SHARE).max(1));
        let mut kept = messages.to_vec();
        let mut kept_images = images;
        loop {
            let text = self.render_chat(&kept)?;
            let prompt = if kept_images.is_empty() {
                TurnPrompt::Text(self.tokenizer.encode(&text, true)?)
            } else {
                TurnPrompt::Images(self.lay_out(&text, kept_images, &mut chat.image_sizes)?)
            };
            let turn = PreparedTurn { prompt, dropped_messages: messages.len() - kept.len() };
            if turn.prompt_tokens() + reply_room <= n_ctx {
                return Ok(turn);
            }
            let Some(oldest) = oldest_turn(&kept) else {
                return Err(EngineError::TooLong(format!(
                    "the message is {} tokens long; with room for a reply, the context holds {}",
                    turn.prompt_tokens(),
                    n_ctx - reply_room
                )));
            };
            kept_images = &kept_images[markers(&kept[oldest.clone()])..];
            kept.drain(oldest);
        }
    }

    /// Evaluates a prepared turn after the prefix it shares with what `chat` holds, and generates
    /// the reply. After a failure the cache is dropped, so the next turn starts clean.
    pub async fn run_turn(
        &self,
        chat: &mut ChatSession,
        turn: PreparedTurn,
        opts: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<ChatTurn, EngineError> {
        let PreparedTurn { prompt, dropped_messages } = turn;
        let entries: Vec<Entry> = match &prompt {
            TurnPrompt::Text(ids) => ids.iter().map(|&id| Entry::Token(id)).collect(),
            TurnPrompt::Images(prompt) => prompt.entries().to_vec(),
        };
        let len = entries.len();
        let mut shared = chat.cached.iter().zip(&entries).take_while(|(a, b)| a == b).count().min(len - 1);
        if let TurnPrompt::Images(prompt) = &prompt {
            shared = Self::part_boundary(prompt, shared);
        }
        chat.session.truncate(shared);
        let opts = GenerateOptions { max_tokens: opts.max_tokens.min(chat.session.context_length() - len), ..opts.clone() };
        let generated = match &prompt {
            TurnPrompt::Text(ids) => self.generate(&mut chat.session, &ids[shared..], &opts, on_text).await,
            TurnPrompt::Images(prompt) => match self.prefill_prompt(&mut chat.session, prompt, shared).await {
                Ok(last) => self.generate(&mut chat.session, &[last], &opts, on_text).await,
                Err(e) => Err(e),
            },
        };
        let generated = match generated {
            Ok(out) => out,
            Err(e) => {
                chat.reset();
                return Err(e);
            }
        };
        chat.cached = entries;
        chat.cached.extend(generated.ids.iter().map(|&id| Entry::Token(id)));
        chat.cached.truncate(chat.session.position());
        Ok(ChatTurn { generated, prompt_tokens: len, evaluated_tokens: len - shared, dropped_messages })
    }

    /// Continues `ids` from an empty context (for callers that tokenize themselves); the cached
    /// conversation is dropped.
    pub async fn complete(&self, chat: &mut ChatSession, ids: &[u32], opts: &GenerateOptions) -> Result<Generated, EngineError> {
        let room = chat.session.context_length();
        if ids.is_empty() || ids.len() >= room {
            return Err(EngineError::TooLong(format!("{} prompt tokens for a context of {room}", ids.len())));
        }
        chat.reset();
        let opts = GenerateOptions { max_tokens: opts.max_tokens.min(room - ids.len()), ..opts.clone() };
        let out = self.generate(&mut chat.session, ids, &opts, |_| true).await;
        chat.reset();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(roles: &[&str]) -> Vec<ChatMessage> {
        roles.iter().map(|r| ChatMessage { role: r.to_string(), content: String::new() }).collect()
    }

    #[test]
    fn the_oldest_turn_goes_first_and_roles_still_alternate() {
        let m = messages(&["system", "user", "assistant", "user", "assistant", "user"]);
        assert_eq!(oldest_turn(&m), Some(1..3));
        assert_eq!(oldest_turn(&messages(&["user", "assistant", "user"])), Some(0..2));
        // Two user turns in a row (an earlier failed reply): the first goes alone.
        assert_eq!(oldest_turn(&messages(&["user", "user", "assistant", "user"])), Some(0..1));
        // The message being answered always stays.
        assert_eq!(oldest_turn(&messages(&["system", "user"])), None);
        assert_eq!(oldest_turn(&messages(&["user"])), None);
    }
}
