//! The model's other hot kernels on f32 tensors: RMSNorm (alone or fused with the residual add),
//! RoPE with the KV-cache store, the gated MLP's activation, attention over the KV cache and
//! choosing the next token. Burn's own reductions use workgroup barriers, which cost seconds per dispatch
//! on SwiftShader, and its element-wise ops take several dispatches where one kernel does: a
//! decode step is a few hundred dispatches instead of two thousand. These kernels use no barriers.

use burn::backend::wgpu::{into_contiguous, CubeTensor, KernelSource, SourceTemplate};
use burn::backend::Cube;
use burn::cubecl::prelude::KernelId;
use burn::tensor::{DType, Int, Tensor};

use std::sync::Arc;

use crate::error::GpuError;
use crate::step::StepTokens;
use crate::kernel::{dispatch, f32_tensor, PARAMS, PARAM_VEC4S, WORKGROUP_SIZE};

/// The largest head dimension the attention kernel accumulates in registers (Gemma's 256).
pub const MAX_HEAD_DIM: usize = 256;

/// Whether [`rms_norm`] and [`add_rms_norm`] take rows of `n` values: a positive multiple of 4
/// (their kernels read vec4s).
pub fn rms_norm_supports(n: usize) -> bool {
    n > 0 && n % 4 == 0
}

/// Whether [`attention`] takes heads of `head_dim` values: at most [`MAX_HEAD_DIM`], and a
/// multiple of 4 (its kernels read vec4s).
pub fn attention_supports(head_dim: usize) -> bool {
    head_dim <= MAX_HEAD_DIM && head_dim % 4 == 0
}

/// Partial maxima of the argmax's first pass, and partial sums of the sampling kernel's (a
/// multiple of the workgroup size).
const ARGMAX_PARTIALS: usize = 256;
/// Thresholds each pass of the sampling kernel's search evaluates (`shaders/sample.wgsl`).
const SAMPLE_CANDIDATES: usize = 16;
/// The sampling kernel's ids are below 2^SAMPLE_ID_BITS (a multiple of 4: one digit per pass).
const SAMPLE_ID_BITS: usize = 20;
/// The sampling kernel's step code that makes the top-k cutoff the final threshold (its
/// SEARCH_CUTOFF, as a search number).
const SAMPLE_SEARCH_CUTOFF: u32 = 4;
/// Words of the sampling kernel's state (its ST_CAND + 2 · SAMPLE_CANDIDATES).
const SAMPLE_STATE_WORDS: usize = 16 + 2 * SAMPLE_CANDIDATES;

const RMS_NORM: &str = include_str!("../../../shaders/rms_norm.wgsl");
const ADD_RMS_NORM: &str = include_str!("../../../shaders/add_rms_norm.wgsl");
const ROPE_KV: &str = include_str!("../../../shaders/rope_kv.wgsl");
const GATED: &str = include_str!("../../../shaders/gated.wgsl");
const ATTENTION: &str = include_str!("../../../shaders/attention.wgsl");
const ATTENTION_DECODE: &str = include_str!("../../../shaders/attention_decode.wgsl");
const ONLINE_SOFTMAX: &str = include_str!("../../../shaders/online_softmax.wgsl");
/// Chunks of positions one decode query's attention is split into (`shaders/attention_decode.wgsl`):
/// heads × ATTENTION_CHUNKS invocations share the positions instead of one per head.
const ATTENTION_CHUNKS: usize = 32;
const ARGMAX: &str = include_str!("../../../shaders/argmax.wgsl");
const SAMPLE: &str = include_str!("../../../shaders/sample.wgsl");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    RmsNorm,
    AddRmsNorm,
    /// Whether q, k and v come from one fused buffer.
    RopeKv(bool),
    /// Whether gate and up come from one fused buffer.
    Gated(bool),
    /// For heads of this many values.
    Attention(usize),
    /// `shaders/attention_decode.wgsl`'s phase 0 (partial) or 1 (combine), for heads of this
    /// many values.
    AttentionDecode(u8, usize),
    /// `shaders/argmax.wgsl`'s phase 0 (penalty), 1 (partial maxima) or 2 (final).
    Argmax(u8),
    /// `shaders/sample.wgsl`'s phase 0 (init), 1 (eval), 2 (step), 3 (chunk) or 4 (draw).
    Sample(u8),
}

