//! The decoder-only transformer every supported family shares, as Burn modules:
//! embeddings → N × (norm, attention with RoPE and a KV cache, norm, gated MLP or mixture of
//! experts) → norm → output head. What differs between families is data in `ModelConfig` and
//! which optional pieces (biases, Q/K norms, post-norms) the file provides.
//!
//! Tensors carry no backend type: the `Device` the weights were loaded on decides where it runs.
//! Weight matrices are [`Matrix`]es: f32 tensors on the CPU reference backend, GGUF blocks on the
//! GPU multiplied by Burrow's WGSL kernels on wgpu.

use std::ops::Range;

use burn::tensor::activation::{gelu_approximate, silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use burrow_gpu::{
    add_rms_norm, attention, gated, is_wgpu_device, Columns, qembed, qmatmul, rms_norm, rope_kv, AttentionParams, Gate,
    QuantTensor, RopePairs, RopeParams, StepTokens,
};

use crate::config::{Activation, ModelConfig, RopeStyle};
use crate::sampling::SamplerConfig;
use crate::ModelError;

/// `y = x / sqrt(mean(x²) + eps) * weight` over the last dimension.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor<1>,
    eps: f32,
    /// Run Burrow's kernel (`shaders/rms_norm.wgsl`) rather than Burn's reduction (wgpu).
    kernel: bool,
}

impl RmsNorm {
    pub fn new(weight: Tensor<1>, eps: f32, kernel: bool) -> Self {
        RmsNorm { weight, eps, kernel }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, ModelError> {
        if self.kernel {
            let dims = x.dims();
            let n = dims[D - 1];
            let rows = dims.iter().product::<usize>() / n.max(1);
            return Ok(rms_norm(x.reshape([rows, n]), &self.weight, self.eps)?.reshape(dims));
        }
        let inv = x.clone().square().mean_dim(D - 1).add_scalar(self.eps).sqrt().recip();
        Ok(x * inv * self.weight.clone().unsqueeze::<D>())
    }

    /// The residual add and this norm: `(x + a, norm(x + a))`, in one kernel on the GPU.
    pub fn forward_add(&self, x: Tensor<2>, a: Tensor<2>) -> Result<(Tensor<2>, Tensor<2>), ModelError> {
        if self.kernel {
            return Ok(add_rms_norm(x, a, &self.weight, self.eps)?);
        }
        let sum = x + a;
        Ok((sum.clone(), self.forward(sum)?))
    }
}

/// A weight matrix `[out, in]` (GGUF's ne0 = `in`): f32 on the device, or GGUF blocks on the GPU.
#[derive(Clone, Debug)]
pub enum Matrix {
    Dense(Tensor<2>),
    Quant(QuantTensor),
}

impl Matrix {
    pub fn rows(&self) -> usize {
        match self {
            Matrix::Dense(w) => w.dims()[0],
            Matrix::Quant(w) => w.rows(),
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Matrix::Dense(w) => w.dims()[1],
            Matrix::Quant(w) => w.cols(),
        }
    }

    /// Rows `range` (a part of a fused projection, one expert of a stack), sharing the storage.
    pub fn slice_rows(&self, range: Range<usize>) -> Result<Matrix, ModelError> {
        match self {
            Matrix::Dense(w) => {
                let cols = self.cols();
                Ok(Matrix::Dense(w.clone().slice([range, 0..cols])))
            }
            Matrix::Quant(w) => Ok(Matrix::Quant(w.slice_rows(range)?)),
        }
    }

    /// `x · Wᵀ`: `[t, in]` → `[t, out]`.
    pub fn apply(&self, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        match self {
            Matrix::Dense(w) => Ok(x.matmul(w.clone().transpose())),
            Matrix::Quant(w) => Ok(qmatmul(x, w)?),
        }
    }

