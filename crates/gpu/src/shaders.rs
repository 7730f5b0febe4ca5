//! Every WGSL source Burrow's kernels are built from (`shaders/`), in one table, and the constants
//! the shaders and this crate share: each is defined here once and injected into the templates
//! ([`SourceTemplate::register`]), never written in WGSL again.

use burn::backend::wgpu::SourceTemplate;
use burrow_gguf::GgmlType;

macro_rules! shader {
    ($path:literal) => {
        include_str!(concat!("../../../shaders/", $path))
    };
}

// Shared by every kernel.
/// `p(i)`, the parameter reader every kernel uses.
pub(crate) const PARAMS: &str = shader!("params.wgsl");
pub(crate) const QCOMMON: &str = shader!("qcommon.wgsl");
pub(crate) const BITS: &str = shader!("bits.wgsl");
/// Workgroup sums (GPU family): the tree, and the subgroup form around it.
pub(crate) const REDUCE_SHARED: &str = shader!("reduce/shared.wgsl");
pub(crate) const REDUCE_SUBGROUP: &str = shader!("reduce/subgroup.wgsl");

// Matrix kernels, CPU-adapter family.
pub(crate) const QMATVEC: &str = shader!("qmatvec.wgsl");
pub(crate) const QMATVEC_UNROLLED: &str = shader!("qmatvec_unrolled.wgsl");
pub(crate) const QMATMUL: &str = shader!("qmatmul.wgsl");
pub(crate) const QEMBED: &str = shader!("qembed.wgsl");
const Q4_WORDS: &str = shader!("dot_words/q4_words.wgsl");
const Q4_CODES: &str = shader!("dot4/q4_codes.wgsl");
/// The IQ4_NL / IQ4_XS levels, and the Q5_0 / Q5_1 5th bits, for both families.
const IQ4: &str = shader!("iq4.wgsl");
const Q5_BITS: &str = shader!("q5_bits.wgsl");

// Matrix kernels, GPU family.
pub(crate) const MATVEC: &str = shader!("matvec.wgsl");
pub(crate) const MATMUL_TILES: &str = shader!("matmul_tiles.wgsl");
pub(crate) const MATMUL_TILES_DP4A: &str = shader!("matmul_tiles_dp4a.wgsl");
/// The prefill tiles' output store, for both.
pub(crate) const TILES_STORE: &str = shader!("tiles_store.wgsl");
const KQUANT: &str = shader!("slices/kquant.wgsl");

// The other ops.
pub(crate) const RMS_NORM: &str = shader!("rms_norm.wgsl");
pub(crate) const ADD_RMS_NORM: &str = shader!("add_rms_norm.wgsl");
pub(crate) const RMS_NORM_ROWS: &str = shader!("rms_norm_rows.wgsl");
pub(crate) const ROPE_KV: &str = shader!("rope_kv.wgsl");
pub(crate) const ROPE_HEADS: &str = shader!("rope_heads.wgsl");
pub(crate) const GATED: &str = shader!("gated.wgsl");
pub(crate) const ATTENTION: &str = shader!("attention.wgsl");
pub(crate) const ATTENTION_DECODE: &str = shader!("attention_decode.wgsl");
pub(crate) const ATTENTION_SPLIT: &str = shader!("attention_split.wgsl");
pub(crate) const ATTENTION_TILES: &str = shader!("attention_tiles.wgsl");
pub(crate) const ONLINE_SOFTMAX: &str = shader!("online_softmax.wgsl");
pub(crate) const ARGMAX: &str = shader!("argmax.wgsl");
pub(crate) const ARGMAX_ROWS: &str = shader!("argmax_rows.wgsl");
pub(crate) const SAMPLE: &str = shader!("sample.wgsl");
/// sample.wgsl's phases: the CPU-adapter family's (no barriers) and the GPU family's.
pub(crate) const SAMPLE_SERIAL: &str = shader!("sample/serial.wgsl");
pub(crate) const SAMPLE_WIDE: &str = shader!("sample/wide.wgsl");
/// A buffer copy, for bandwidth benchmarks.
pub(crate) const COPY: &str = shader!("copy.wgsl");
/// The KV cache's element readers: f32, or f16 pairs packed in u32 words.
pub(crate) const KV_F32: &str = shader!("kv/f32.wgsl");
pub(crate) const KV_F16: &str = shader!("kv/f16.wgsl");

/// The `dequant32` sources for `ty`, or `None` if no kernel reads it.
pub(crate) fn dequant(ty: GgmlType) -> Option<&'static [&'static str]> {
    Some(match ty {
        GgmlType::F32 => &[shader!("dequant/f32.wgsl")],
        GgmlType::F16 => &[shader!("dequant/f16.wgsl")],
        GgmlType::BF16 => &[shader!("dequant/bf16.wgsl")],
        GgmlType::Q8_0 => &[shader!("dequant/q8_0.wgsl")],
        GgmlType::Q4_0 => &[shader!("dequant/q4_0.wgsl")],
        GgmlType::Q4_1 => &[shader!("dequant/q4_1.wgsl")],
        GgmlType::Q5_0 => &[shader!("dequant/q5_0.wgsl"), Q5_BITS],
        GgmlType::Q5_1 => &[shader!("dequant/q5_1.wgsl"), Q5_BITS],
        GgmlType::Q2_K => &[shader!("dequant/q2_k.wgsl")],
        GgmlType::Q3_K => &[shader!("dequant/q3_k.wgsl")],
        GgmlType::Q4_K => &[shader!("dequant/q4_k.wgsl")],
        GgmlType::Q5_K => &[shader!("dequant/q5_k.wgsl")],
        GgmlType::Q6_K => &[shader!("dequant/q6_k.wgsl")],
        GgmlType::IQ4_NL => &[shader!("dequant/iq4_nl.wgsl"), IQ4],
        GgmlType::IQ4_XS => &[shader!("dequant/iq4_xs.wgsl"), IQ4],
        _ => return None,
    })
}