impl KernelSource for Op {
    fn source(&self) -> SourceTemplate {
        let (text, phase) = match self {
            Op::RmsNorm => (RMS_NORM, 0),
            Op::AddRmsNorm => (ADD_RMS_NORM, 0),
            Op::RopeKv(_) => (ROPE_KV, 0),
            Op::Gated(_) => (GATED, 0),
            Op::Attention(_) => (ATTENTION, 0),
            Op::AttentionDecode(phase, _) => (ATTENTION_DECODE, *phase),
            Op::Argmax(phase) => (ARGMAX, *phase),
            Op::Sample(phase) => (SAMPLE, *phase),
        };
        let sources = match self {
            Op::RopeKv(fused) => sources(&["q", "k", "v"], 5, *fused),
            Op::Gated(fused) => sources(&["gate", "up"], 1, *fused),
            _ => String::new(),
        };
        SourceTemplate::new(text)
            .add_template(PARAMS)
            .register("sources", sources)
            .register("online_softmax", ONLINE_SOFTMAX)
            .register("workgroup_size", WORKGROUP_SIZE.to_string())
            .register("param_vec4s", PARAM_VEC4S.to_string())
            .register("head_dim", match self {
                Op::Attention(hd) | Op::AttentionDecode(_, hd) => *hd,
                _ => 0,
            }.to_string())
            .register("phase", phase.to_string())
            .register("partials", ARGMAX_PARTIALS.to_string())
            .register("chunks", ATTENTION_CHUNKS.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(*self)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// The declarations of a kernel's input columns (`names`, bound from `first` on) with their
/// readers `<name>_at(i)`, then the parameter uniform: one binding per name, or one binding for
/// all of them when they are columns of one buffer (WebGPU forbids binding a buffer twice for
/// writing, and cubecl binds every buffer read_write).
fn sources(names: &[&str], first: usize, fused: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let decl = |out: &mut String, binding: usize, name: &str| {
        writeln!(out, "@group(0) @binding({binding}) var<storage, read_write> {name}: array<f32>;").unwrap();
    };
    let params_binding = if fused {
        decl(&mut out, first, "src");
        for name in names {
            writeln!(out, "fn {name}_at(i: u32) -> f32 {{ return src[i]; }}").unwrap();
        }
        first + 1
    } else {
        for (j, name) in names.iter().enumerate() {
            decl(&mut out, first + j, name);
            writeln!(out, "fn {name}_at(i: u32) -> f32 {{ return {name}[i]; }}").unwrap();
        }
        first + names.len()
    };
    writeln!(out, "@group(0) @binding({params_binding}) var<uniform> params: array<vec4<u32>, {PARAM_VEC4S}>;").unwrap();
    out
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

/// Columns `start .. start + len` of every row of an f32 tensor `[rows, width]`: one part of a
/// fused projection's output (the queries, keys and values of one matmul, or the gate and up
/// halves), which [`rope_kv`] and [`gated`] read in place instead of copying it out.
#[derive(Clone, Debug)]
pub struct Columns {
    tensor: Tensor<2>,
    start: usize,
    len: usize,
    /// Shared by the parts of one [`Columns::split`]: they are bound as one buffer.
    source: Arc<()>,
}

impl Columns {
    /// Every column of `tensor`.
    pub fn all(tensor: Tensor<2>) -> Self {
        let len = tensor.dims()[1];
        Columns { tensor, start: 0, len, source: Arc::new(()) }
    }

    /// `tensor` cut into consecutive column ranges of `widths`, which must add up to its width.
    ///
    /// # Errors
    ///
    /// [`GpuError::Shape`] if they do not.
    pub fn split(tensor: Tensor<2>, widths: &[usize]) -> Result<Vec<Columns>, GpuError> {
        let width = tensor.dims()[1];
        if widths.iter().sum::<usize>() != width || widths.contains(&0) {
            return Err(GpuError::Shape(format!("columns {widths:?} of a tensor {:?}", tensor.dims())));
        }
        let mut start = 0;
        let source = Arc::new(());
        Ok(widths
            .iter()
            .map(|&len| {
                start += len;
                Columns { tensor: tensor.clone(), start: start - len, len, source: source.clone() }
            })
            .collect())
    }

    /// `[rows, len]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.tensor.dims()[0], self.len]
    }

    /// The first column and the row stride, as kernel parameters.
    fn layout(&self) -> (u32, u32) {
        (self.start as u32, self.tensor.dims()[1] as u32)
    }

    /// The tensor's buffer.
    fn bind(&self, what: &str) -> Result<CubeTensor, GpuError> {
        primitive(self.tensor.clone(), what)
    }

    /// Whether every one of `parts` is a column range of one tensor (one [`Columns::split`]).
    fn one_source(parts: &[&Columns]) -> bool {
        parts.windows(2).all(|w| Arc::ptr_eq(&w[0].source, &w[1].source))
    }
}

/// `x / sqrt(mean(x²) + eps) · w` over each row of `x: [rows, n]`, `w: [n]`.
///
/// # Errors
///
/// [`GpuError::Shape`] if `w` is not `[n]` or `n` is not a multiple of 4
/// ([`rms_norm_supports`]); [`GpuError::NotWgpu`] / [`GpuError::DType`] for
/// tensors that are not f32 on a wgpu device; [`GpuError::TooLarge`] past the dispatch limit.
pub fn rms_norm(x: Tensor<2>, w: &Tensor<1>, eps: f32) -> Result<Tensor<2>, GpuError> {
    let [rows, n] = x.dims();
    if w.dims() != [n] || rows == 0 || !rms_norm_supports(n) {
        return Err(GpuError::Shape(format!("x [{rows}, {n}] with weight {:?}", w.dims())));
    }
    let x = primitive(x, "x")?;
    let w = primitive(w.clone(), "the weight")?;
    let y = x.client.empty(rows * n * 4);
    let groups = [rows.div_ceil(WORKGROUP_SIZE), 1];
    dispatch(&x.client, Op::RmsNorm, groups, &[&x.handle, &w.handle, &y], &[rows as u32, n as u32, eps.to_bits()])?;
    Ok(f32_tensor(&x.client, &x.device, y, [rows, n]))
}

/// `(x + a, rms_norm(x + a, w, eps))` for `x`, `a: [rows, n]`: the residual add and the next
/// sub-layer's norm in one dispatch (`shaders/add_rms_norm.wgsl`).
///
/// # Errors
///
/// As [`rms_norm`], and [`GpuError::Shape`] if `a` is not shaped like `x`.
pub fn add_rms_norm(x: Tensor<2>, a: Tensor<2>, w: &Tensor<1>, eps: f32) -> Result<(Tensor<2>, Tensor<2>), GpuError> {
    let [rows, n] = x.dims();
    if a.dims() != [rows, n] || w.dims() != [n] || rows == 0 || !rms_norm_supports(n) {
        return Err(GpuError::Shape(format!("x [{rows}, {n}] + {:?} with weight {:?}", a.dims(), w.dims())));
    }
    let x = primitive(x, "x")?;
    let a = primitive(a, "the residual")?;
    let w = primitive(w.clone(), "the weight")?;
    let s = x.client.empty(rows * n * 4);
    let y = x.client.empty(rows * n * 4);
    let groups = [rows.div_ceil(WORKGROUP_SIZE), 1];
    let params = [rows as u32, n as u32, eps.to_bits()];
    dispatch(&x.client, Op::AddRmsNorm, groups, &[&x.handle, &a.handle, &w.handle, &s, &y], &params)?;
    Ok((f32_tensor(&x.client, &x.device, s, [rows, n]), f32_tensor(&x.client, &x.device, y, [rows, n])))
}

/// Which dimensions RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopePairs {
    /// `(2i, 2i + 1)` (Llama's "norm" style).
    Adjacent,
    /// `(i, i + n_rot / 2)` (the "neox" style of Qwen, Phi-3, Gemma).
    Halves,
}

/// What [`rope_kv`] needs besides the tensors and the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeParams {
    /// Rotated dimensions at the start of each head (the rest pass through).
    pub n_rot: usize,
    pub pairs: RopePairs,
}

/// RoPE on one step's queries `q: [T, heads · head_dim]` and keys `k: [T, kv_heads · head_dim]` at
/// the positions of `step`, with `rope: [n_ctx, n_rot / 2, 2]` holding (cos, sin) per position and
/// pair; the rotated keys and the values `v` (shaped like `k`) are written into the caches
/// `k_cache`, `v_cache: [kv_heads, n_ctx, head_dim]` in place (`shaders/rope_kv.wgsl`). q, k and v
/// may be columns of one fused projection's output. Returns the rotated queries
/// `[T, heads, head_dim]` and the two caches. The caches are written in place whoever else holds
/// their buffers, so the caller must own them alone (a session does); cubecl itself holds them
/// while earlier kernels that read them are queued, so a shared buffer is no error here.
///
/// # Errors
///
/// [`GpuError::Shape`] for inconsistent shapes or positions past the cache.
#[allow(clippy::type_complexity)]
pub fn rope_kv(
    q: &Columns,
    k: &Columns,
    v: &Columns,
    k_cache: Tensor<3>,
    v_cache: Tensor<3>,
    rope: &Tensor<3>,
    step: &StepTokens,
    p: &RopeParams,
) -> Result<(Tensor<3>, Tensor<3>, Tensor<3>), GpuError> {
    let start = step.start();
    let [tokens, q_len] = q.dims();
    let [kv_heads, n_ctx, hd] = k_cache.dims();
    let [rope_ctx, half, two] = rope.dims();
    let heads = if hd == 0 { 0 } else { q_len / hd };
    let fits = hd > 0
        && heads * hd == q_len
        && k.dims() == [tokens, kv_heads * hd]
        && v.dims() == k.dims()
        && v_cache.dims() == k_cache.dims()
        && hd % 2 == 0
        && p.n_rot % 2 == 0
        && p.n_rot <= hd
        && half == p.n_rot / 2
        && two == 2
        && tokens == step.len()
        && start + tokens <= n_ctx.min(rope_ctx);
    if !fits {
        return Err(GpuError::Shape(format!(
            "q {:?}, k {:?}, v {:?} at {} with caches {:?} / {:?}, table {:?}, n_rot {}",
            q.dims(),
            k.dims(),
            v.dims(),
            start,
            k_cache.dims(),
            v_cache.dims(),
            rope.dims(),
            p.n_rot
        )));
    }
    let fused = Columns::one_source(&[q, k, v]);
    let (q_start, q_width) = q.layout();
    let (k_start, k_width) = k.layout();
    let (v_start, v_width) = v.layout();
    let q = q.bind("q")?;
    let (k, v) = if fused { (q.clone(), q.clone()) } else { (k.bind("k")?, v.bind("v")?) };
    let rope = primitive(rope.clone(), "the RoPE table")?;
    let k_cache = primitive(k_cache, "the key cache")?;
    let v_cache = primitive(v_cache, "the value cache")?;
    let q_out = q.client.empty(tokens * heads * hd * 4);
    let shape = [heads, kv_heads, hd, p.n_rot, n_ctx, usize::from(p.pairs == RopePairs::Halves)].map(|v| v as u32);
    let params = [&shape[..], &[q_start, q_width, k_start, k_width, v_start, v_width]].concat();
    let groups = [((heads + kv_heads) * hd / 2).div_ceil(WORKGROUP_SIZE), tokens];
    let mut buffers = vec![&rope.handle, &k_cache.handle, &v_cache.handle, &q_out, &step.handle, &q.handle];
    if !fused {
        buffers.extend([&k.handle, &v.handle]);
    }
    dispatch(&q.client, Op::RopeKv(fused), groups, &buffers, &params)?;
    Ok((
        f32_tensor(&q.client, &q.device, q_out, [tokens, heads, hd]),
        Tensor::from_primitive::<Cube>(k_cache),
        Tensor::from_primitive::<Cube>(v_cache),
    ))
}

/// The gated MLP's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// SwiGLU: `silu(gate) · up`.
    Silu,
    /// GeGLU with the tanh approximation of GELU (Gemma).
    GeluTanh,
}