    /// The rows `ids` (an embedding lookup): `[ids.len(), in]`. A quantized table reads the ids
    /// from `step`, the step's tokens already on the GPU.
    pub fn lookup(&self, ids: &[u32], step: Option<&StepTokens>, device: &Device) -> Result<Tensor<2>, ModelError> {
        match self {
            Matrix::Dense(w) => {
                let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
                let n = ids.len();
                Ok(w.clone().select(0, Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), device)))
            }
            Matrix::Quant(w) => {
                let step = step.ok_or_else(|| ModelError::Context("a quantized lookup needs the step's tokens on the GPU".into()))?;
                Ok(qembed(step, w)?)
            }
        }
    }
}

/// A weight matrix and an optional bias: `x · Wᵀ + b`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Matrix,
    bias: Option<Tensor<1>>,
}

impl Linear {
    pub fn new(weight: Matrix, bias: Option<Tensor<1>>) -> Self {
        Linear { weight, bias }
    }

    pub fn into_parts(self) -> (Matrix, Option<Tensor<1>>) {
        (self.weight, self.bias)
    }

    /// `out`: the outputs of the projection.
    pub fn weight_rows(&self) -> usize {
        self.weight.rows()
    }

    pub fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let y = self.weight.apply(x)?;
        Ok(match &self.bias {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Attention {
    /// Q, K and V as one matrix of all their rows (the file's `attn_qkv`, or fused at load on
    /// the GPU): one matmul for the three when the kernels run.
    pub qkv: Option<Linear>,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
}

/// `down(act(gate · x) * (up · x))`.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// Gate and up as one matrix, gate rows first (as `qkv` in [`Attention`]).
    pub gate_up: Option<Linear>,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// Mixture of experts: a router picks `n_expert_used` experts per token by softmax probability;
/// their outputs are summed, weighted by the renormalized probabilities.
#[derive(Clone, Debug)]
pub struct Moe {
    /// `[n_expert, n_embd]`.
    pub router: Linear,
    /// The experts stacked by rows: `[n_expert · n_ff, n_embd]`; expert e is rows e·n_ff ...
    pub gate: Matrix,
    pub up: Matrix,
    /// `[n_expert · n_embd, n_ff]`.
    pub down: Matrix,
}

#[derive(Clone, Debug)]
pub struct Block {
    pub attn_norm: RmsNorm,
    pub attn: Attention,
    pub post_attn_norm: Option<RmsNorm>,
    pub ffn_norm: RmsNorm,
    pub mlp: Option<Mlp>,
    pub moe: Option<Moe>,
    pub post_ffn_norm: Option<RmsNorm>,
}

#[derive(Clone, Debug)]
pub struct Decoder {
    /// `[vocab, n_embd]`.
    pub tok_embd: Matrix,
    pub blocks: Vec<Block>,
    pub output_norm: RmsNorm,
    /// `[vocab, n_embd]`; `None` when the embedding is the output head too.
    pub output: Option<Matrix>,
}

/// cos/sin of every position for one RoPE configuration.
enum RopeTable {
    /// `[n_ctx, n_rot / 2]` each, for Burn's ops.
    Split { cos: Tensor<2>, sin: Tensor<2> },
    /// `[n_ctx, n_rot / 2, 2]`, (cos, sin) interleaved, for the kernel (`shaders/rope_kv.wgsl`).
    Packed(Tensor<3>),
}

/// Per-sequence state: the KV cache, preallocated for the whole context and written in place,
/// and the RoPE tables for every position it can hold.
pub struct Session {
    /// Per layer `(k, v)`, each `[n_head_kv, n_ctx, head_dim]`. `None` only while a layer updates it.
    cache: Vec<Option<(Tensor<3>, Tensor<3>)>>,
    /// Global layers use `ropes[0]`, sliding-window layers `ropes[1]` when it exists.
    ropes: Vec<RopeTable>,
    n_ctx: usize,
    pos: usize,
}

impl Session {
    /// Number of positions already in the cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn context_length(&self) -> usize {
        self.n_ctx
    }

    /// Forget positions from `pos` on (for example to reuse a shared prompt prefix).
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }
}

/// A loaded model: its configuration and its weights on one device.
pub struct Model {
    pub config: ModelConfig,
    pub net: Decoder,
    /// Per rotated pair, divisors of the RoPE frequencies.
    pub rope_factors: RopeFactors,
    pub device: Device,
    /// Burrow's kernels (`shaders/`: RoPE and the KV store, attention, the gated activation, the
    /// fused add + norm, greedy sampling) rather than Burn's ops: on wgpu.
    pub kernels: bool,
}

/// Per rotated pair, the divisor of its RoPE frequency, as the file gives them.
#[derive(Clone, Debug, Default)]
pub struct RopeFactors {
    /// For every context (`rope_freqs.weight`, Llama 3 scaling).
    pub all: Option<Vec<f32>>,
    /// Phi-3 "longrope": for contexts up to the original one, and past it.
    pub short: Option<Vec<f32>>,
    pub long: Option<Vec<f32>>,
}

impl RopeFactors {
    /// The factors a session of `n_ctx` positions uses (as llama.cpp chooses them: the long ones
    /// once the context exceeds the original).
    fn for_context(&self, n_ctx: usize, n_ctx_orig: usize) -> Option<&[f32]> {
        let longrope = if n_ctx > n_ctx_orig { &self.long } else { &self.short };
        self.all.as_deref().or(longrope.as_deref())
    }
}

/// What one forward pass shares across layers.
struct Step<'a> {
    start: usize,
    t: usize,
    /// Per RoPE table, cos and sin of the step's positions, `[t, 1, n_rot / 2]` (Burn's ops only).
    rope: Vec<(Tensor<3>, Tensor<3>)>,
    causal: Option<Tensor<4>>,
    sliding: Option<Tensor<4>>,
    /// The step's position and ids on the GPU (wgpu only): the one upload of a decode step.
    tokens: Option<StepTokens>,
    device: &'a Device,
}

