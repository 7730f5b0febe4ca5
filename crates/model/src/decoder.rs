//! The decoder-only transformer every supported family shares: embeddings → N × (attention
//! sub-layer, feed-forward sub-layer) → norm → output head. What differs between families is data
//! in `ModelConfig` and which optional pieces (biases, Q/K norms, post-norms) the file provides;
//! the pieces themselves live in `layer.rs` and `attention.rs`, the per-sequence state in
//! `session.rs`, RoPE in `rope.rs`.
//!
//! Tensors carry no backend type: the `Device` the weights were loaded on decides where it runs.
//! Weight matrices are [`Matrix`]es: f32 tensors on the CPU reference backend, GGUF blocks on the
//! GPU multiplied by Burrow's WGSL kernels on wgpu.

use burn::tensor::{Device, Int, Tensor, TensorData};
use burrow_gpu::{exact_fit, is_wgpu_device, matvec, Fold, KvCache, Kernels, StepTokens};

use crate::config::ModelConfig;
use crate::layer::{Block, Matrix, RmsNorm, Stream};
use crate::rope::{RopeFactors, RopeSpec, RopeTable, StepPositions, StepRope};
use crate::sampling::SamplerConfig;
use crate::session::{LayerCache, Session};
use crate::ModelError;

#[derive(Clone, Debug)]
pub struct Decoder {
    /// `[vocab, n_embd]`.
    pub tok_embd: Matrix,
    pub blocks: Vec<Block>,
    pub output_norm: RmsNorm,
    /// `[vocab, n_embd]`; `None` when the embedding is the output head too.
    pub output: Option<Matrix>,
}

/// A loaded model: its configuration and its weights on one device.
pub struct Model {
    pub config: ModelConfig,
    pub net: Decoder,
    /// Per rotated pair, divisors of the RoPE frequencies.
    pub rope_factors: RopeFactors,
    pub device: Device,
    /// The kernel family the model runs on wgpu (`None`: Burn's ops, the CPU reference).
    pub kernels: Option<Kernels>,
}

/// What one forward pass shares across layers.
pub(crate) struct Step {
    /// The first token's cache slot.
    pub start: usize,
    pub t: usize,
    /// Per RoPE table of the session, what the step's tokens read from it.
    pub rope: Vec<StepRope>,
    pub causal: Option<Tensor<4>>,
    pub sliding: Option<Tensor<4>>,
    /// The step's position and ids on the GPU (wgpu only): the one upload of a decode step.
    pub tokens: Option<StepTokens>,
}

/// What a step evaluates: token ids, or embedding rows (with placeholder ids, one per row, and
/// each row's (time, row, column) positions when they are not the next ones).
enum StepInput<'a> {
    Tokens(&'a [u32]),
    Embeddings(Tensor<2>, &'a [u32], Option<&'a [[u32; 3]]>),
}

/// The residual stream after the last block, for [`Model::logits`].
pub struct Hidden(Stream);

impl Hidden {
    /// Rows (tokens).
    pub fn rows(&self) -> usize {
        self.0.x.dims()[0]
    }
}

impl Model {
    /// The kernels attention runs (its kernels take heads of at most `MAX_HEAD_DIM` values, a
    /// multiple of 4; Burn's ops run the others).
    pub(crate) fn attention_kernels(&self) -> Option<Kernels> {
        self.kernels.filter(|_| burrow_gpu::attention_supports(self.config.head_dim))
    }