/// `act(gate) · up`, element-wise over `[rows, n]` (`shaders/gated.wgsl`); gate and up may be
/// columns of one fused projection's output.
///
/// # Errors
///
/// [`GpuError::Shape`] if the two differ in shape; the errors of the tensors' placement.
pub fn gated(gate: &Columns, up: &Columns, act: Gate) -> Result<Tensor<2>, GpuError> {
    let dims = gate.dims();
    if up.dims() != dims {
        return Err(GpuError::Shape(format!("gate {dims:?} with up {:?}", up.dims())));
    }
    let total = dims[0] * dims[1];
    if total == 0 || total > u32::MAX as usize {
        return Err(GpuError::Shape(format!("gate {dims:?}")));
    }
    let fused = Columns::one_source(&[gate, up]);
    let (g_start, g_width) = gate.layout();
    let (u_start, u_width) = up.layout();
    let gate = gate.bind("the gate")?;
    let up = if fused { gate.clone() } else { up.bind("up")? };
    let y = gate.client.empty(total * 4);
    let groups = total.div_ceil(WORKGROUP_SIZE);
    let per_row = groups.min(crate::MAX_WORKGROUPS_PER_DIM);
    let params = [dims[1] as u32, u32::from(act == Gate::GeluTanh), per_row as u32, total as u32, g_start, g_width, u_start, u_width];
    let buffers: &[&_] = if fused { &[&y, &gate.handle] } else { &[&y, &gate.handle, &up.handle] };
    dispatch(&gate.client, Op::Gated(fused), [per_row, groups.div_ceil(per_row)], buffers, &params)?;
    Ok(f32_tensor(&gate.client, &gate.device, y, dims))
}