impl Model {
    /// A fresh sequence able to hold `n_ctx` positions.
    pub fn new_session(&self, n_ctx: usize) -> Result<Session, ModelError> {
        let c = &self.config;
        if n_ctx == 0 {
            return Err(ModelError::Context("a context of 0 tokens was requested".into()));
        }
        let cache_shape = [c.n_head_kv, n_ctx, c.head_dim];
        let factors = self.rope_factors.for_context(n_ctx, c.n_ctx_orig);
        // Exact-fit buffers: the cache and the tables are what a long context adds to the GPU's
        // memory, and pool pages would round each up.
        let (cache, ropes) = burrow_gpu::exact_fit(&self.device, || {
            let cache = (0..c.n_layer)
                .map(|_| Some((Tensor::zeros(cache_shape, &self.device), Tensor::zeros(cache_shape, &self.device))))
                .collect();
            let mut ropes = vec![self.rope_table(c.rope_base, c.rope_freq_scale, factors, n_ctx)];
            if c.swa_layers.iter().any(|&s| s) && (c.rope_base_swa, c.rope_freq_scale_swa) != (c.rope_base, c.rope_freq_scale) {
                ropes.push(self.rope_table(c.rope_base_swa, c.rope_freq_scale_swa, factors, n_ctx));
            }
            (cache, ropes)
        });
        Ok(Session { cache, ropes, n_ctx, pos: 0 })
    }

    fn rope_table(&self, base: f32, scale: f32, factors: Option<&[f32]>, n_ctx: usize) -> RopeTable {
        let half = self.config.n_rot / 2;
        let (cos, sin) = rope_tables(base, scale, self.config.n_rot, factors, self.config.rope_attn_factor, n_ctx);
        if self.kernels {
            let packed: Vec<f32> = cos.iter().zip(&sin).flat_map(|(&c, &s)| [c, s]).collect();
            return RopeTable::Packed(Tensor::from_data(TensorData::new(packed, [n_ctx, half, 2]), &self.device));
        }
        RopeTable::Split {
            cos: Tensor::from_data(TensorData::new(cos, [n_ctx, half]), &self.device),
            sin: Tensor::from_data(TensorData::new(sin, [n_ctx, half]), &self.device),
        }
    }

