//! The model's other hot kernels on f32 tensors: RMSNorm (alone or fused with the residual add),
//! RoPE with the KV-cache store, the gated MLP's activation, attention over the KV cache and
//! choosing the next token, in two families ([`Kernels`]): the CPU-adapter family uses no
//! barriers (Burn's reductions use them, and they cost milliseconds per dispatch on SwiftShader),
//! a lane per row; the GPU family spreads each row over a workgroup and reduces in workgroup
//! memory or subgroups. Either way a decode step is a few hundred dispatches at most instead of
//! Burn's two thousand.

use burn::backend::wgpu::{into_contiguous, CubeTensor, KernelSource, SourceTemplate};
use burn::backend::Cube;
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::Handle;
use burn::tensor::{DType, Int, Tensor};

use std::sync::Arc;

use crate::cache::KvCache;
use crate::device::{fold_groups, is_wgpu, Kernels};
use crate::error::GpuError;
use crate::kernel::{dispatch, dispatch_sized, f32_tensor, Named};
use crate::shaders::{self, GPU_WORKGROUP_SIZE, PARAM_VEC4S, WORKGROUP_SIZE};
use crate::step::StepTokens;

/// The largest head dimension the attention kernels accumulate in registers (Gemma's 256).
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
/// Workgroups of the GPU family's argmax first pass (`shaders/argmax_rows.wgsl`), each a
/// contiguous chunk of the logits.
const ARGMAX_ROWS_PARTIALS: usize = 64;
/// Thresholds each pass of the sampling kernel's search evaluates (`shaders/sample.wgsl`).
const SAMPLE_CANDIDATES: usize = 16;
/// The sampling kernel's ids are below 2^SAMPLE_ID_BITS (a multiple of 4: one digit per pass).
const SAMPLE_ID_BITS: usize = 20;
/// The sampling kernel's step code that makes the top-k cutoff the final threshold (its
/// SEARCH_CUTOFF, as a search number).
const SAMPLE_SEARCH_CUTOFF: u32 = 4;
/// The first word of the sampling kernel's candidates in its state (its ST_CAND), and the
/// state's size (its ST_LEN; the GPU family keeps two).
const SAMPLE_STATE_CAND: usize = 16;
const SAMPLE_STATE_WORDS: usize = SAMPLE_STATE_CAND + 2 * SAMPLE_CANDIDATES;
/// Workgroups of the GPU family's search passes (`shaders/sample/wide.wgsl`, its EVAL_GROUPS).
const SAMPLE_EVAL_GROUPS: usize = 64;
/// Words of one of its two slots of partial sums (its SLOT): a pass's, or the chunks' weights.
const SAMPLE_PART_SLOT: usize = if SAMPLE_EVAL_GROUPS * SAMPLE_CANDIDATES * 2 > ARGMAX_PARTIALS {
    SAMPLE_EVAL_GROUPS * SAMPLE_CANDIDATES * 2
} else {
    ARGMAX_PARTIALS
};
/// Words of the partial sums buffer: the CPU-adapter family's eval partials, or the GPU family's
/// two slots.
const SAMPLE_PART_WORDS: usize = if ARGMAX_PARTIALS * SAMPLE_CANDIDATES * 2 > 2 * SAMPLE_PART_SLOT {
    ARGMAX_PARTIALS * SAMPLE_CANDIDATES * 2
} else {
    2 * SAMPLE_PART_SLOT
};

/// Chunks of positions one decode query's attention is split into (`shaders/attention_decode.wgsl`):
/// heads × ATTENTION_CHUNKS invocations share the positions instead of one per head.
const ATTENTION_CHUNKS: usize = 32;
/// Chunks of the GPU family's split attention (`shaders/attention_split.wgsl`): with the KV heads,
/// the workgroups of its first phase (SmolLM2: 48).
const SPLIT_CHUNKS: usize = 16;
/// Lanes of the GPU family's attention, RoPE and (for rows up to `NORM_LONG_ROW` values) norm
/// workgroups.
const SMALL_WORKGROUP: usize = 64;
/// Rows longer than this get a norm workgroup of `GPU_WORKGROUP_SIZE` lanes.
const NORM_LONG_ROW: usize = 1024;
/// Words of K one tile of the split attention holds in workgroup memory (4 KiB).
const SPLIT_TILE_WORDS: usize = 1024;
/// The most positions a tile of the GPU family's prefill attention holds (one per lane).
const ATTENTION_TILE_MAX: usize = 64;
/// Workgroup memory of its start position word, as Tint counts it (rounded up to 16 bytes).
const ATTENTION_TILES_WORD: usize = 16;
/// Workgroup memory every adapter gives a workgroup (WebGPU's default limit).
const WORKGROUP_MEMORY: usize = 16 << 10;
/// Lanes of the coalescing test's traced attention that record their loads: how many each keeps.
const TRACE_LOADS: usize = 64;