/// How [`choose`] picks the next token: the CPU sampler's settings (`burrow_model::SamplerConfig`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    /// Positive logits of the step's penalized ids are divided by it, negative ones multiplied.
    pub penalty: f32,
    /// 0 or less: greedy.
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1 or more: off.
    pub top_p: f32,
    /// 0 or less: off.
    pub min_p: f32,
}

impl Choice {
    /// The most likely token after the penalty.
    pub fn greedy(penalty: f32) -> Choice {
        Choice { penalty, temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0 }
    }
}

/// Chooses the next token on the device from `logits: [n]`, the last row of `step`: the
/// repetition penalty on the step's penalized ids, then the largest logit (the first on ties,
/// `shaders/argmax.wgsl`) or, with a temperature, a draw filtered by top-k, top-p and min-p with
/// the step's random draw (`shaders/sample.wgsl`), the same token the CPU sampler picks for the
/// same draw. Returns a one-element int tensor, so a step reads back 4 bytes instead of the row.
/// Every parameter is the same from step to step, so nothing is uploaded: the choice stays in the
/// step's one submission.
///
/// `logits` is consumed: the penalty is applied in place (to a copy if the buffer is shared).
///
/// # Errors
///
/// [`GpuError::Shape`] for an empty row or one too long for the kernels' ids; the errors of the
/// tensor's placement; [`GpuError::DeviceMismatch`] if `step` is on another device.
pub fn choose(logits: Tensor<1>, step: &StepTokens, choice: &Choice) -> Result<Tensor<1, Int>, GpuError> {
    let [n] = logits.dims();
    if n == 0 || n >= 1 << SAMPLE_ID_BITS {
        return Err(GpuError::Shape(format!("logits [{n}]")));
    }
    let penalize = step.penalized_count() != 0 && choice.penalty != 1.0;
    let mut logits = primitive(logits, "the logits")?;
    if penalize && !logits.handle.can_mut() {
        // Another tensor (or a queued kernel) holds the buffer: penalize a copy (one kernel).
        let copy = Tensor::<1>::from_primitive::<Cube>(logits).add_scalar(0.0);
        logits = primitive(copy, "the logits")?;
    }
    if logits.device != step.device {
        return Err(GpuError::DeviceMismatch);
    }
    let client = &logits.client;
    let part = client.empty(ARGMAX_PARTIALS * SAMPLE_CANDIDATES * 2 * 4);
    let out = client.empty(4);
    let argmax_buffers = [&logits.handle, &step.handle, &part, &out];
    let params = [n as u32, step.draw_word() as u32 + 1, choice.penalty.to_bits()];
    if penalize {
        let groups = step.penalized_count().div_ceil(WORKGROUP_SIZE);
        dispatch(client, Op::Argmax(0), [groups, 1], &argmax_buffers, &params)?;
    }
    dispatch(client, Op::Argmax(1), [ARGMAX_PARTIALS / WORKGROUP_SIZE, 1], &argmax_buffers, &params)?;
    dispatch(client, Op::Argmax(2), [1, 1], &argmax_buffers, &params)?;
    if choice.temperature > 0.0 {
        let st = client.empty(SAMPLE_STATE_WORDS * 4);
        let buffers = [&logits.handle, &step.handle, &part, &st, &out];
        let top_k = if choice.top_k >= n { 0 } else { choice.top_k };
        let params = |code: u32| {
            [
                n as u32,
                top_k as u32,
                choice.top_p.to_bits(),
                choice.min_p.to_bits(),
                step.draw_word() as u32,
                code,
                choice.temperature.to_bits(),
            ]
        };
        let partials = [ARGMAX_PARTIALS / WORKGROUP_SIZE, 1];
        // A search: 4 bits of the key per pass from the top, then 4 bits of the id.
        let search = |which: u32| -> Result<(), GpuError> {
            let key_shifts = (0..32).step_by(4).rev().map(|s| s as u32);
            let id_shifts = (0..SAMPLE_ID_BITS).step_by(4).rev().map(|s| 64 | s as u32);
            for code in key_shifts.chain(id_shifts) {
                dispatch(client, Op::Sample(1), partials, &buffers, &params(0))?;
                dispatch(client, Op::Sample(2), [1, 1], &buffers, &params(which << 8 | code))?;
            }
            Ok(())
        };
        dispatch(client, Op::Sample(0), [1, 1], &buffers, &params(0))?;
        if top_k != 0 {
            search(1)?;
        }
        if choice.top_p < 1.0 || choice.min_p > 0.0 {
            dispatch(client, Op::Sample(1), partials, &buffers, &params(0))?;
            dispatch(client, Op::Sample(2), [1, 1], &buffers, &params(3 << 8))?;
            search(2)?;
        } else {
            // Only top-k, or no filter: the top-k cutoff is the final threshold, without the Z pass
            // and the 26 dispatches of the final search (temperature alone on lavapipe, for
            // SmolLM2's 49152 logits: 1.7 ms instead of 32).
            dispatch(client, Op::Sample(2), [1, 1], &buffers, &params(SAMPLE_SEARCH_CUTOFF << 8))?;
        }
        dispatch(client, Op::Sample(3), partials, &buffers, &params(0))?;
        dispatch(client, Op::Sample(4), [1, 1], &buffers, &params(0))?;
    }
    Ok(Tensor::from_primitive::<Cube>(CubeTensor::new_contiguous(
        client.clone(),
        logits.device.clone(),
        burn::tensor::Shape::new([1]),
        out,
        DType::I32,
    )))
}