    /// Runs `tokens` at the session's next positions and returns the final normalized hidden
    /// states `[tokens, n_embd]`. Asynchronous because a mixture of experts reads its routing
    /// back from the device (awaited: in a browser a synchronous read panics); a dense model's
    /// forward pass only queues work and never waits.
    pub async fn forward(&self, session: &mut Session, tokens: &[u32]) -> Result<Tensor<2>, ModelError> {
        Ok(self.forward_step(session, tokens, None).await?.0)
    }

    /// [`Model::forward`] that also uploads what choosing the next token on the device needs
    /// (`choice`: the random draw and the penalized ids) with the step's tokens, and returns them
    /// for [`Model::choose_on_device`] (`None` off wgpu): one upload per step.
    pub async fn forward_step(
        &self,
        session: &mut Session,
        tokens: &[u32],
        choice: Option<(f32, &[u32])>,
    ) -> Result<(Tensor<2>, Option<StepTokens>), ModelError> {
        let c = &self.config;
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

        let gpu_tokens = if is_wgpu_device(&self.device) {
            let (draw, penalized) = choice.unwrap_or((0.0, &[]));
            Some(StepTokens::with_choice(&self.device, start, tokens, draw, penalized)?)
        } else {
            None
        };
        let mut x = self.net.tok_embd.lookup(tokens, gpu_tokens.as_ref(), &self.device)?;
        if let Some(scale) = c.embedding_scale {
            x = x.mul_scalar(scale);
        }

        let window = c.sliding_window.filter(|_| c.swa_layers.iter().any(|&s| s));
        let step = Step {
            start,
            t,
            rope: session
                .ropes
                .iter()
                .filter_map(|r| match r {
                    RopeTable::Split { cos, sin } => {
                        let pick = |m: &Tensor<2>| m.clone().slice([start..end]).unsqueeze_dim::<3>(1);
                        Some((pick(cos), pick(sin)))
                    }
                    RopeTable::Packed(_) => None,
                })
                .collect(),
            // The attention kernel masks by position itself.
            causal: (t > 1 && !self.kernels).then(|| attention_mask(start, t, None, &self.device)),
            sliding: window
                .filter(|&w| (t > 1 || end > w) && !self.kernels)
                .map(|w| attention_mask(start, t, Some(w), &self.device)),
            tokens: gpu_tokens,
            device: &self.device,
        };

        // Each residual add is fused with the norm that follows it (the next layer's, or the
        // output norm after the last layer).
        let Some(first) = self.net.blocks.first() else {
            session.pos = end;
            return Ok((self.net.output_norm.forward(x)?, step.tokens));
        };
        let mut h = first.attn_norm.forward(x.clone())?;
        for (layer, block) in self.net.blocks.iter().enumerate() {
            let mut a = self.attention(&block.attn, h, session, layer, &step)?;
            if let Some(norm) = &block.post_attn_norm {
                a = norm.forward(a)?;
            }
            (x, h) = block.ffn_norm.forward_add(x, a)?;
            let mut f = match (&block.mlp, &block.moe) {
                (Some(mlp), _) => self.mlp(mlp, h)?,
                (None, Some(moe)) => self.moe(moe, h, &step).await?,
                (None, None) => return Err(ModelError::Context(format!("layer {layer} has no feed-forward weights"))),
            };
            if let Some(norm) = &block.post_ffn_norm {
                f = norm.forward(f)?;
            }
            let next = self.net.blocks.get(layer + 1).map_or(&self.net.output_norm, |b| &b.attn_norm);
            (x, h) = next.forward_add(x, f)?;
        }
        session.pos = end;
        Ok((h, step.tokens))
    }

