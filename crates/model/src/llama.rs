//! The Llama-family decoder as Burn modules: embeddings → N × (RMSNorm, GQA attention with RoPE
//! and a KV cache, RMSNorm, SwiGLU MLP) → RMSNorm → output head.
//!
//! Tensors carry no backend type: the `Device` the weights were loaded on decides where it runs.

use burn::module::Module;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{ModelConfig, RopeStyle};
use crate::ModelError;

/// `y = x / sqrt(mean(x²) + eps) * weight`, row by row.
#[derive(Module, Debug)]
pub struct RmsNorm {
    weight: Tensor<1>,
    #[module(skip)]
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Tensor<1>, eps: f32) -> Self {
        RmsNorm { weight, eps }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mean_sq = x.clone().square().mean_dim(1);
        let inv = mean_sq.add_scalar(self.eps).sqrt().recip();
        x * inv * self.weight.clone().unsqueeze::<2>()
    }
}

/// A weight matrix as the file stores it: `[out, in]` rows; `forward` computes `x · Wᵀ`.
#[derive(Module, Debug)]
pub struct Linear {
    weight: Tensor<2>,
}

impl Linear {
    pub fn new(weight: Tensor<2>) -> Self {
        Linear { weight }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.clone().transpose())
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub attn_norm: RmsNorm,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub ffn_norm: RmsNorm,
    pub w_gate: Linear,
    pub w_up: Linear,
    pub w_down: Linear,
}

#[derive(Module, Debug)]
pub struct Llama {
    /// `[vocab, n_embd]`.
    pub tok_embd: Tensor<2>,
    pub blocks: Vec<Block>,
    pub output_norm: RmsNorm,
    /// `[vocab, n_embd]`; `None` when the embedding is the output head too.
    pub output: Option<Tensor<2>>,
}

/// Per-sequence state: the KV cache, preallocated for the whole context and written in place,
/// and the RoPE tables for every position it can hold.
pub struct Session {
    /// Per layer `(k, v)`, each `[n_head_kv, n_ctx, head_dim]`. `None` only while a layer updates it.
    cache: Vec<Option<(Tensor<3>, Tensor<3>)>>,
    /// `[n_ctx, n_rot / 2]`.
    cos: Tensor<2>,
    sin: Tensor<2>,
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
    pub net: Llama,
    /// Per rotated pair, the divisor of its frequency (`rope_freqs.weight`, Llama 3 scaling).
    pub rope_freq_factors: Option<Vec<f32>>,
    pub device: Device,
}

impl Model {
    /// A fresh sequence able to hold `n_ctx` positions.
    pub fn new_session(&self, n_ctx: usize) -> Result<Session, ModelError> {
        let c = &self.config;
        if n_ctx == 0 {
            return Err(ModelError::Context("a context of 0 tokens was requested".into()));
        }
        let cache_shape = [c.n_head_kv, n_ctx, c.head_dim];
        let cache = (0..c.n_layer)
            .map(|_| Some((Tensor::zeros(cache_shape, &self.device), Tensor::zeros(cache_shape, &self.device))))
            .collect();
        let (cos, sin) = rope_tables(c, self.rope_freq_factors.as_deref(), n_ctx);
        let half = c.n_rot / 2;
        Ok(Session {
            cache,
            cos: Tensor::from_data(TensorData::new(cos, [n_ctx, half]), &self.device),
            sin: Tensor::from_data(TensorData::new(sin, [n_ctx, half]), &self.device),
            n_ctx,
            pos: 0,
        })
    }

    /// Runs `tokens` at the session's next positions and returns the final normalized hidden
    /// states `[tokens, n_embd]`.
    pub fn forward(&self, session: &mut Session, tokens: &[u32]) -> Result<Tensor<2>, ModelError> {
        let c = &self.config;
        let t = tokens.len();
        if t == 0 {
            return Err(ModelError::Context("no tokens to evaluate".into()));
        }
        let start = session.pos;
        let end = start + t;
        if end > session.n_ctx {
            return Err(ModelError::Context(format!(
                "{end} tokens do not fit in a context of {}",
                session.n_ctx
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.n_vocab) {
            return Err(ModelError::Context(format!("token id {bad} is outside the vocabulary of {}", c.n_vocab)));
        }

        let ids: Vec<i64> = tokens.iter().map(|&id| id as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [t]), &self.device);
        let mut x = self.net.tok_embd.clone().select(0, ids);

        let cos = session.cos.clone().slice([start..end]).unsqueeze_dim::<3>(1);
        let sin = session.sin.clone().slice([start..end]).unsqueeze_dim::<3>(1);
        let mask = (t > 1).then(|| causal_mask(start, t, &self.device));

        for (layer, block) in self.net.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(x.clone());
            let attn = self.attention(block, h, session, layer, &cos, &sin, mask.as_ref(), start)?;
            x = x + attn;
            let h = block.ffn_norm.forward(x.clone());
            let ff = block.w_down.forward(silu(block.w_gate.forward(h.clone())) * block.w_up.forward(h));
            x = x + ff;
        }
        session.pos = end;
        Ok(self.net.output_norm.forward(x))
    }

    /// Output-head logits `[rows, vocab]` for hidden states from [`Model::forward`].
    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        let head = self.net.output.as_ref().unwrap_or(&self.net.tok_embd);
        hidden.matmul(head.clone().transpose())
    }