    /// A fresh sequence able to hold `n_ctx` positions.
    pub fn new_session(&self, n_ctx: usize) -> Result<Session, ModelError> {
        let c = &self.config;
        if n_ctx == 0 {
            return Err(ModelError::Context("a context of 0 tokens was requested".into()));
        }
        let shape = [c.n_head_kv, n_ctx, c.head_dim];
        let factors = self.rope_factors.for_context(n_ctx, c.n_ctx_orig);
        let spec = |base, scale| RopeSpec { base, scale, n_rot: c.n_rot, factors, attn_factor: c.rope_attn_factor };
        let kernels = self.attention_kernels();
        let packed = kernels.is_some();
        // The GPU family keeps the cache in f16 pairs: half the memory.
        let f16 = kernels.is_some_and(|k| k.is_gpu());
        // Exact-fit buffers: the cache and the tables are what a long context adds to the GPU's
        // memory, and pool pages would round each up.
        let (caches, ropes) = exact_fit(&self.device, || -> Result<_, ModelError> {
            let caches = (0..c.n_layer)
                .map(|_| match kernels {
                    Some(_) => Ok(LayerCache::Gpu(KvCache::new(&self.device, shape, f16)?)),
                    None => Ok(LayerCache::Tensors(Some((Tensor::zeros(shape, &self.device), Tensor::zeros(shape, &self.device))))),
                })
                .collect::<Result<Vec<_>, ModelError>>()?;
            let mut ropes = vec![RopeTable::new(&spec(c.rope_base, c.rope_freq_scale), n_ctx, packed, &self.device)];
            if c.swa_layers.iter().any(|&s| s) && (c.rope_base_swa, c.rope_freq_scale_swa) != (c.rope_base, c.rope_freq_scale) {
                ropes.push(RopeTable::new(&spec(c.rope_base_swa, c.rope_freq_scale_swa), n_ctx, packed, &self.device));
            }
            Ok((caches, ropes))
        })?;
        Ok(Session { caches, ropes, n_ctx, pos: 0, shifts: Vec::new(), fail_at: None })
    }

    /// Runs `tokens` at the session's next positions and returns the residual stream after the
    /// last block, for [`Model::logits`]. Asynchronous because a mixture of experts reads its
    /// routing back from the device (awaited: in a browser a synchronous read panics); a dense
    /// model's forward pass only queues work and never waits.
    pub async fn forward(&self, session: &mut Session, tokens: &[u32]) -> Result<Hidden, ModelError> {
        Ok(self.forward_step(session, tokens, None).await?.0)
    }

    /// [`Model::forward`] that also uploads what choosing the next token on the device needs
    /// (`choice`: the random draw and the penalized ids) with the step's tokens, and returns them
    /// for [`Model::choose_on_device`] (`None` off wgpu): one upload per step. A step that fails
    /// leaves the session as it was before it (its position unchanged, its cache in place).
    pub async fn forward_step(
        &self,
        session: &mut Session,
        tokens: &[u32],
        choice: Option<(f32, &[u32])>,
    ) -> Result<(Hidden, Option<StepTokens>), ModelError> {
        self.step(session, StepInput::Tokens(tokens), choice).await
    }

    /// [`Model::forward`] for rows already in the embedding space, `[t, n_embd]`: an image's
    /// tokens from a vision encoder, at ordinary positions, attended causally like text.
    pub async fn forward_embeddings(&self, session: &mut Session, rows: Tensor<2>) -> Result<Hidden, ModelError> {
        self.embeddings(session, rows, None).await
    }

    /// [`Model::forward_embeddings`] for an M-RoPE model (Qwen2-VL), with each row's (time, row,
    /// column) positions (`positions`, one per row): an image's tokens share a time and spread
    /// over the rows and columns of its grid. Attended causally in the order given, as llama.cpp
    /// does. The text after them continues one past the largest position (Qwen2-VL's rule: an
    /// image advances the position by its longer side, not by its token count), so it trails
    /// the cache slots from then on ([`Session::rope_position`]).
    pub async fn forward_embeddings_at(&self, session: &mut Session, rows: Tensor<2>, positions: &[[u32; 3]]) -> Result<Hidden, ModelError> {
        if self.config.rope_sections.is_none() {
            return Err(ModelError::Context(format!(
                "this language model ({}) places each token at one position: it takes no image positions (M-RoPE)",
                self.config.arch
            )));
        }
        let t = rows.dims()[0];
        if positions.len() != t {
            return Err(ModelError::Context(format!("{} positions for {t} embedding rows", positions.len())));
        }
        let end = session.pos + t;
        let past = positions.iter().flatten().any(|&p| p as usize >= end);
        if past {
            return Err(ModelError::Context(format!("image positions reach past the {end} cache slots they would fill")));
        }
        self.embeddings(session, rows, Some(positions)).await
    }