/// The `codes32` sources for `ty` (`matmul_tiles_dp4a.wgsl`): the types whose 32-weight chunks
/// are exactly 8-bit codes times a scale plus an offset; `None` for the others.
pub(crate) fn codes(ty: GgmlType) -> Option<&'static [&'static str]> {
    Some(match ty {
        GgmlType::Q8_0 => &[shader!("codes/q8_0.wgsl")],
        GgmlType::Q4_0 => &[shader!("codes/q4_0.wgsl")],
        GgmlType::Q4_1 => &[shader!("codes/q4_1.wgsl")],
        GgmlType::Q4_K => &[shader!("codes/q4_k.wgsl")],
        _ => return None,
    })
}

/// The `dot_unit` sources for `ty` (`qmatvec.wgsl`): its own dot form, or the generic one over
/// `dequant32`.
pub(crate) fn dot4(ty: GgmlType) -> &'static [&'static str] {
    match ty {
        GgmlType::Q8_0 => &[shader!("dot4/q8_0.wgsl")],
        GgmlType::Q4_0 => &[shader!("dot4/q4_0.wgsl"), Q4_CODES],
        GgmlType::Q4_1 => &[shader!("dot4/q4_1.wgsl"), Q4_CODES],
        GgmlType::Q4_K => &[shader!("dot4/q4_k.wgsl")],
        _ => &[shader!("dot4/generic.wgsl")],
    }
}

/// The `dotw` sources for `ty` (`qmatvec_unrolled.wgsl`), or `None` if that kernel does not read it.
pub(crate) fn dot_words(ty: GgmlType) -> Option<&'static [&'static str]> {
    Some(match ty {
        GgmlType::F32 => &[shader!("dot_words/f32.wgsl")],
        GgmlType::F16 => &[shader!("dot_words/f16.wgsl")],
        GgmlType::Q8_0 => &[shader!("dot_words/q8_0.wgsl")],
        GgmlType::Q4_0 => &[shader!("dot_words/q4_0.wgsl"), Q4_WORDS],
        GgmlType::Q4_1 => &[shader!("dot_words/q4_1.wgsl"), Q4_WORDS],
        _ => return None,
    })
}

/// The slice sources for `ty` (`matvec.wgsl`), or `None` if that kernel does not read it.
pub(crate) fn slices(ty: GgmlType) -> Option<&'static [&'static str]> {
    Some(match ty {
        GgmlType::F32 => &[shader!("slices/f32.wgsl")],
        GgmlType::F16 => &[shader!("slices/f16.wgsl")],
        GgmlType::BF16 => &[shader!("slices/bf16.wgsl")],
        GgmlType::Q8_0 => &[shader!("slices/q8_0.wgsl")],
        GgmlType::Q4_0 => &[shader!("slices/q4_0.wgsl")],
        GgmlType::Q4_1 => &[shader!("slices/q4_1.wgsl")],
        GgmlType::Q5_0 => &[shader!("slices/q5_0.wgsl"), Q5_BITS],
        GgmlType::Q5_1 => &[shader!("slices/q5_1.wgsl"), Q5_BITS],
        GgmlType::Q2_K => &[shader!("slices/q2_k.wgsl")],
        GgmlType::Q3_K => &[shader!("slices/q3_k.wgsl")],
        GgmlType::IQ4_NL => &[shader!("slices/iq4_nl.wgsl"), IQ4],
        GgmlType::IQ4_XS => &[shader!("slices/iq4_xs.wgsl"), IQ4],
        GgmlType::Q4_K => &[shader!("slices/q4_k.wgsl"), KQUANT],
        GgmlType::Q5_K => &[shader!("slices/q5_k.wgsl"), KQUANT],
        GgmlType::Q6_K => &[shader!("slices/q6_k.wgsl")],
        _ => return None,
    })
}

/// Invocations per workgroup of the CPU-adapter family's kernels but `qmatvec.wgsl` (WebGPU
/// guarantees 256).
pub(crate) const WORKGROUP_SIZE: usize = 64;
/// Invocations per workgroup of the GPU family's kernels: WebGPU's default maximum.
pub(crate) const GPU_WORKGROUP_SIZE: usize = 256;
/// Size of every kernel's parameter uniform in vec4<u32>s (up to 16 parameters).
pub(crate) const PARAM_VEC4S: usize = 4;

/// A kernel source with what every kernel is given: the parameter reader and its size, and the
/// workgroup size.
pub(crate) fn template(main: &str, workgroup_size: usize) -> SourceTemplate {
    SourceTemplate::new(main)
        .add_template(PARAMS)
        .register("param_vec4s", PARAM_VEC4S.to_string())
        .register("workgroup_size", workgroup_size.to_string())
}

/// `reduce/shared.wgsl`, or `reduce/subgroup.wgsl` around it, for a kernel's `reduce` key; with
/// the subgroup builtins that form needs (for a kernel's `subgroup_builtins` key).
pub(crate) fn reduce(subgroups: bool) -> (String, &'static str) {
    if subgroups {
        let builtins = "    @builtin(subgroup_size) sg_size: u32,\n    @builtin(subgroup_invocation_id) sg_lane: u32,";
        (REDUCE_SUBGROUP.replace("{{reduce_shared}}", REDUCE_SHARED), builtins)
    } else {
        (REDUCE_SHARED.to_string(), "")
    }
}