    /// Logits of the last position only: what generation needs, without the full head for every row.
    pub fn last_logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        let rows = hidden.dims()[0];
        self.logits(hidden.slice([rows - 1..rows]))
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        block: &Block,
        h: Tensor<2>,
        session: &mut Session,
        layer: usize,
        cos: &Tensor<3>,
        sin: &Tensor<3>,
        mask: Option<&Tensor<4>>,
        start: usize,
    ) -> Result<Tensor<2>, ModelError> {
        let c = &self.config;
        let t = h.dims()[0];
        let end = start + t;
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_head_kv);
        let group = nh / nkv;

        let q = block.wq.forward(h.clone()).reshape([t, nh, hd]);
        let k = block.wk.forward(h.clone()).reshape([t, nkv, hd]);
        let v = block.wv.forward(h).reshape([t, nkv, hd]);
        let q = apply_rope(q, cos, sin, c.n_rot, c.rope_style).swap_dims(0, 1); // [nh, t, hd]
        let k = apply_rope(k, cos, sin, c.n_rot, c.rope_style).swap_dims(0, 1); // [nkv, t, hd]
        let v = v.swap_dims(0, 1);

        let (k_cache, v_cache) = session.cache[layer]
            .take()
            .ok_or_else(|| ModelError::Context("KV cache is in use".into()))?;
        let k_cache = k_cache.slice_assign([0..nkv, start..end, 0..hd], k);
        let v_cache = v_cache.slice_assign([0..nkv, start..end, 0..hd], v);
        let keys = k_cache.clone().slice([0..nkv, 0..end, 0..hd]);
        let values = v_cache.clone().slice([0..nkv, 0..end, 0..hd]);
        session.cache[layer] = Some((k_cache, v_cache));

        // Query heads that share a KV head are stacked as extra rows, so K and V are never copied.
        let q = q.reshape([nkv, group * t, hd]);
        let scores = q.matmul(keys.transpose()).mul_scalar(1.0 / (hd as f32).sqrt());
        let scores = match mask {
            Some(mask) => (scores.reshape([nkv, group, t, end]) + mask.clone()).reshape([nkv, group * t, end]),
            None => scores,
        };
        let probs = softmax(scores, 2);
        let out = probs.matmul(values).reshape([nh, t, hd]).swap_dims(0, 1).reshape([t, nh * hd]);
        Ok(block.wo.forward(out))
    }
}

/// `[1, 1, t, start + t]`: 0 where query row i (position start + i) may see key j, −∞ elsewhere.
fn causal_mask(start: usize, t: usize, device: &Device) -> Tensor<4> {
    let keys = start + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..keys).map(move |j| if j <= start + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_data(TensorData::new(data, [1, 1, t, keys]), device)
}

/// cos/sin of `pos · θ_i` for every position and rotated pair, `θ_i = base^(−2i/n_rot) / factor_i`.
fn rope_tables(c: &ModelConfig, factors: Option<&[f32]>, n_ctx: usize) -> (Vec<f32>, Vec<f32>) {
    let half = c.n_rot / 2;
    let theta: Vec<f64> = (0..half)
        .map(|i| {
            let f = factors.map_or(1.0, |f| f[i] as f64);
            (c.rope_base as f64).powf(-2.0 * i as f64 / c.n_rot as f64) / f
        })
        .collect();
    let mut cos = Vec::with_capacity(n_ctx * half);
    let mut sin = Vec::with_capacity(n_ctx * half);
    for p in 0..n_ctx {
        for &th in &theta {
            let a = p as f64 * th;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
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
        RopeStyle::Neox => (
            rot.clone().slice([0..t, 0..heads, 0..half]),
            rot.slice([0..t, 0..heads, half..n_rot]),
        ),
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
