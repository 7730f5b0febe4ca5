//! A block's pieces: RMSNorms, weight matrices, the projections a sub-layer starts with, and the
//! feed-forward (dense or a mixture of experts). Each runs where it was placed at load: Burn's ops
//! on the CPU reference, or a kernel family on wgpu ([`Kernels`]), which a piece asks itself
//! rather than the decoder deciding for it.
//!
//! Between sub-layers the residual stream travels as a [`Stream`]: the CPU-adapter family adds a
//! sub-layer's output and normalizes the sum for the next one in one kernel, while the GPU family
//! folds both into its matvecs on a decode step (the residual add into the one that ends a
//! sub-layer, the norm into the one that starts the next).

use std::ops::Range;

use burn::tensor::activation::{gelu_approximate, silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use burrow_gpu::{
    add_rms_norm, gated, matvec, qembed, qmatmul, rms_norm, rms_norm_add, rms_norm_supports, Columns, Fold, Gate, Kernels,
    MatvecKernel, QuantTensor, StepTokens,
};

use crate::config::{Activation, ModelConfig};
use crate::ModelError;

/// `y = x / sqrt(mean(x²) + eps) * weight` over the last dimension.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor<1>,
    eps: f32,
    /// Burrow's kernels (`shaders/rms_norm*.wgsl`), or Burn's reduction when `None`.
    kernels: Option<Kernels>,
}

impl RmsNorm {
    /// A norm that runs `kernels` where its width allows (a multiple of 4), Burn's ops otherwise.
    pub fn new(weight: Tensor<1>, eps: f32, kernels: Option<Kernels>) -> Self {
        let kernels = kernels.filter(|_| rms_norm_supports(weight.dims()[0]));
        RmsNorm { weight, eps, kernels }
    }