/// What an RMSNorm of the GPU family (`shaders/rms_norm_rows.wgsl`) does around the norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum NormMode {
    /// `n(x)`
    Plain = 0,
    /// `s = x + a, n(s)`
    AddFirst = 1,
    /// `a + n(x)`
    AddAfter = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    RmsNorm,
    AddRmsNorm,
    NormRows { mode: NormMode, lanes: usize, subgroups: bool },
    /// Whether q, k and v come from one fused buffer.
    RopeKv(bool),
    RopeHeads { qk_norm: bool, subgroups: bool },
    /// Whether gate and up come from one fused buffer.
    Gated(bool),
    /// For heads of this many values, over an f16 cache or not.
    Attention { head_dim: usize, f16: bool },
    /// The GPU family's prefill attention (`shaders/attention_tiles.wgsl`): heads of this many
    /// values, K and V tiles of `tile` positions.
    AttentionTiles { head_dim: usize, tile: usize },
    /// `shaders/attention_decode.wgsl`'s phase 0 (partial) or 1 (combine), for heads of this
    /// many values.
    AttentionDecode(u8, usize),
    /// `shaders/attention_split.wgsl`'s phase, for heads of `head_dim` values in KV groups of
    /// `group` query heads, `tile` positions at a time; `trace` records its cache loads.
    AttentionSplit { phase: u8, head_dim: usize, group: usize, tile: usize, trace: bool },
    /// `shaders/argmax.wgsl`'s phase 0 (penalty), 1 (partial maxima) or 2 (final).
    Argmax(u8),
    /// `shaders/argmax_rows.wgsl`'s phase 1 (partial) or 2 (final).
    ArgmaxRows(u8),
    /// `shaders/sample.wgsl`'s phase 0 (init), 1 (eval), 2 (step), 3 (chunk) or 4 (draw); `wide`:
    /// its workgroup forms (the GPU family).
    Sample { phase: u8, wide: bool },
}

impl Op {
    /// The GPU family's op variants (`crate::variants`), head-size independent ones.
    pub(crate) fn gpu_variants(subgroups: bool) -> Vec<Op> {
        let mut ops = Vec::new();
        for mode in [NormMode::Plain, NormMode::AddFirst, NormMode::AddAfter] {
            for lanes in [SMALL_WORKGROUP, GPU_WORKGROUP_SIZE] {
                ops.push(Op::NormRows { mode, lanes, subgroups });
            }
        }
        ops.extend([false, true].map(|qk_norm| Op::RopeHeads { qk_norm, subgroups }));
        if !subgroups {
            ops.extend([Op::ArgmaxRows(1), Op::ArgmaxRows(2)]);
            ops.extend([0, 1, 3, 4].map(|phase| Op::Sample { phase, wide: true }));
        }
        ops
    }

    /// The CPU-adapter family's op variants (and the shared sampler), for heads of `head_dims`.
    pub(crate) fn cpu_adapter_variants(head_dims: &[usize]) -> Vec<Op> {
        let mut ops = vec![Op::RmsNorm, Op::AddRmsNorm, Op::RopeKv(false), Op::RopeKv(true), Op::Gated(false), Op::Gated(true)];
        ops.extend((0..3).map(Op::Argmax));
        ops.extend((0..5).map(|phase| Op::Sample { phase, wide: false }));
        for &hd in head_dims {
            ops.extend([Op::AttentionDecode(0, hd), Op::AttentionDecode(1, hd)]);
        }
        ops
    }

    /// The attention kernels both families build per head size: prefill over either cache, and
    /// the GPU family's split decode for groups of 1, 4 and 8 query heads.
    pub(crate) fn head_variants(head_dims: &[usize]) -> Vec<Op> {
        let mut ops = Vec::new();
        for &head_dim in head_dims {
            ops.extend([false, true].map(|f16| Op::Attention { head_dim, f16 }));
            ops.push(Op::AttentionTiles { head_dim, tile: attention_tile(head_dim) });
            for group in [1, 4, 8] {
                let tile = split_tile(head_dim, group).expect("fits the default workgroup memory");
                for phase in [0, 1] {
                    ops.push(Op::AttentionSplit { phase, head_dim, group, tile, trace: false });
                }
            }
        }
        ops
    }

    fn workgroup_size(&self) -> usize {
        match self {
            Op::NormRows { lanes, .. } => *lanes,
            Op::RopeHeads { .. } | Op::AttentionSplit { .. } | Op::AttentionTiles { .. } => SMALL_WORKGROUP,
            Op::ArgmaxRows(_) => GPU_WORKGROUP_SIZE,
            _ => WORKGROUP_SIZE,
        }
    }
}

/// The `{{bindings}}` of a GPU-family kernel: `names` (f32 arrays, or u32 for `trace`) bound from
/// `first` on, then the parameter uniform.
fn extra_bindings(first: usize, names: &[&str]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        let ty = if *name == "trace" { "array<u32>" } else { "array<f32>" };
        writeln!(out, "@group(0) @binding({}) var<storage, read_write> {name}: {ty};", first + i).unwrap();
    }
    writeln!(out, "@group(0) @binding({}) var<uniform> params: array<vec4<u32>, {PARAM_VEC4S}>;", first + names.len()).unwrap();
    out
}