/// What [`attention`] needs besides the tensors and the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams {
    /// Sliding window (a query sees the `window` most recent positions), or `None`.
    pub window: Option<usize>,
    /// Multiplies the scores (usually 1 / sqrt(head_dim)).
    pub scale: f32,
    /// `tanh(s / cap) · cap` on the scores (Gemma 2), or `None`.
    pub softcap: Option<f32>,
}

/// Causal attention of `q: [T, heads, head_dim]` (at the positions of `step`) over the caches
/// `k`, `v: [kv_heads, n_ctx, head_dim]`, which must already hold positions up to `start + T - 1`.
/// Returns `[T, heads, head_dim]`. One row (decode) is split over the positions
/// (`shaders/attention_decode.wgsl`), several run one invocation per row and head
/// (`shaders/attention.wgsl`).
///
/// # Errors
///
/// [`GpuError::Shape`] for inconsistent shapes (heads not a multiple of kv_heads, head_dim above
/// [`MAX_HEAD_DIM`] or not a multiple of 4 (the kernels read vec4s), positions past the cache);
/// the errors of the tensors' placement.
pub fn attention(
    q: Tensor<3>,
    k: &Tensor<3>,
    v: &Tensor<3>,
    step: &StepTokens,
    p: &AttentionParams,
) -> Result<Tensor<3>, GpuError> {
    let start = step.start();
    let [tokens, heads, hd] = q.dims();
    let [kv_heads, n_ctx, khd] = k.dims();
    let fits = v.dims() == k.dims()
        && khd == hd
        && attention_supports(hd)
        && kv_heads > 0
        && heads % kv_heads == 0
        && tokens == step.len()
        && start + tokens <= n_ctx;
    if !fits {
        return Err(GpuError::Shape(format!(
            "q [{tokens}, {heads}, {hd}] at {start} with caches {:?} / {:?}",
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
        p.window.unwrap_or(0) as u32,
        p.scale.to_bits(),
        p.softcap.unwrap_or(0.0).to_bits(),
    ];
    if tokens == 1 {
        // One query row: split over the positions (heads alone are too few invocations).
        // Per chunk: (m, l, 0, 0) and acc, as vec4s.
        let part = q.client.empty(heads * ATTENTION_CHUNKS * (4 + hd) * 4);
        let buffers = [&q.handle, &k.handle, &v.handle, &out, &step.handle, &part];
        let groups = (heads * ATTENTION_CHUNKS).div_ceil(WORKGROUP_SIZE);
        dispatch(&q.client, Op::AttentionDecode(0, hd), [groups, 1], &buffers, &params)?;
        dispatch(&q.client, Op::AttentionDecode(1, hd), [(heads * hd / 4).div_ceil(WORKGROUP_SIZE), 1], &buffers, &params)?;
    } else {
        let groups = [(tokens * heads).div_ceil(WORKGROUP_SIZE), 1];
        dispatch(&q.client, Op::Attention(hd), groups, &[&q.handle, &k.handle, &v.handle, &out, &step.handle], &params)?;
    }
    Ok(f32_tensor(&q.client, &q.device, out, [tokens, heads, hd]))
}
