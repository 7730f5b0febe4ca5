//! The model's other hot kernels on f32 tensors: RMSNorm and attention over the KV cache
//! (`shaders/rms_norm.wgsl`, `shaders/attention.wgsl`). Burn's own reductions use workgroup
//! barriers, which cost seconds per dispatch on SwiftShader; these kernels use none.

use burn::backend::wgpu::{into_contiguous, CubeTensor, KernelSource, SourceTemplate};
use burn::backend::Cube;
use burn::cubecl::prelude::KernelId;
use burn::tensor::{DType, Tensor};

use crate::error::GpuError;
use crate::kernel::{dispatch, f32_tensor, WORKGROUP_SIZE};

/// The largest head dimension the attention kernel accumulates in registers (Gemma's 256).
pub const MAX_HEAD_DIM: usize = 256;

const RMS_NORM: &str = include_str!("../../../shaders/rms_norm.wgsl");
const ATTENTION: &str = include_str!("../../../shaders/attention.wgsl");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    RmsNorm,
    Attention,
}

impl KernelSource for Op {
    fn source(&self) -> SourceTemplate {
        let text = match self {
            Op::RmsNorm => RMS_NORM,
            Op::Attention => ATTENTION,
        };
        SourceTemplate::new(text)
            .register("workgroup_size", WORKGROUP_SIZE.to_string())
            .register("max_head_dim", MAX_HEAD_DIM.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(*self)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// A contiguous f32 primitive of a tensor on a wgpu device.
fn primitive<const D: usize>(t: Tensor<D>, what: &str) -> Result<CubeTensor, GpuError> {
    let t: CubeTensor = t
        .try_into_primitive::<Cube>()
        .map_err(|e| GpuError::NotWgpu(format!("{what} is not on a wgpu device: {e:?}")))?;
    if !crate::quant::is_wgpu(&t.device) {
        return Err(GpuError::NotWgpu(format!("{what} is on {:?}", t.device)));
    }
    if t.dtype != DType::F32 {
        return Err(GpuError::DType(t.dtype));
    }
    Ok(into_contiguous(t))
}

/// `x / sqrt(mean(x²) + eps) · w` over each row of `x: [rows, n]`, `w: [n]`.
///
/// # Errors
///
/// [`GpuError::Shape`] if `w` is not `[n]`; [`GpuError::NotWgpu`] / [`GpuError::DType`] for
/// tensors that are not f32 on a wgpu device; [`GpuError::TooLarge`] past the dispatch limit.
pub fn rms_norm(x: Tensor<2>, w: &Tensor<1>, eps: f32) -> Result<Tensor<2>, GpuError> {
    let [rows, n] = x.dims();
    if w.dims() != [n] || rows == 0 || n == 0 {
        return Err(GpuError::Shape(format!("x [{rows}, {n}] with weight {:?}", w.dims())));
    }
    let x = primitive(x, "x")?;
    let w = primitive(w.clone(), "the weight")?;
    let y = x.client.empty(rows * n * 4);
    let groups = [rows.div_ceil(WORKGROUP_SIZE), 1];
    dispatch(&x.client, Op::RmsNorm, groups, &[&x.handle, &w.handle, &y], &[rows as u32, n as u32, eps.to_bits()])?;
    Ok(f32_tensor(&x.client, &x.device, y, [rows, n]))
}

/// What [`attention`] needs besides the tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams {
    /// Position of the first query row.
    pub start: usize,
    /// Sliding window (a query sees the `window` most recent positions), or `None`.
    pub window: Option<usize>,
    /// Multiplies the scores (usually 1 / sqrt(head_dim)).
    pub scale: f32,
    /// `tanh(s / cap) · cap` on the scores (Gemma 2), or `None`.
    pub softcap: Option<f32>,
}

/// Causal attention of `q: [T, heads, head_dim]` (positions `start ..`) over the caches
/// `k`, `v: [kv_heads, n_ctx, head_dim]`, which must already hold positions up to `start + T - 1`.
/// Returns `[T, heads, head_dim]`.
///
/// # Errors
///
/// [`GpuError::Shape`] for inconsistent shapes (heads not a multiple of kv_heads, head_dim above
/// [`MAX_HEAD_DIM`], positions past the cache); the errors of the tensors' placement.
pub fn attention(q: Tensor<3>, k: &Tensor<3>, v: &Tensor<3>, p: &AttentionParams) -> Result<Tensor<3>, GpuError> {
    let [tokens, heads, hd] = q.dims();
    let [kv_heads, n_ctx, khd] = k.dims();
    let fits = v.dims() == k.dims()
        && khd == hd
        && hd <= MAX_HEAD_DIM
        && kv_heads > 0
        && heads % kv_heads == 0
        && tokens > 0
        && p.start + tokens <= n_ctx;
    if !fits {
        return Err(GpuError::Shape(format!(
            "q [{tokens}, {heads}, {hd}] at {} with caches {:?} / {:?}",
            p.start,
            k.dims(),
            v.dims()
        )));
    }
    if n_ctx * hd * kv_heads > u32::MAX as usize {
        return Err(GpuError::TooLarge(format!("attention of {tokens} rows over {n_ctx} positions")));
    }
    let q = primitive(q, "q")?;
    let k = primitive(k.clone(), "the key cache")?;
    let v = primitive(v.clone(), "the value cache")?;
    let out = q.client.empty(tokens * heads * hd * 4);
    let params = [
        tokens as u32,
        heads as u32,
        kv_heads as u32,
        hd as u32,
        n_ctx as u32,
        p.start as u32,
        p.window.unwrap_or(0) as u32,
        p.scale.to_bits(),
        p.softcap.unwrap_or(0.0).to_bits(),
    ];
    let groups = [(tokens * heads).div_ceil(WORKGROUP_SIZE), 1];
    dispatch(&q.client, Op::Attention, groups, &[&q.handle, &k.handle, &v.handle, &out], &params)?;
    Ok(f32_tensor(&q.client, &q.device, out, [tokens, heads, hd]))
}