    /// Output-head logits `[rows, vocab]` for hidden states from [`Model::forward`].
    pub fn logits(&self, hidden: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let head = self.net.output.as_ref().unwrap_or(&self.net.tok_embd);
        let logits = head.apply(hidden)?;
        Ok(match self.config.final_softcap {
            Some(cap) => softcap(logits, cap),
            None => logits,
        })
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
        Ok(burrow_gpu::choose(logits.reshape([vocab]), step, &config.device_choice())?)
    }

    /// Logits of the last position only: what generation needs, without the full head for every row.
    pub fn last_logits(&self, hidden: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let rows = hidden.dims()[0];
        self.logits(hidden.slice([rows - 1..rows]))
    }

    /// The gated kernel's activation.
    fn gate_kind(&self) -> Gate {
        match self.config.activation {
            Activation::Silu => Gate::Silu,
            Activation::GeluTanh => Gate::GeluTanh,
        }
    }

    /// `act(gate) · up`.
    fn gate(&self, gate: Tensor<2>, up: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        if self.kernels {
            return Ok(gated(&Columns::all(gate), &Columns::all(up), self.gate_kind())?);
        }
        Ok(match self.config.activation {
            Activation::Silu => silu(gate),
            Activation::GeluTanh => gelu_approximate(gate),
        } * up)
    }

    fn mlp(&self, mlp: &Mlp, h: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let gated = match &mlp.gate_up {
            Some(gate_up) if self.kernels => {
                let n_ff = mlp.gate.weight_rows();
                let halves = Columns::split(gate_up.forward(h)?, &[n_ff, n_ff])?;
                gated(&halves[0], &halves[1], self.gate_kind())?
            }
            _ => self.gate(mlp.gate.forward(h.clone())?, mlp.up.forward(h)?)?,
        };
        mlp.down.forward(gated)
    }

    fn attention(
        &self,
        attn: &Attention,
        h: Tensor<2>,
        session: &mut Session,
        layer: usize,
        step: &Step,
    ) -> Result<Tensor<2>, ModelError> {
        let c = &self.config;
        let (t, start) = (step.t, step.start);
        let end = start + t;
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_head_kv);
        let group = nh / nkv;
        let sliding = c.swa_layers[layer];
        // Sliding-window layers use the second table when the file gives them their own RoPE.
        let table = if sliding { session.ropes.len() - 1 } else { 0 };

        let (k_cache, v_cache) = session.cache[layer]
            .take()
            .ok_or_else(|| ModelError::Context("KV cache is in use".into()))?;

        if self.kernels {
            // One matmul for Q, K and V, read in place as its columns, unless Q and K are
            // normalized first.
            let [q, k, v] = match &attn.qkv {
                Some(qkv) if attn.q_norm.is_none() && attn.k_norm.is_none() => {
                    let parts = Columns::split(qkv.forward(h)?, &[nh * hd, nkv * hd, nkv * hd])?;
                    [parts[0].clone(), parts[1].clone(), parts[2].clone()]
                }
                _ => {
                    let (q, k, v) = self.project(attn, h, t)?;
                    [q, k, v].map(|x| {
                        let [t, heads, hd] = x.dims();
                        Columns::all(x.reshape([t, heads * hd]))
                    })
                }
            };
            let RopeTable::Packed(rope) = &session.ropes[table] else {
                return Err(ModelError::Context("the RoPE table is not laid out for the GPU kernels".into()));
            };
            let pairs = match c.rope_style {
                RopeStyle::Norm => RopePairs::Adjacent,
                RopeStyle::Neox => RopePairs::Halves,
            };
            let gpu_tokens = step.tokens.as_ref().ok_or_else(|| ModelError::Context("the GPU kernels need the step's tokens on the GPU".into()))?;
            let (q, k_cache, v_cache) = rope_kv(&q, &k, &v, k_cache, v_cache, rope, gpu_tokens, &RopeParams { n_rot: c.n_rot, pairs })?;
            let params = AttentionParams {
                window: if sliding { c.sliding_window } else { None },
                scale: 1.0 / (hd as f32).sqrt(),
                softcap: c.attn_softcap,
            };
            let out = attention(q, &k_cache, &v_cache, gpu_tokens, &params);
            session.cache[layer] = Some((k_cache, v_cache));
            return attn.wo.forward(out?.reshape([t, nh * hd]));
        }

