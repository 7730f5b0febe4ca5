//! A block's attention sub-layer: Q, K and V from the normalized input, RoPE, the KV cache, causal
//! attention (with the sliding window and soft-cap where the model has them) and the output
//! projection. Burn's ops on the CPU reference; Burrow's kernels on wgpu, where the session's
//! cache lives in GPU buffers the RoPE kernel writes in place.

use burn::tensor::activation::softmax;
use burn::tensor::Tensor;
use burrow_gpu::{attention, rope_kv, AttentionParams, Kernels, RopePairs, RopeParams};

use crate::config::{ModelConfig, RopeStyle};
use crate::decoder::Step;
use crate::layer::{Linear, Projection, RmsNorm, Stream, Update};
use crate::rope::{apply_rope, StepRope};
use crate::session::LayerCache;
use crate::ModelError;

#[derive(Clone, Debug)]
pub struct Attention {
    /// The attention norm, then Q, K and V (parts 0, 1, 2).
    pub input: Projection,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3, Gemma 3).
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    /// Both norms' weights end to end, for the GPU family's RoPE kernel, which applies them.
    pub qk_norms: Option<Tensor<1>>,
    pub wo: Linear,
    /// Burrow's kernels, or Burn's ops when `None`.
    pub kernels: Option<Kernels>,
}

impl Attention {
    /// The sub-layer on the stream `s` for the step's tokens at layer `layer`, whose cache it
    /// writes, rotated as `rope` says; with `fold_residual`, the residual add folded into the
    /// output projection where it can be.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        s: &Stream,
        cache: &mut LayerCache,
        rope: &StepRope,
        step: &Step,
        c: &ModelConfig,
        layer: usize,
        fold_residual: bool,
    ) -> Result<Update, ModelError> {
        let t = step.t;
        let (hd, nh) = (c.head_dim, c.n_head);
        let sliding = c.swa_layers[layer];
        let out = match (cache, self.kernels) {
            (LayerCache::Gpu(cache), Some(kernels)) => {
                let StepRope::Packed(rope, rows) = rope else {
                    return Err(ModelError::Context("the RoPE table is not laid out for the GPU kernels".into()));
                };
                let tokens = step.tokens.as_ref().ok_or_else(|| ModelError::Context("the GPU kernels need the step's tokens on the GPU".into()))?;
                // Read in place as columns of the projection's output (the GPU family's RoPE kernel
                // needs them in one tensor, and applies the Q/K norms itself); the CPU-adapter
                // family normalizes Q and K apart first.
                let qkv = if kernels.is_gpu() || (self.q_norm.is_none() && self.k_norm.is_none()) {
                    self.input.forward(s, kernels.is_gpu())?.columns(&self.input.widths())?
                } else {
                    let (q, k, v) = self.project(s, t, c)?;
                    [q, k, v]
                        .map(|x| {
                            let [t, heads, hd] = x.dims();
                            burrow_gpu::Columns::all(x.reshape([t, heads * hd]))
                        })
                        .to_vec()
                };
                let pairs = match c.rope_style {
                    RopeStyle::Norm => RopePairs::Adjacent,
                    RopeStyle::Neox => RopePairs::Halves,
                };
                let norms = self.qk_norms.as_ref().filter(|_| kernels.is_gpu()).map(|w| (w, c.rms_eps));
                let params = RopeParams { n_rot: c.n_rot, pairs, rows: *rows };
                let q = rope_kv(&qkv[0], &qkv[1], &qkv[2], cache, rope, tokens, &params, norms, kernels)?;
                let params = AttentionParams {
                    window: if sliding { c.sliding_window } else { None },
                    scale: 1.0 / (hd as f32).sqrt(),
                    softcap: c.attn_softcap,
                };
                attention(q, cache, tokens, &params, kernels)?.reshape([t, nh * hd])
            }
            (LayerCache::Tensors(cache), None) => self.reference(s, cache, rope, step, c, sliding)?,
            _ => return Err(ModelError::Context("the session was made for another model".into())),
        };
        self.wo.forward_update(out, &s.x, fold_residual)
    }

    /// Q, K and V of the stream (`[t, heads, head_dim]` each), Q and K normalized when the model
    /// has those norms.
    fn project(&self, s: &Stream, t: usize, c: &ModelConfig) -> Result<(Tensor<3>, Tensor<3>, Tensor<3>), ModelError> {
        let mut parts = self.input.forward(s, false)?.tensors(&self.input.widths()).into_iter();
        let mut next = |heads: usize| {
            parts.next().map(|p| p.reshape([t, heads, c.head_dim])).ok_or_else(|| ModelError::Context("attention needs Q, K and V".into()))
        };
        let (mut q, mut k, v) = (next(c.n_head)?, next(c.n_head_kv)?, next(c.n_head_kv)?);
        if let Some(norm) = &self.q_norm {
            q = norm.forward(q)?;
        }
        if let Some(norm) = &self.k_norm {
            k = norm.forward(k)?;
        }
        Ok((q, k, v))
    }

    /// Burn's attention over a cache of tensors: `[t, heads · head_dim]`.
    fn reference(
        &self,
        s: &Stream,
        cache: &mut Option<(Tensor<3>, Tensor<3>)>,
        rope: &StepRope,
        step: &Step,
        c: &ModelConfig,
        sliding: bool,
    ) -> Result<Tensor<2>, ModelError> {
        let (t, start) = (step.t, step.start);
        let end = start + t;
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_head_kv);
        let group = nh / nkv;
        let (q, k, v) = self.project(s, t, c)?;
        let StepRope::Split(cos, sin) = rope else {
            return Err(ModelError::Context("the RoPE table is laid out for the GPU kernels".into()));
        };
        let q = apply_rope(q, cos, sin, c.n_rot, c.rope_style); // [t, nh, hd]
        let k = apply_rope(k, cos, sin, c.n_rot, c.rope_style).swap_dims(0, 1); // [nkv, t, hd]
        let v = v.swap_dims(0, 1);
        // Taken and put back in one statement that cannot fail: the cache is never left out.
        let (k_cache, v_cache) = cache.take().ok_or_else(|| ModelError::Context("KV cache is in use".into()))?;
        let (k_cache, v_cache) =
            (k_cache.slice_assign([0..nkv, start..end, 0..hd], k), v_cache.slice_assign([0..nkv, start..end, 0..hd], v));
        let keys = k_cache.clone().slice([0..nkv, 0..end, 0..hd]);
        let values = v_cache.clone().slice([0..nkv, 0..end, 0..hd]);
        *cache = Some((k_cache, v_cache));

        // Query heads that share a KV head are stacked as extra rows, so K and V are never copied.
        let q = q.swap_dims(0, 1).reshape([nkv, group * t, hd]);
        let mut scores = q.matmul(keys.transpose()).mul_scalar(1.0 / (hd as f32).sqrt());
        if let Some(cap) = c.attn_softcap {
            scores = crate::decoder::softcap(scores, cap);
        }
        let mask = if sliding { step.sliding.as_ref() } else { step.causal.as_ref() };
        if let Some(mask) = mask {
            scores = (scores.reshape([nkv, group, t, end]) + mask.clone()).reshape([nkv, group * t, end]);
        }
        let probs = softmax(scores, 2);
        Ok(probs.matmul(values).reshape([nh, t, hd]).swap_dims(0, 1).reshape([t, nh * hd]))
    }
}