    async fn embeddings(&self, session: &mut Session, rows: Tensor<2>, positions: Option<&[[u32; 3]]>) -> Result<Hidden, ModelError> {
        let [t, width] = rows.dims();
        if width != self.config.n_embd {
            return Err(ModelError::Context(format!(
                "image embeddings of width {width} do not fit this language model (its embeddings are {} wide)",
                self.config.n_embd
            )));
        }
        // The GPU step carries ids for its positions; nothing looks these up.
        let placeholders = vec![0u32; t];
        Ok(self.step(session, StepInput::Embeddings(rows, &placeholders, positions), None).await?.0)
    }

    async fn step(
        &self,
        session: &mut Session,
        input: StepInput<'_>,
        choice: Option<(f32, &[u32])>,
    ) -> Result<(Hidden, Option<StepTokens>), ModelError> {
        let c = &self.config;
        let (tokens, positions) = match &input {
            StepInput::Tokens(ids) => (*ids, None),
            StepInput::Embeddings(_, ids, positions) => (*ids, *positions),
        };
        let t = tokens.len();
        if t == 0 {
            return Err(ModelError::Context("no tokens to evaluate".into()));
        }
        let start = session.pos;
        let end = start + t;
        if end > session.n_ctx {
            return Err(ModelError::Context(format!("{end} tokens do not fit in a context of {}", session.n_ctx)));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.n_vocab) {
            return Err(ModelError::Context(format!("token id {bad} is outside the vocabulary of {}", c.n_vocab)));
        }
        if session.caches.len() != c.n_layer {
            return Err(ModelError::Context("the session was made for another model".into()));
        }

        let gpu_tokens = if is_wgpu_device(&self.device) {
            let (draw, penalized) = choice.unwrap_or((0.0, &[]));
            Some(StepTokens::with_choice(&self.device, start, tokens, draw, penalized)?)
        } else {
            None
        };
        let x = match input {
            StepInput::Tokens(ids) => {
                let x = self.net.tok_embd.lookup(ids, gpu_tokens.as_ref(), &self.device)?;
                // Token embeddings only: an image's come from its projector at the model's scale
                // (llama.cpp scales only looked-up rows too).
                match c.embedding_scale {
                    Some(scale) => x.mul_scalar(scale),
                    None => x,
                }
            }
            StepInput::Embeddings(rows, ..) => rows,
        };
        let at = match (positions, c.rope_sections) {
            (Some(p), Some(sections)) => StepPositions::Sections(p, sections),
            _ => StepPositions::From(session.rope_position()),
        };

        let reference = self.attention_kernels().is_none();
        let window = c.sliding_window.filter(|_| c.swa_layers.iter().any(|&s| s));
        let step = Step {
            start,
            t,
            rope: session.ropes.iter().map(|r| r.for_step(&at, start, t, &self.device)).collect(),
            // The attention kernels mask by position themselves.
            causal: (t > 1 && reference).then(|| attention_mask(start, t, None, &self.device)),
            sliding: window.filter(|&w| (t > 1 || end > w) && reference).map(|w| attention_mask(start, t, Some(w), &self.device)),
            tokens: gpu_tokens,
        };

        let mut s = Stream { x, normed: None };
        for (layer, block) in self.net.blocks.iter().enumerate() {
            let table = if c.swa_layers[layer] { session.ropes.len() - 1 } else { 0 };
            let update = block.attn.forward(
                &s,
                &mut session.caches[layer],
                &step.rope[table],
                &step,
                c,
                layer,
                block.post_attn_norm.is_none(),
            )?;
            if session.fail_at.take_if(|&mut at| at == layer).is_some() {
                return Err(ModelError::Context(format!("a failure injected at layer {layer}")));
            }
            s = update.settle(s.x, block.post_attn_norm.as_ref(), block.ffn.norm())?;
            let update = block.ffn.forward(&s, c, &self.device, block.post_ffn_norm.is_none()).await?;
            let next = self.net.blocks.get(layer + 1).map_or(&self.net.output_norm, |b| &b.attn.input.norm);
            s = update.settle(s.x, block.post_ffn_norm.as_ref(), next)?;
        }
        if let StepPositions::Sections(p, _) = at {
            // The text after continues one past the largest position.
            let next = p.iter().flatten().max().map_or(0, |&m| m as usize + 1);
            let shift = end - next.max(session.rope_position());
            if shift != session.shift() {
                session.shifts.push((end, shift));
            }
        }
        session.pos = end;
        Ok((Hidden(s), step.tokens))
    }