        let (q, k, v) = self.project(attn, h, t)?;
        let (cos, sin) = &step.rope[table];
        let q = apply_rope(q, cos, sin, c.n_rot, c.rope_style); // [t, nh, hd]
        let k = apply_rope(k, cos, sin, c.n_rot, c.rope_style).swap_dims(0, 1); // [nkv, t, hd]
        let v = v.swap_dims(0, 1);
        let k_cache = k_cache.slice_assign([0..nkv, start..end, 0..hd], k);
        let v_cache = v_cache.slice_assign([0..nkv, start..end, 0..hd], v);
        let q = q.swap_dims(0, 1); // [nh, t, hd]
        let keys = k_cache.clone().slice([0..nkv, 0..end, 0..hd]);
        let values = v_cache.clone().slice([0..nkv, 0..end, 0..hd]);
        session.cache[layer] = Some((k_cache, v_cache));

        // Query heads that share a KV head are stacked as extra rows, so K and V are never copied.
        let q = q.reshape([nkv, group * t, hd]);
        let mut scores = q.matmul(keys.transpose()).mul_scalar(1.0 / (hd as f32).sqrt());
        if let Some(cap) = c.attn_softcap {
            scores = softcap(scores, cap);
        }
        let mask = if sliding { step.sliding.as_ref() } else { step.causal.as_ref() };
        if let Some(mask) = mask {
            scores = (scores.reshape([nkv, group, t, end]) + mask.clone()).reshape([nkv, group * t, end]);
        }
        let probs = softmax(scores, 2);
        let out = probs.matmul(values).reshape([nh, t, hd]).swap_dims(0, 1).reshape([t, nh * hd]);
        attn.wo.forward(out)
    }

    /// Q, K and V of `h` (`[t, heads, head_dim]` each), each from its own matrix, Q and K
    /// normalized when the model has those norms.
    fn project(&self, attn: &Attention, h: Tensor<2>, t: usize) -> Result<(Tensor<3>, Tensor<3>, Tensor<3>), ModelError> {
        let c = &self.config;
        let mut q = attn.wq.forward(h.clone())?.reshape([t, c.n_head, c.head_dim]);
        let mut k = attn.wk.forward(h.clone())?.reshape([t, c.n_head_kv, c.head_dim]);
        let v = attn.wv.forward(h)?.reshape([t, c.n_head_kv, c.head_dim]);
        if let Some(norm) = &attn.q_norm {
            q = norm.forward(q)?;
        }
        if let Some(norm) = &attn.k_norm {
            k = norm.forward(k)?;
        }
        Ok((q, k, v))
    }

    /// The routing (n_expert probabilities per token) is read back, and only the chosen experts'
    /// rows are multiplied.
    async fn moe(&self, moe: &Moe, h: Tensor<2>, step: &Step<'_>) -> Result<Tensor<2>, ModelError> {
        let c = &self.config;
        let (t, d) = (step.t, c.n_embd);
        let probs = softmax(moe.router.forward(h.clone())?, 1)
            .into_data_async()
            .await
            .map_err(|e| ModelError::Context(format!("reading expert routing failed: {e:?}")))?
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Context(format!("reading expert routing failed: {e:?}")))?;

        // Per expert: the token rows routed to it and their weights.
        let mut routed: Vec<(Vec<i64>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); c.n_expert];
        for (row, p) in probs.chunks_exact(c.n_expert).enumerate() {
            let mut order: Vec<usize> = (0..c.n_expert).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let chosen = &order[..c.n_expert_used];
            let sum: f32 = chosen.iter().map(|&e| p[e]).sum();
            for &e in chosen {
                routed[e].0.push(row as i64);
                routed[e].1.push(p[e] / sum);
            }
        }

        let mut out = Tensor::<2>::zeros([t, d], step.device);
        for (e, (rows, weights)) in routed.into_iter().enumerate().filter(|(_, (rows, _))| !rows.is_empty()) {
            let n = rows.len();
            // Only the chosen experts' rows are read: a slice shares the stacked weights.
            let expert = |w: &Matrix| {
                let per_expert = w.rows() / c.n_expert;
                w.slice_rows(e * per_expert..(e + 1) * per_expert)
            };
            let x = h.clone().select(0, Tensor::<1, Int>::from_data(TensorData::new(rows.clone(), [n]), step.device));
            let gated = self.gate(expert(&moe.gate)?.apply(x.clone())?, expert(&moe.up)?.apply(x)?)?;
            let y = expert(&moe.down)?.apply(gated)?;
            // Scatter back: out += P · y with P[row_i, i] = weight_i.
            let mut scatter = vec![0f32; t * n];
            for (i, (&row, &w)) in rows.iter().zip(&weights).enumerate() {
                scatter[row as usize * n + i] = w;
            }
            out = out + Tensor::<2>::from_data(TensorData::new(scatter, [t, n]), step.device).matmul(y);
        }
        Ok(out)
    }
}