impl KernelSource for Op {
    fn source(&self) -> SourceTemplate {
        let text = match self {
            Op::RmsNorm => shaders::RMS_NORM,
            Op::AddRmsNorm => shaders::ADD_RMS_NORM,
            Op::NormRows { .. } => shaders::RMS_NORM_ROWS,
            Op::RopeKv(_) => shaders::ROPE_KV,
            Op::RopeHeads { .. } => shaders::ROPE_HEADS,
            Op::Gated(_) => shaders::GATED,
            Op::Attention { .. } => shaders::ATTENTION,
            Op::AttentionTiles { .. } => shaders::ATTENTION_TILES,
            Op::AttentionDecode(..) => shaders::ATTENTION_DECODE,
            Op::AttentionSplit { .. } => shaders::ATTENTION_SPLIT,
            Op::Argmax(_) => shaders::ARGMAX,
            Op::ArgmaxRows(_) => shaders::ARGMAX_ROWS,
            Op::Sample { .. } => shaders::SAMPLE,
        };
        let mut source = shaders::template(text, self.workgroup_size());
        match *self {
            Op::RopeKv(fused) => source = source.register("sources", sources(&["q", "k", "v"], 5, fused)),
            Op::Gated(fused) => source = source.register("sources", sources(&["gate", "up"], 1, fused)),
            Op::NormRows { mode, subgroups, .. } => {
                let (reduce, builtins) = shaders::reduce(subgroups);
                let (names, readers): (&[&str], &str) = match mode {
                    NormMode::Plain => (&[], "fn a_at(i: u32) -> vec4<f32> { return vec4<f32>(0.0); }\nfn s_set(i: u32, v: vec4<f32>) {}\n"),
                    NormMode::AddFirst => (&["a", "s"], "fn a_at(i: u32) -> vec4<f32> { return a[i]; }\nfn s_set(i: u32, v: vec4<f32>) { s[i] = v; }\n"),
                    NormMode::AddAfter => (&["a"], "fn a_at(i: u32) -> vec4<f32> { return a[i]; }\nfn s_set(i: u32, v: vec4<f32>) {}\n"),
                };
                let bindings = extra_bindings(3, names).replace("array<f32>", "array<vec4<f32>>") + readers;
                source = source
                    .register("bindings", bindings)
                    .register("mode", (mode as u32).to_string())
                    .register("reduce", reduce)
                    .register("subgroup_builtins", builtins);
            }
            Op::RopeHeads { qk_norm, subgroups } => {
                let (reduce, builtins) = shaders::reduce(subgroups);
                let bindings = if qk_norm {
                    extra_bindings(6, &["norms"]) + "fn norm_weight(i: u32) -> f32 { return norms[i]; }\n"
                } else {
                    extra_bindings(6, &[]) + "fn norm_weight(i: u32) -> f32 { return 1.0; }\n"
                };
                source = source
                    .register("bindings", bindings)
                    .register("qk_norm", qk_norm.to_string())
                    .register("reduce", reduce)
                    .register("subgroup_builtins", builtins);
            }
            Op::Attention { head_dim, f16 } => {
                source = source
                    .add_template(if f16 { shaders::KV_F16 } else { shaders::KV_F32 })
                    .register("kv_elem", if f16 { "vec2<u32>" } else { "vec4<f32>" })
                    .register("online_softmax", shaders::ONLINE_SOFTMAX)
                    .register("head_dim", head_dim.to_string());
            }
            Op::AttentionTiles { head_dim, tile } => {
                source = source
                    .register("online_softmax", shaders::ONLINE_SOFTMAX)
                    .register("head_dim", head_dim.to_string())
                    .register("tile", tile.to_string());
            }
            Op::AttentionDecode(phase, head_dim) => {
                source = source
                    .add_template(shaders::KV_F32)
                    .register("kv_elem", "vec4<f32>")
                    .register("online_softmax", shaders::ONLINE_SOFTMAX)
                    .register("head_dim", head_dim.to_string())
                    .register("phase", phase.to_string())
                    .register("chunks", ATTENTION_CHUNKS.to_string());
            }
            Op::AttentionSplit { phase, head_dim, group, tile, trace } => {
                let record = |buffer: u32| {
                    format!("    if (trace_n < TRACE_LOADS) {{\n        trace[trace_lane * TRACE_LOADS + trace_n] = ({buffer}u << 31u) | (i + 1u);\n    }}\n    trace_n += 1u;")
                };
                let bindings = if trace {
                    extra_bindings(6, &["trace"])
                        + &format!("const TRACE_LOADS: u32 = {TRACE_LOADS}u;\nvar<private> trace_n: u32;\nvar<private> trace_lane: u32;\n")
                } else {
                    extra_bindings(6, &[])
                };
                let init = "    trace_lane = (wg.y * CHUNKS + wg.x) * WORKGROUP_SIZE + lid;";
                source = source
                    .register("bindings", bindings)
                    .register("phase", phase.to_string())
                    .register("head_dim", head_dim.to_string())
                    .register("group", group.to_string())
                    .register("tile", tile.to_string())
                    .register("chunks", SPLIT_CHUNKS.to_string())
                    .register("record_k", if trace { record(0) } else { String::new() })
                    .register("record_v", if trace { record(1) } else { String::new() })
                    .register("trace_init", if trace { init } else { "" });
            }
            Op::Argmax(phase) => {
                source = source.register("phase", phase.to_string()).register("partials", ARGMAX_PARTIALS.to_string());
            }
            Op::ArgmaxRows(phase) => {
                source = source.register("phase", phase.to_string()).register("partials", ARGMAX_ROWS_PARTIALS.to_string());
            }
            Op::Sample { phase, wide } => {
                let family = if wide {
                    shaders::SAMPLE_WIDE.replace("{{reduce}}", &shaders::reduce(false).0)
                } else {
                    shaders::SAMPLE_SERIAL.to_string()
                };
                source = source
                    .add_template(family)
                    .register("eval_groups", SAMPLE_EVAL_GROUPS.to_string())
                    .register("part_slot", SAMPLE_PART_SLOT.to_string())
                    .register("phase", phase.to_string())
                    .register("partials", ARGMAX_PARTIALS.to_string())
                    .register("candidates", SAMPLE_CANDIDATES.to_string())
                    .register("id_bits", SAMPLE_ID_BITS.to_string())
                    .register("search_cutoff", SAMPLE_SEARCH_CUTOFF.to_string())
                    .register("state_cand", SAMPLE_STATE_CAND.to_string());
            }
            Op::RmsNorm | Op::AddRmsNorm => {}
        }
        source
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(*self)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

impl Named for Op {
    fn name(&self) -> String {
        match self {
            Op::RmsNorm => "rms_norm".into(),
            Op::AddRmsNorm => "add_rms_norm".into(),
            Op::NormRows { mode, .. } => format!("rms_norm_rows.{mode:?}").to_lowercase(),
            Op::RopeKv(_) => "rope_kv".into(),
            Op::RopeHeads { .. } => "rope_heads".into(),
            Op::Gated(_) => "gated".into(),
            Op::Attention { .. } => "attention".into(),
            Op::AttentionTiles { .. } => "attention_tiles".into(),
            Op::AttentionDecode(phase, _) => format!("attention_decode.{phase}"),
            Op::AttentionSplit { phase, .. } => format!("attention_split.{phase}"),
            Op::Argmax(phase) => format!("argmax.{phase}"),
            Op::ArgmaxRows(phase) => format!("argmax_rows.{phase}"),
            Op::Sample { phase, .. } => format!("sample.{phase}"),
        }
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
pub(crate) fn primitive<const D: usize>(t: Tensor<D>, what: &str) -> Result<CubeTensor, GpuError> {
    let t: CubeTensor = t
        .try_into_primitive::<Cube>()
        .map_err(|e| GpuError::NotWgpu(format!("{what} is not on a wgpu device: {e:?}")))?;
    if !is_wgpu(&t.device) {
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

/// `x / sqrt(mean(x²) + eps) · w` over each row of `x: [rows, n]`, `w: [n]`, by `kernels`' family
/// (`shaders/rms_norm.wgsl`: a lane per row; `rms_norm_rows.wgsl`: a workgroup per row).
///
/// # Errors
///
/// [`GpuError::Shape`] if `w` is not `[n]` or `n` is not a multiple of 4
/// ([`rms_norm_supports`]); [`GpuError::NotWgpu`] / [`GpuError::DType`] for
/// tensors that are not f32 on a wgpu device; [`GpuError::TooLarge`] past the dispatch limit.
pub fn rms_norm(x: Tensor<2>, w: &Tensor<1>, eps: f32, kernels: Kernels) -> Result<Tensor<2>, GpuError> {
    if kernels.is_gpu() {
        return Ok(norm_rows(x, None, w, eps, NormMode::Plain, kernels.subgroups)?.0);
    }
    let [rows, n] = x.dims();
    check_norm(rows, n, None, w)?;
    let x = primitive(x, "x")?;
    let w = primitive(w.clone(), "the weight")?;
    let y = x.client.empty(rows * n * 4);
    let groups = [rows.div_ceil(WORKGROUP_SIZE), 1];
    dispatch(&x.client, Op::RmsNorm, groups, &[&x.handle, &w.handle, &y], &[rows as u32, n as u32, eps.to_bits()])?;
    Ok(f32_tensor(&x.client, &x.device, y, [rows, n]))
}

/// `(x + a, rms_norm(x + a, w, eps))` for `x`, `a: [rows, n]`: the residual add and the next
/// sub-layer's norm in one dispatch (`shaders/add_rms_norm.wgsl`, or `rms_norm_rows.wgsl` mode 1).
///
/// # Errors
///
/// As [`rms_norm`], and [`GpuError::Shape`] if `a` is not shaped like `x`.
pub fn add_rms_norm(x: Tensor<2>, a: Tensor<2>, w: &Tensor<1>, eps: f32, kernels: Kernels) -> Result<(Tensor<2>, Tensor<2>), GpuError> {
    if kernels.is_gpu() {
        let (y, s) = norm_rows(x, Some(a), w, eps, NormMode::AddFirst, kernels.subgroups)?;
        return Ok((s.expect("mode 1 writes the sum"), y));
    }
    let [rows, n] = x.dims();
    check_norm(rows, n, Some(a.dims()), w)?;
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

/// `a + rms_norm(x, w, eps)`: a sub-layer's output norm and the residual add (Gemma's post-norms),
/// in one dispatch in the GPU family (`rms_norm_rows.wgsl` mode 2), a norm and an add otherwise.
///
/// # Errors
///
/// As [`add_rms_norm`].
pub fn rms_norm_add(x: Tensor<2>, a: Tensor<2>, w: &Tensor<1>, eps: f32, kernels: Kernels) -> Result<Tensor<2>, GpuError> {
    if kernels.is_gpu() {
        return Ok(norm_rows(x, Some(a), w, eps, NormMode::AddAfter, kernels.subgroups)?.0);
    }
    if a.dims() != x.dims() {
        return Err(GpuError::Shape(format!("x {:?} + {:?}", x.dims(), a.dims())));
    }
    Ok(rms_norm(x, w, eps, kernels)? + a)
}

fn check_norm(rows: usize, n: usize, a: Option<[usize; 2]>, w: &Tensor<1>) -> Result<(), GpuError> {
    if w.dims() != [n] || rows == 0 || !rms_norm_supports(n) || a.is_some_and(|a| a != [rows, n]) {
        return Err(GpuError::Shape(format!("x [{rows}, {n}] + {a:?} with weight {:?}", w.dims())));
    }
    Ok(())
}

/// `shaders/rms_norm_rows.wgsl`: the output, and the sum in mode 1.
fn norm_rows(
    x: Tensor<2>,
    a: Option<Tensor<2>>,
    w: &Tensor<1>,
    eps: f32,
    mode: NormMode,
    subgroups: bool,
) -> Result<(Tensor<2>, Option<Tensor<2>>), GpuError> {
    let [rows, n] = x.dims();
    check_norm(rows, n, a.as_ref().map(Tensor::dims), w)?;
    let x = primitive(x, "x")?;
    let a = a.map(|a| primitive(a, "the residual")).transpose()?;
    let w = primitive(w.clone(), "the weight")?;
    let client = &x.client;
    let y = client.empty(rows * n * 4);
    let s = (mode == NormMode::AddFirst).then(|| client.empty(rows * n * 4));
    let lanes = if n > NORM_LONG_ROW { GPU_WORKGROUP_SIZE } else { SMALL_WORKGROUP };
    let count = fold_groups(rows);
    let mut buffers = vec![&x.handle, &w.handle, &y];
    buffers.extend(a.as_ref().map(|a| &a.handle));
    buffers.extend(s.as_ref());
    let op = Op::NormRows { mode, lanes, subgroups };
    dispatch_sized(client, op, lanes, count, &buffers, &[rows as u32, n as u32, eps.to_bits(), count[0] as u32])?;
    let sum = s.map(|s| f32_tensor(client, &x.device, s, [rows, n]));
    Ok((f32_tensor(client, &x.device, y, [rows, n]), sum))
}

/// Which dimensions RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopePairs {
    /// `(2i, 2i + 1)` (Llama's "norm" style).
    Adjacent,
    /// `(i, i + n_rot / 2)` (the "neox" style of Qwen, Phi-3, Gemma).
    Halves,
}

/// Which row of the RoPE table each token of a step reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeRows {
    /// Its cache slot minus this shift: the table holds every position, and the token's rotary
    /// position trails its slot by the shift (0 but after an image in an M-RoPE model).
    Shifted(usize),
    /// Row t for the step's token t: a table of the step's own (M-RoPE image rows, each with
    /// positions of its own per section).
    PerToken,
}

/// What [`rope_kv`] needs besides the tensors and the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeParams {
    /// Rotated dimensions at the start of each head (the rest pass through).
    pub n_rot: usize,
    pub pairs: RopePairs,
    pub rows: RopeRows,
}

/// RoPE on one step's queries `q: [T, heads · head_dim]` and keys `k: [T, kv_heads · head_dim]` at
/// the cache slots of `step`, with `rope: [rows, n_rot / 2, 2]` holding (cos, sin) per row and
/// pair, read at the rows `p.rows` says; the rotated keys and the values `v` (shaped like `k`)
/// are written into `cache` in place.
/// With `qk_norm` (a `[2, head_dim]` weight: the query norm's then the key norm's, and epsilon),
/// each query and key head is RMS-normalized first. q, k and v may be columns of one fused
/// projection's output; in the GPU family they must be (`shaders/rope_heads.wgsl`: a workgroup
/// per head, the cache f16), in the CPU-adapter family (`shaders/rope_kv.wgsl`: a lane per pair,
/// the cache f32) there is no `qk_norm`. Returns the rotated queries `[T, heads, head_dim]`. The
/// cache is written in place: the caller must own it alone (a session does).
///
/// # Errors
///
/// [`GpuError::Shape`] for inconsistent shapes, positions past the cache or the table, or a
/// cache of the other family.
#[allow(clippy::too_many_arguments)]
pub fn rope_kv(
    q: &Columns,
    k: &Columns,
    v: &Columns,
    cache: &KvCache,
    rope: &Tensor<3>,
    step: &StepTokens,
    p: &RopeParams,
    qk_norm: Option<(&Tensor<1>, f32)>,
    kernels: Kernels,
) -> Result<Tensor<3>, GpuError> {
    let start = step.start();
    let [tokens, q_len] = q.dims();
    let [kv_heads, n_ctx, hd] = cache.dims();
    let [rope_ctx, half, two] = rope.dims();
    let heads = if hd == 0 { 0 } else { q_len / hd };
    let fused = Columns::one_source(&[q, k, v]);
    let gpu = kernels.is_gpu();
    let (shift, per_token) = match p.rows {
        RopeRows::Shifted(shift) => (shift, false),
        RopeRows::PerToken => (0, true),
    };
    let rows_fit = if per_token { rope_ctx == tokens } else { shift <= start && start - shift + tokens <= rope_ctx };
    let fits = hd > 0
        && heads * hd == q_len
        && k.dims() == [tokens, kv_heads * hd]
        && v.dims() == k.dims()
        && hd % 2 == 0
        && p.n_rot % 2 == 0
        && p.n_rot <= hd
        && half == p.n_rot / 2
        && two == 2
        && tokens == step.len()
        && start + tokens <= n_ctx
        && rows_fit
        && cache.is_f16() == gpu
        && (fused || !gpu)
        && (qk_norm.is_none() || gpu)
        && qk_norm.is_none_or(|(w, _)| w.dims() == [2 * hd]);
    if !fits {
        return Err(GpuError::Shape(format!(
            "q {:?}, k {:?}, v {:?} at {} ({:?}) with a {} cache {:?}, table {:?}, n_rot {}, {} family",
            q.dims(),
            k.dims(),
            v.dims(),
            start,
            p.rows,
            if cache.is_f16() { "f16" } else { "f32" },
            cache.dims(),
            rope.dims(),
            p.n_rot,
            kernels.name()
        )));
    }
    let (q_start, q_width) = q.layout();
    let (k_start, k_width) = k.layout();
    let (v_start, v_width) = v.layout();
    let qb = q.bind("q")?;
    let rope = primitive(rope.clone(), "the RoPE table")?;
    let client = &qb.client;
    let q_out = client.empty(tokens * heads * hd * 4);
    let neox = u32::from(p.pairs == RopePairs::Halves);
    let shape = [heads, kv_heads, hd, p.n_rot, n_ctx].map(|v| v as u32);
    let mut buffers = vec![&rope.handle, &cache.k, &cache.v, &q_out, &step.handle, &qb.handle];
    if gpu {
        let norms = qk_norm.map(|(w, _)| primitive(w.clone(), "the Q/K norms")).transpose()?;
        buffers.extend(norms.as_ref().map(|n| &n.handle));
        let eps = qk_norm.map_or(0.0, |(_, eps)| eps);
        let params = [&shape[..], &[neox, q_start, k_start, v_start, q_width, eps.to_bits(), shift as u32, u32::from(per_token)]].concat();
        let op = Op::RopeHeads { qk_norm: qk_norm.is_some(), subgroups: kernels.subgroups };
        dispatch_sized(client, op, SMALL_WORKGROUP, [heads + 2 * kv_heads, tokens], &buffers, &params)?;
    } else {
        let (k, v) = if fused { (qb.clone(), qb.clone()) } else { (k.bind("k")?, v.bind("v")?) };
        if !fused {
            buffers.extend([&k.handle, &v.handle]);
        }
        let params = [&shape[..], &[neox, q_start, q_width, k_start, k_width, v_start, v_width, shift as u32, u32::from(per_token)]].concat();
        let groups = [((heads + kv_heads) * hd / 2).div_ceil(WORKGROUP_SIZE), tokens];
        dispatch(client, Op::RopeKv(fused), groups, &buffers, &params)?;
    }
    Ok(f32_tensor(client, &qb.device, q_out, [tokens, heads, hd]))
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
/// `shaders/argmax.wgsl`, or in the GPU family `argmax_rows.wgsl`) or, with a temperature, a draw filtered by top-k, top-p and min-p with
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
pub fn choose(logits: Tensor<1>, step: &StepTokens, choice: &Choice, kernels: Kernels) -> Result<Tensor<1, Int>, GpuError> {
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
    let part = client.empty(SAMPLE_PART_WORDS * 4);
    let out = client.empty(4);
    let argmax_buffers = [&logits.handle, &step.handle, &part, &out];
    let params = [n as u32, step.draw_word() as u32 + 1, choice.penalty.to_bits()];
    if penalize {
        let groups = step.penalized_count().div_ceil(WORKGROUP_SIZE);
        dispatch(client, Op::Argmax(0), [groups, 1], &argmax_buffers, &params)?;
    }
    if kernels.is_gpu() {
        let buffers = [&logits.handle, &part, &out];
        dispatch_sized(client, Op::ArgmaxRows(1), GPU_WORKGROUP_SIZE, [ARGMAX_ROWS_PARTIALS, 1], &buffers, &params[..1])?;
        dispatch_sized(client, Op::ArgmaxRows(2), GPU_WORKGROUP_SIZE, [1, 1], &buffers, &params[..1])?;
    } else {
        dispatch(client, Op::Argmax(1), [ARGMAX_PARTIALS / WORKGROUP_SIZE, 1], &argmax_buffers, &params)?;
        dispatch(client, Op::Argmax(2), [1, 1], &argmax_buffers, &params)?;
    }
    if choice.temperature > 0.0 {
        let wide = kernels.is_gpu();
        let sample = |phase| Op::Sample { phase, wide };
        // The GPU family keeps the state in two slots.
        let st = client.empty(2 * SAMPLE_STATE_WORDS * 4);
        let buffers = [&logits.handle, &step.handle, &part, &st, &out];
        let top_k = if choice.top_k >= n { 0 } else { choice.top_k };
        // [.., step code, .., the slot the previous pass wrote, a second step code] (the last two
        // for the GPU family's form).
        let params = |code: u32, prev: u32, code2: u32| {
            [
                n as u32,
                top_k as u32,
                choice.top_p.to_bits(),
                choice.min_p.to_bits(),
                step.draw_word() as u32,
                code,
                choice.temperature.to_bits(),
                prev,
                code2,
            ]
        };
        // The step code after each evaluation pass, in order: a search takes 4 bits of the key per
        // pass from the top, then 4 bits of the id; the top-k search, then (with top-p or min-p)
        // the Z pass and the final search.
        let search = |which: u32| {
            let key_shifts = (0..32).step_by(4).rev().map(|s| s as u32);
            let id_shifts = (0..SAMPLE_ID_BITS).step_by(4).rev().map(|s| 64 | s as u32);
            key_shifts.chain(id_shifts).map(move |code| which << 8 | code)
        };
        let mut passes: Vec<u32> = Vec::new();
        if top_k != 0 {
            passes.extend(search(1));
        }
        // Only top-k, or no filter: the top-k cutoff is the final threshold, without the Z pass
        // and the final search (temperature alone on lavapipe, for SmolLM2's 49152 logits: 1.7
        // ms instead of 32).
        let cutoff = if choice.top_p < 1.0 || choice.min_p > 0.0 {
            passes.push(3 << 8);
            passes.extend(search(2));
            0
        } else {
            SAMPLE_SEARCH_CUTOFF << 8
        };
        dispatch(client, sample(0), [1, 1], &buffers, &params(0, 0, 0))?;
        if wide {
            // Each dispatch applies the step the previous one left (shaders/sample/wide.wgsl).
            let (mut pending, mut prev) = (0, 0);
            for code in passes {
                dispatch(client, sample(1), [SAMPLE_EVAL_GROUPS, 1], &buffers, &params(pending, prev, 0))?;
                (pending, prev) = (code, 1 - prev);
            }
            let chunks = [ARGMAX_PARTIALS / WORKGROUP_SIZE, 1];
            dispatch(client, sample(3), chunks, &buffers, &params(pending, prev, cutoff))?;
            dispatch(client, sample(4), [1, 1], &buffers, &params(0, 1 - prev, 0))?;
        } else {
            let partials = [ARGMAX_PARTIALS / WORKGROUP_SIZE, 1];
            for code in passes {
                dispatch(client, sample(1), partials, &buffers, &params(0, 0, 0))?;
                dispatch(client, sample(2), [1, 1], &buffers, &params(code, 0, 0))?;
            }
            if cutoff != 0 {
                dispatch(client, sample(2), [1, 1], &buffers, &params(cutoff, 0, 0))?;
            }
            dispatch(client, sample(3), partials, &buffers, &params(0, 0, 0))?;
            dispatch(client, sample(4), [1, 1], &buffers, &params(0, 0, 0))?;
        }
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

/// Causal attention of `q: [T, heads, head_dim]` (at the positions of `step`) over `cache`, which
/// must already hold positions up to `start + T - 1`. Returns `[T, heads, head_dim]`. One row
/// (decode) is split over the positions: in the GPU family by `shaders/attention_split.wgsl`
/// (a workgroup per KV group and chunk, over the f16 cache), in the CPU-adapter family by
/// `attention_decode.wgsl`. Several rows: in the GPU family K and V tiles in workgroup memory
/// shared by a workgroup's query rows (`attention_tiles.wgsl`), in the CPU-adapter family one
/// invocation per row and head (`attention.wgsl`).
///
/// # Errors
///
/// [`GpuError::Shape`] for inconsistent shapes (heads not a multiple of kv_heads, head_dim above
/// [`MAX_HEAD_DIM`] or not a multiple of 4 (the kernels read vec4s), positions past the cache);
/// the errors of the tensors' placement.
pub fn attention(q: Tensor<3>, cache: &KvCache, step: &StepTokens, p: &AttentionParams, kernels: Kernels) -> Result<Tensor<3>, GpuError> {
    let launch = prepare_attention(q, cache, step, p)?;
    let [tokens, heads, hd] = launch.shape;
    let q = &launch.q;
    let client = &q.client;
    let out = client.empty(tokens * heads * hd * 4);
    let params = launch.params;
    let (k, v) = (&cache.k, &cache.v);
    if tokens == 1 && kernels.is_gpu() {
        split_attention(&launch, &out, None)?;
    } else if kernels.is_gpu() && cache.is_f16() {
        let group = heads / launch.kv_heads;
        let count = [(tokens * group).div_ceil(SMALL_WORKGROUP), launch.kv_heads];
        let op = Op::AttentionTiles { head_dim: hd, tile: attention_tile(hd) };
        dispatch_sized(client, op, SMALL_WORKGROUP, count, &[&q.handle, k, v, &out, &step.handle], &params)?;
    } else if tokens == 1 {
        // One query row: split over the positions (heads alone are too few invocations).
        // Per chunk: (m, l, 0, 0) and acc, as vec4s.
        let part = client.empty(heads * ATTENTION_CHUNKS * (4 + hd) * 4);
        let buffers = [&q.handle, k, v, &out, &step.handle, &part];
        let groups = (heads * ATTENTION_CHUNKS).div_ceil(WORKGROUP_SIZE);
        dispatch(client, Op::AttentionDecode(0, hd), [groups, 1], &buffers, &params)?;
        dispatch(client, Op::AttentionDecode(1, hd), [(heads * hd / 4).div_ceil(WORKGROUP_SIZE), 1], &buffers, &params)?;
    } else {
        let groups = [(tokens * heads).div_ceil(WORKGROUP_SIZE), 1];
        let op = Op::Attention { head_dim: hd, f16: cache.is_f16() };
        dispatch(client, op, groups, &[&q.handle, k, v, &out, &step.handle], &params)?;
    }
    Ok(f32_tensor(client, &q.device, out, [tokens, heads, hd]))
}

/// An attention call, checked.
struct AttentionLaunch<'a> {
    q: CubeTensor,
    shape: [usize; 3],
    kv_heads: usize,
    cache: &'a KvCache,
    step: &'a StepTokens,
    params: [u32; 8],
}

fn prepare_attention<'a>(q: Tensor<3>, cache: &'a KvCache, step: &'a StepTokens, p: &AttentionParams) -> Result<AttentionLaunch<'a>, GpuError> {
    let start = step.start();
    let [tokens, heads, hd] = q.dims();
    let [kv_heads, n_ctx, khd] = cache.dims();
    let fits = khd == hd
        && attention_supports(hd)
        && kv_heads > 0
        && heads % kv_heads == 0
        && tokens == step.len()
        && start + tokens <= n_ctx;
    if !fits {
        return Err(GpuError::Shape(format!("q [{tokens}, {heads}, {hd}] at {start} with a cache {:?}", cache.dims())));
    }
    if cache.device != step.device {
        return Err(GpuError::DeviceMismatch);
    }
    if n_ctx * hd * kv_heads > u32::MAX as usize {
        return Err(GpuError::TooLarge(format!("attention of {tokens} rows over {n_ctx} positions")));
    }
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
    Ok(AttentionLaunch { q: primitive(q, "q")?, shape: [tokens, heads, hd], kv_heads, cache, step, params })
}

/// The two dispatches of `shaders/attention_split.wgsl` into `out`; with `trace`, the build that
/// records its cache loads into it.
fn split_attention(launch: &AttentionLaunch, out: &Handle, trace: Option<&Handle>) -> Result<(), GpuError> {
    let [_, heads, hd] = launch.shape;
    let (q, cache) = (&launch.q, launch.cache);
    if !cache.is_f16() {
        return Err(GpuError::Shape("the split attention reads an f16 cache".into()));
    }
    let group = heads / launch.kv_heads;
    let tile = split_tile(hd, group)?;
    let client = &q.client;
    let part = client.empty(heads * SPLIT_CHUNKS * (2 + hd) * 4);
    let mut buffers = vec![&q.handle, &cache.k, &cache.v, out, &launch.step.handle, &part];
    buffers.extend(trace);
    let op = |phase| Op::AttentionSplit { phase, head_dim: hd, group, tile, trace: trace.is_some() };
    dispatch_sized(client, op(0), SMALL_WORKGROUP, [SPLIT_CHUNKS, launch.kv_heads], &buffers, &launch.params)?;
    dispatch_sized(client, op(1), SMALL_WORKGROUP, [heads, 1], &buffers, &launch.params)?;
    Ok(())
}

/// Positions per K and V tile of the GPU family's prefill attention for heads of `hd` values: as
/// many as fit the workgroup memory every adapter gives beside its start word (f16: 4 bytes a
/// position and value for the two), at most [`ATTENTION_TILE_MAX`].
fn attention_tile(hd: usize) -> usize {
    ((WORKGROUP_MEMORY - ATTENTION_TILES_WORD) / (4 * hd)).clamp(1, ATTENTION_TILE_MAX)
}

/// Positions per tile of the split attention for heads of `hd` values in groups of `group`: as
/// many as [`SPLIT_TILE_WORDS`] of K hold, within the workgroup memory every adapter gives.
fn split_tile(hd: usize, group: usize) -> Result<usize, GpuError> {
    let words = hd / 2;
    let mut tile = (SPLIT_TILE_WORDS / words).max(1);
    // K rows padded by a word, two scores per (head, position), two maxima per head, the position.
    let bytes = |tile: usize| 4 * (tile * (words + 1) + 2 * group * tile + 2 * group + 1);
    while bytes(tile) > WORKGROUP_MEMORY && tile > 1 {
        tile /= 2;
    }
    if bytes(tile) > WORKGROUP_MEMORY {
        return Err(GpuError::TooLarge(format!("attention groups of {group} heads of {hd} values")));
    }
    Ok(tile)
}

/// [`attention`] of one query row in the GPU family, built to record its K and V loads: per lane
/// (workgroup-major), the word indices it loaded in order, the top bit set for V. For the
/// coalescing test.
///
/// # Errors
///
/// As [`attention`].
#[doc(hidden)]
#[cfg(not(target_family = "wasm"))]
pub fn trace_attention_loads(q: Tensor<3>, cache: &KvCache, step: &StepTokens, p: &AttentionParams) -> Result<Vec<Vec<u32>>, GpuError> {
    let launch = prepare_attention(q, cache, step, p)?;
    let [tokens, heads, hd] = launch.shape;
    if tokens != 1 {
        return Err(GpuError::Shape("the split attention takes one query row".into()));
    }
    let client = &launch.q.client;
    let out = client.empty(heads * hd * 4);
    let lanes = SPLIT_CHUNKS * launch.kv_heads * SMALL_WORKGROUP;
    let trace = client.create_from_slice(&vec![0u8; lanes * TRACE_LOADS * 4]);
    split_attention(&launch, &out, Some(&trace))?;
    let words = read_u32(client, trace)?;
    Ok(words
        .chunks(TRACE_LOADS)
        .map(|lane| lane.iter().take_while(|&&v| v != 0).map(|&v| (v & 0x8000_0000) | ((v & 0x7fff_ffff) - 1)).collect())
        .collect())
}

/// A buffer's u32 words, read back (natively: it waits for the device).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn read_u32(client: &burn::cubecl::client::Client, handle: Handle) -> Result<Vec<u32>, GpuError> {
    let bytes = client.read_one(handle).map_err(|e| GpuError::Device(format!("{e:?}")))?;
    Ok(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}