    /// Output-head logits `[rows, vocab]` for the stream from [`Model::forward`]: the output norm
    /// (folded into the head's matvec on a GPU-family decode step), the head, the final soft-cap.
    pub fn logits(&self, hidden: Hidden) -> Result<Tensor<2>, ModelError> {
        let head = self.net.output.as_ref().unwrap_or(&self.net.tok_embd);
        let s = hidden.0;
        let norm = &self.net.output_norm;
        let logits = match (head.lanes(), norm.fold(), &s.normed) {
            (Some(w), Some(fold), None) if s.x.dims()[0] == 1 => {
                matvec(&s.x, &[(w, None)], &Fold { norm: Some(fold), ..Fold::default() })?
            }
            (_, _, Some(h)) => head.apply(h.clone())?,
            (_, _, None) => head.apply(norm.forward(s.x)?)?,
        };
        Ok(match self.config.final_softcap {
            Some(cap) => softcap(logits, cap),
            None => logits,
        })
    }

    /// Logits of the last position only: what generation needs, without the full head for every row.
    pub fn last_logits(&self, hidden: Hidden) -> Result<Tensor<2>, ModelError> {
        let Stream { x, normed } = hidden.0;
        let rows = x.dims()[0];
        let last = |t: Tensor<2>| t.slice([rows - 1..rows]);
        self.logits(Hidden(Stream { x: last(x), normed: normed.map(last) }))
    }

    /// The next token chosen on the device from `logits: [1, vocab]` after the step `step` (from
    /// [`Model::forward_step`], with the draw and penalized ids), as `config` says
    /// (`burrow_gpu::choose`: the CPU sampler's choice for the same draw): a one-element int
    /// tensor, so a decode step reads back 4 bytes.
    pub fn choose_on_device(
        &self,
        logits: Tensor<2>,
        step: &StepTokens,
        config: &SamplerConfig,
    ) -> Result<Tensor<1, Int>, ModelError> {
        let [rows, vocab] = logits.dims();
        if rows != 1 {
            return Err(ModelError::Context(format!("choosing a token takes one row of logits, not {rows}")));
        }
        let kernels = self.kernels.ok_or_else(|| ModelError::Context("choosing on the device needs the kernels".into()))?;
        Ok(burrow_gpu::choose(logits.reshape([vocab]), step, &config.device_choice(), kernels)?)
    }
}

/// `tanh(x / cap) · cap`.
pub(crate) fn softcap<const D: usize>(x: Tensor<D>, cap: f32) -> Tensor<D> {
    x.div_scalar(cap).tanh().mul_scalar(cap)
}

/// `[1, 1, t, start + t]`: 0 where query row i (position start + i) may see key j, −∞ elsewhere.
/// Causal, and with a sliding window of `w` a query sees only the `w` most recent positions.
fn attention_mask(start: usize, t: usize, window: Option<usize>, device: &Device) -> Tensor<4> {
    let keys = start + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| {
            let q = start + i;
            (0..keys).map(move |j| {
                let visible = j <= q && window.is_none_or(|w| q - j < w);
                if visible { 0.0 } else { f32::NEG_INFINITY }
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [1, 1, t, keys]), device)
}