/// `tanh(x / cap) · cap`.
fn softcap<const D: usize>(x: Tensor<D>, cap: f32) -> Tensor<D> {
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

/// `attn_factor` · cos/sin of `pos · scale · θ_i` for every position and rotated pair,
/// `θ_i = base^(−2i/n_rot) / factor_i`.
fn rope_tables(
    base: f32,
    scale: f32,
    n_rot: usize,
    factors: Option<&[f32]>,
    attn_factor: f32,
    n_ctx: usize,
) -> (Vec<f32>, Vec<f32>) {
    let half = n_rot / 2;
    let theta: Vec<f64> = (0..half)
        .map(|i| {
            let f = factors.map_or(1.0, |f| f[i] as f64);
            (base as f64).powf(-2.0 * i as f64 / n_rot as f64) / f
        })
        .collect();
    let mut cos = Vec::with_capacity(n_ctx * half);
    let mut sin = Vec::with_capacity(n_ctx * half);
    for p in 0..n_ctx {
        for &th in &theta {
            let a = p as f64 * scale as f64 * th;
            cos.push((a.cos() * attn_factor as f64) as f32);
            sin.push((a.sin() * attn_factor as f64) as f32);
        }
    }
    (cos, sin)
}

/// Rotates the first `n_rot` dimensions of each head of `x: [t, heads, head_dim]`;
/// `cos`/`sin` are `[t, 1, n_rot / 2]`.
fn apply_rope(x: Tensor<3>, cos: &Tensor<3>, sin: &Tensor<3>, n_rot: usize, style: RopeStyle) -> Tensor<3> {
    let [t, heads, hd] = x.dims();
    let half = n_rot / 2;
    let rot = x.clone().slice([0..t, 0..heads, 0..n_rot]);
    let (a, b) = match style {
        RopeStyle::Norm => {
            let pairs = rot.reshape([t, heads, half, 2]);
            (
                pairs.clone().slice([0..t, 0..heads, 0..half, 0..1]).reshape([t, heads, half]),
                pairs.slice([0..t, 0..heads, 0..half, 1..2]).reshape([t, heads, half]),
            )
        }
        RopeStyle::Neox => (rot.clone().slice([0..t, 0..heads, 0..half]), rot.slice([0..t, 0..heads, half..n_rot])),
    };
    let ra = a.clone() * cos.clone() - b.clone() * sin.clone();
    let rb = a * sin.clone() + b * cos.clone();
    let rotated = match style {
        RopeStyle::Norm => Tensor::stack::<4>(vec![ra, rb], 3).reshape([t, heads, n_rot]),
        RopeStyle::Neox => Tensor::cat(vec![ra, rb], 2),
    };
    if n_rot == hd {
        rotated
    } else {
        Tensor::cat(vec![rotated, x.slice([0..t, 0..heads, n_rot..hd])], 2)
    }
}