    pub fn weight(&self) -> &Tensor<1> {
        &self.weight
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, ModelError> {
        if let Some(kernels) = self.kernels {
            let dims = x.dims();
            let n = dims[D - 1];
            let rows = dims.iter().product::<usize>() / n.max(1);
            return Ok(rms_norm(x.reshape([rows, n]), &self.weight, self.eps, kernels)?.reshape(dims));
        }
        let inv = x.clone().square().mean_dim(D - 1).add_scalar(self.eps).sqrt().recip();
        Ok(x * inv * self.weight.clone().unsqueeze::<D>())
    }

    /// The residual add and this norm: `(x + a, norm(x + a))`, in one kernel on the GPU.
    pub fn forward_add(&self, x: Tensor<2>, a: Tensor<2>) -> Result<(Tensor<2>, Tensor<2>), ModelError> {
        if let Some(kernels) = self.kernels {
            return Ok(add_rms_norm(x, a, &self.weight, self.eps, kernels)?);
        }
        let sum = x + a;
        Ok((sum.clone(), self.forward(sum)?))
    }

    /// `x + norm(a)`: a sub-layer's output norm and the residual add.
    pub fn add_normed(&self, x: Tensor<2>, a: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        if let Some(kernels) = self.kernels {
            return Ok(rms_norm_add(a, x, &self.weight, self.eps, kernels)?);
        }
        Ok(x + self.forward(a)?)
    }

    /// The weight and epsilon, for a GPU-family matvec to fold this norm in.
    pub(crate) fn fold(&self) -> Option<(&Tensor<1>, f32)> {
        self.kernels.filter(Kernels::is_gpu).map(|_| (&self.weight, self.eps))
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

    /// The matrix, if one token's product with it runs the GPU family's matvec.
    pub(crate) fn lanes(&self) -> Option<&QuantTensor> {
        match self {
            Matrix::Quant(w) if matches!(w.matvec_kernel(), MatvecKernel::Lanes { .. }) => Some(w),
            _ => None,
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

    pub fn weight(&self) -> &Matrix {
        &self.weight
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

    /// The matrix and bias, if one token's product runs the GPU family's matvec.
    fn lanes(&self) -> Option<(&QuantTensor, Option<&Tensor<1>>)> {
        Some((self.weight.lanes()?, self.bias.as_ref()))
    }

    /// `r + x · Wᵀ + b` for one token in one GPU-family matvec, if this projection runs it.
    fn forward_residual(&self, x: &Tensor<2>, r: &Tensor<2>) -> Option<Result<Tensor<2>, ModelError>> {
        let lanes = self.lanes().filter(|_| x.dims()[0] == 1)?;
        Some(matvec(x, &[lanes], &Fold { residual: Some(r), ..Fold::default() }).map_err(ModelError::from))
    }
}

/// The residual stream between sub-layers, with the next sub-layer's normalized input when the
/// kernel that formed the stream computed it too.
pub(crate) struct Stream {
    pub x: Tensor<2>,
    pub normed: Option<Tensor<2>>,
}

/// What a sub-layer gives back: its output, to add to the residual stream, or the new stream
/// itself when its last matvec folded the add in.
pub(crate) enum Update {
    Add(Tensor<2>),
    Stream(Tensor<2>),
}

impl Update {
    /// The stream after this update: the residual add with the sub-layer's own output norm
    /// (`post`, Gemma), and the next sub-layer's norm where a kernel computes it with the add.
    pub(crate) fn settle(self, x: Tensor<2>, post: Option<&RmsNorm>, next: &RmsNorm) -> Result<Stream, ModelError> {
        let a = match self {
            Update::Stream(x) => return Ok(Stream { x, normed: None }),
            Update::Add(a) => a,
        };
        match post {
            // One kernel; the next sub-layer folds its norm into its matvec (or runs it).
            Some(post) if post.fold().is_some() => Ok(Stream { x: post.add_normed(x, a)?, normed: None }),
            Some(post) => {
                let (x, h) = next.forward_add(x, post.forward(a)?)?;
                Ok(Stream { x, normed: Some(h) })
            }
            None => {
                let (x, h) = next.forward_add(x, a)?;
                Ok(Stream { x, normed: Some(h) })
            }
        }
    }
}

/// What a projection returns: one tensor of all the parts' outputs end to end, or each part's.
pub(crate) enum Outputs {
    One(Tensor<2>),
    Parts(Vec<Tensor<2>>),
}

/// A sub-layer's start: its RMSNorm, then the matrices its normalized input multiplies (Q, K and
/// V; gate and up), whose outputs are laid end to end.
#[derive(Clone, Debug)]
pub struct Projection {
    pub norm: RmsNorm,
    pub parts: Vec<Linear>,
    /// All of them as one matrix: the file's fused tensor, or fused at load on the GPU.
    pub fused: Option<Linear>,
}

impl Projection {
    /// The rows of each part.
    pub(crate) fn widths(&self) -> Vec<usize> {
        self.parts.iter().map(Linear::weight_rows).collect()
    }

    /// The normalized input: as the stream brings it, or computed.
    pub(crate) fn normed(&self, s: &Stream) -> Result<Tensor<2>, ModelError> {
        match &s.normed {
            Some(h) => Ok(h.clone()),
            None => self.norm.forward(s.x.clone()),
        }
    }

    /// One token's projection in the GPU family's matvecs, the norm folded in: the fused matrix
    /// (with `glu`, its gated output) or each part into one output. `None` where it does not run
    /// so (another family, several tokens, the stream already normalized, a GLU over parts).
    pub(crate) fn decode(&self, s: &Stream, glu: Option<Gate>) -> Option<Result<Tensor<2>, ModelError>> {
        let norm = self.norm.fold().filter(|_| s.normed.is_none() && s.x.dims()[0] == 1)?;
        let matrices: Option<Vec<_>> = match (&self.fused, glu) {
            (Some(fused), _) => Some(vec![fused.lanes()?]),
            (None, None) => self.parts.iter().map(Linear::lanes).collect(),
            (None, Some(_)) => None,
        };
        let fold = Fold { norm: Some(norm), glu, ..Fold::default() };
        let matrices = matrices?;
        if glu.is_some() && matrices[0].0.buffer_count() != 1 {
            return None;
        }
        Some(matvec(&s.x, &matrices, &fold).map_err(ModelError::from))
    }

    /// The projection's outputs: from the fused matrix when there is one, else from each part
    /// (concatenated into one tensor if `one`).
    pub(crate) fn forward(&self, s: &Stream, one: bool) -> Result<Outputs, ModelError> {
        if let Some(y) = self.decode(s, None) {
            return Ok(Outputs::One(y?));
        }
        let h = self.normed(s)?;
        if let Some(fused) = &self.fused {
            return Ok(Outputs::One(fused.forward(h)?));
        }
        let parts = self.parts.iter().map(|p| p.forward(h.clone())).collect::<Result<Vec<_>, _>>()?;
        Ok(if one { Outputs::One(Tensor::cat(parts, 1)) } else { Outputs::Parts(parts) })
    }
}

impl Outputs {
    /// As column ranges the kernels read in place.
    pub(crate) fn columns(self, widths: &[usize]) -> Result<Vec<Columns>, ModelError> {
        match self {
            Outputs::One(t) => Ok(Columns::split(t, widths)?),
            Outputs::Parts(parts) => Ok(parts.into_iter().map(Columns::all).collect()),
        }
    }

    /// As tensors of their own (Burn's ops).
    pub(crate) fn tensors(self, widths: &[usize]) -> Vec<Tensor<2>> {
        match self {
            Outputs::Parts(parts) => parts,
            Outputs::One(t) => {
                let rows = t.dims()[0];
                let mut at = 0;
                widths
                    .iter()
                    .map(|&w| {
                        at += w;
                        t.clone().slice([0..rows, at - w..at])
                    })
                    .collect()
            }
        }
    }
}

/// A block's feed-forward sub-layer.
#[derive(Clone, Debug)]
pub enum FeedForward {
    Dense(Mlp),
    Experts(Moe),
}

/// `down(act(gate · x) * (up · x))`, x the normalized input.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The FFN norm, then gate and up (parts 0 and 1).
    pub input: Projection,
    pub down: Linear,
    pub act: Activation,
    pub kernels: Option<Kernels>,
}

/// Mixture of experts: a router picks `n_expert_used` experts per token by softmax probability;
/// their outputs are summed, weighted by the renormalized probabilities.
#[derive(Clone, Debug)]
pub struct Moe {
    pub norm: RmsNorm,
    /// `[n_expert, n_embd]`.
    pub router: Linear,
    /// The experts stacked by rows: `[n_expert · n_ff, n_embd]`; expert e is rows e·n_ff ...
    pub gate: Matrix,
    pub up: Matrix,
    /// `[n_expert · n_embd, n_ff]`.
    pub down: Matrix,
    pub act: Activation,
    pub kernels: Option<Kernels>,
}

/// `act(gate) · up`, by the gated kernel or Burn's ops.
fn gate(kernels: Option<Kernels>, act: Activation, gate: Tensor<2>, up: Tensor<2>) -> Result<Tensor<2>, ModelError> {
    if kernels.is_some() {
        return Ok(gated(&Columns::all(gate), &Columns::all(up), gate_kind(act))?);
    }
    Ok(match act {
        Activation::Silu => silu(gate),
        Activation::GeluTanh => gelu_approximate(gate),
    } * up)
}

fn gate_kind(act: Activation) -> Gate {
    match act {
        Activation::Silu => Gate::Silu,
        Activation::GeluTanh => Gate::GeluTanh,
    }
}

impl FeedForward {
    /// The sub-layer's norm.
    pub(crate) fn norm(&self) -> &RmsNorm {
        match self {
            FeedForward::Dense(mlp) => &mlp.input.norm,
            FeedForward::Experts(moe) => &moe.norm,
        }
    }

    /// The sub-layer on the stream `s`; with `fold_residual`, the residual add folded into its
    /// last matvec where it can be.
    pub(crate) async fn forward(&self, s: &Stream, config: &ModelConfig, device: &Device, fold_residual: bool) -> Result<Update, ModelError> {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(s, fold_residual),
            FeedForward::Experts(moe) => Ok(Update::Add(moe.forward(moe.norm_input(s)?, config, device).await?)),
        }
    }
}

impl Mlp {
    fn forward(&self, s: &Stream, fold_residual: bool) -> Result<Update, ModelError> {
        let act = gate_kind(self.act);
        let widths = self.input.widths();
        let gated_out = match self.input.decode(s, Some(act)) {
            Some(g) => g?,
            None => match (self.kernels, self.input.forward(s, false)?) {
                (Some(_), outputs) => {
                    let halves = outputs.columns(&widths)?;
                    gated(&halves[0], &halves[1], act)?
                }
                (None, outputs) => {
                    let mut parts = outputs.tensors(&widths).into_iter();
                    let (g, u) = (parts.next(), parts.next());
                    let (Some(g), Some(u)) = (g, u) else {
                        return Err(ModelError::Context("a feed-forward needs gate and up".into()));
                    };
                    gate(None, self.act, g, u)?
                }
            },
        };
        self.down.forward_update(gated_out, &s.x, fold_residual)
    }
}

impl Moe {
    fn norm_input(&self, s: &Stream) -> Result<Tensor<2>, ModelError> {
        match &s.normed {
            Some(h) => Ok(h.clone()),
            None => self.norm.forward(s.x.clone()),
        }
    }

    /// The routing (n_expert probabilities per token) is read back, and only the chosen experts'
    /// rows are multiplied.
    async fn forward(&self, h: Tensor<2>, c: &ModelConfig, device: &Device) -> Result<Tensor<2>, ModelError> {
        let [t, d] = [h.dims()[0], c.n_embd];
        let probs = softmax(self.router.forward(h.clone())?, 1)
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

        let mut out = Tensor::<2>::zeros([t, d], device);
        for (e, (rows, weights)) in routed.into_iter().enumerate().filter(|(_, (rows, _))| !rows.is_empty()) {
            let n = rows.len();
            // Only the chosen experts' rows are read: a slice shares the stacked weights.
            let expert = |w: &Matrix| {
                let per_expert = w.rows() / c.n_expert;
                w.slice_rows(e * per_expert..(e + 1) * per_expert)
            };
            let x = h.clone().select(0, Tensor::<1, Int>::from_data(TensorData::new(rows.clone(), [n]), device));
            let gated = gate(self.kernels, self.act, expert(&self.gate)?.apply(x.clone())?, expert(&self.up)?.apply(x)?)?;
            let y = expert(&self.down)?.apply(gated)?;
            // Scatter back: out += P · y with P[row_i, i] = weight_i.
            let mut scatter = vec![0f32; t * n];
            for (i, (&row, &w)) in rows.iter().zip(&weights).enumerate() {
                scatter[row as usize * n + i] = w;
            }
            out = out + Tensor::<2>::from_data(TensorData::new(scatter, [t, n]), device).matmul(y);
        }
        Ok(out)
    }
}

/// One transformer block.
#[derive(Clone, Debug)]
pub struct Block {
    pub attn: crate::attention::Attention,
    /// RMSNorm of the attention's output before the residual add (Gemma 2/3, GLM-4).
    pub post_attn_norm: Option<RmsNorm>,
    pub ffn: FeedForward,
    pub post_ffn_norm: Option<RmsNorm>,
}

impl Linear {
    /// `r + x · Wᵀ + b` folded into one matvec where this projection runs the GPU family and x
    /// is one token; otherwise the product, for the caller to add.
    pub(crate) fn forward_update(&self, x: Tensor<2>, r: &Tensor<2>, fold_residual: bool) -> Result<Update, ModelError> {
        if fold_residual {
            if let Some(y) = self.forward_residual(&x, r) {
                return Ok(Update::Stream(y?));
            }
        }
        Ok(Update::Add(self.forward(x)?))
    }
}
