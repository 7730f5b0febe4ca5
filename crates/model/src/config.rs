//! Hyper-parameters and per-architecture traits of a model, read from GGUF metadata.
//!
//! Every supported family is the same decoder; what differs between them is data here: RoPE
//! pairing, activation, extra norms, soft-caps, sliding windows, embedding scaling, and which
//! tensors are fused or present (detected from the file).

use burrow_gguf::Gguf;

use crate::ModelError;

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate adjacent pairs (2i, 2i+1): llama.cpp's `LLAMA_ROPE_TYPE_NORM` (Llama GGUFs have
    /// their Q/K rows permuted at conversion so this matches Hugging Face's rotate_half).
    Norm,
    /// Rotate (i, i + n_rot/2): GPT-NeoX style.
    Neox,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: `silu(gate) * up`.
    Silu,
    /// GeGLU with the tanh approximation of GELU (Gemma).
    GeluTanh,
}

/// What distinguishes one architecture's decoder from another's, beyond its tensors.
#[derive(Clone, Copy, Debug)]
struct ArchTraits {
    name: &'static str,
    rope: RopeStyle,
    activation: Activation,
    /// Embeddings are multiplied by sqrt(n_embd) (Gemma).
    scale_embeddings: bool,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3, Gemma 3).
    qk_norm: bool,
    /// RMSNorm of each sublayer's output before the residual add (Gemma 2/3, GLM-4).
    post_norms: bool,
    /// Layer i uses the sliding window iff `i % pattern < pattern - 1` (llama.cpp's rule); 0: none.
    swa_pattern: usize,
    /// RoPE (base, linear scale) of sliding-window layers when they differ from the global ones
    /// (Gemma 3: base 10 000, unscaled; `rope.freq_base_swa` overrides the base).
    swa_rope: Option<(f32, f32)>,
    /// M-RoPE (Qwen2-VL): the rotated pairs are split into sections, each turned by one of a
    /// token's positions (time, row, column), as `rope.dimension_sections` says.
    mrope: bool,
}

const fn arch(name: &'static str, rope: RopeStyle) -> ArchTraits {
    ArchTraits {
        name,
        rope,
        activation: Activation::Silu,
        scale_embeddings: false,
        qk_norm: false,
        post_norms: false,
        swa_pattern: 0,
        swa_rope: None,
        mrope: false,
    }
}

const ARCHITECTURES: &[ArchTraits] = &[
    arch("llama", RopeStyle::Norm),
    arch("qwen2", RopeStyle::Neox),
    ArchTraits { mrope: true, ..arch("qwen2vl", RopeStyle::Neox) },
    ArchTraits { qk_norm: true, ..arch("qwen3", RopeStyle::Neox) },
    arch("phi3", RopeStyle::Neox),
    ArchTraits {
        activation: Activation::GeluTanh,
        scale_embeddings: true,
        post_norms: true,
        swa_pattern: 2,
        ..arch("gemma2", RopeStyle::Neox)
    },
    ArchTraits {
        activation: Activation::GeluTanh,
        scale_embeddings: true,
        qk_norm: true,
        post_norms: true,
        swa_pattern: 6,
        swa_rope: Some((10_000.0, 1.0)),
        ..arch("gemma3", RopeStyle::Neox)
    },
    ArchTraits { post_norms: true, ..arch("glm4", RopeStyle::Norm) },
];

/// Names of the architectures Burrow runs.
pub fn supported_architectures() -> Vec<&'static str> {
    ARCHITECTURES.iter().map(|a| a.name).collect()
}

/// Context length used when the file does not state one.
const DEFAULT_CONTEXT_LENGTH: usize = 2048;
/// llama.cpp's default RoPE base when `rope.freq_base` is absent.
const DEFAULT_ROPE_BASE: f32 = 10_000.0;
/// llama.cpp's default RMSNorm epsilon when the key is absent.
const DEFAULT_RMS_EPS: f32 = 1e-5;
/// Largest single hyper-parameter accepted; keeps products of dimensions far from overflow.
const MAX_DIMENSION: usize = 1 << 24;

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// Linear RoPE scaling: positions are multiplied by this (1 / `rope.scaling.factor`).
    pub rope_freq_scale: f32,
    /// The context the model was pretrained with (`rope.scaling.original_context_length`): Phi-3's
    /// "longrope" files use their short RoPE factors up to it and the long ones past it.
    pub n_ctx_orig: usize,
    /// Multiplies RoPE's cos and sin (`rope.scaling.attn_factor`, Phi-3 longrope; 1 otherwise).
    pub rope_attn_factor: f32,
    /// RoPE base and scale of sliding-window layers; equal to the global ones except in Gemma 3.
    pub rope_base_swa: f32,
    pub rope_freq_scale_swa: f32,
    /// Number of leading dimensions of each head that are rotated.
    pub n_rot: usize,
    pub rope_style: RopeStyle,
    /// M-RoPE (Qwen2-VL): rotated pairs `0..s[0]` turn by a token's time position, the next
    /// `s[1]` by its row, the last `s[2]` by its column (they add up to `n_rot / 2`, NeoX pairs).
    /// A text token's three positions are equal, so text alone is plain RoPE; an image's tokens
    /// share a time and spread over rows and columns.
    pub rope_sections: Option<[usize; 3]>,
    pub activation: Activation,
    pub embedding_scale: Option<f32>,
    pub qk_norm: bool,
    pub post_norms: bool,
    /// `tanh(s / c) · c` on attention scores (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// `tanh(l / c) · c` on output logits (Gemma 2).
    pub final_softcap: Option<f32>,
    pub sliding_window: Option<usize>,
    /// Per layer: does it attend through the sliding window?
    pub swa_layers: Vec<bool>,
    /// Mixture of experts: experts per layer (0: a dense MLP) and experts used per token.
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// Q, K and V come from one `attn_qkv` tensor (Phi-3).
    pub fused_qkv: bool,
    /// Gate and up projections are one `ffn_up` tensor of 2·n_ff outputs (Phi-3, GLM-4).
    pub fused_gate_up: bool,
    /// True when the file has no `output.weight` and the embedding is the output head too.
    pub tied_output: bool,
}

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig, ModelError> {
        let arch = g
            .architecture()
            .ok_or_else(|| ModelError::MissingKey("general.architecture".into()))?
            .to_string();
        let traits = *ARCHITECTURES
            .iter()
            .find(|a| a.name == arch)
            .ok_or_else(|| ModelError::UnsupportedArchitecture(arch.clone()))?;
        let key = |name: &str| format!("{arch}.{name}");
        let bad = |k: String, value: String| ModelError::BadValue { key: k, value };
        let dim = |name: &str, default: Option<usize>| -> Result<usize, ModelError> {
            let k = key(name);
            match g.get_u64(&k) {
                None => default.ok_or(ModelError::MissingKey(k)),
                Some(v) => usize::try_from(v)
                    .ok()
                    .filter(|&v| v > 0 && v <= MAX_DIMENSION)
                    .ok_or_else(|| bad(k, v.to_string())),
            }
        };
        let n_embd = dim("embedding_length", None)?;
        let n_layer = dim("block_count", None)?;
        let n_head = dim("attention.head_count", None)?;
        let n_head_kv = dim("attention.head_count_kv", Some(n_head))?;
        let n_ff = dim("feed_forward_length", None)?;
        let head_dim = dim("attention.key_length", Some(n_embd / n_head))?;
        let n_rot = dim("rope.dimension_count", Some(head_dim))?;
        let n_ctx_train = dim("context_length", Some(DEFAULT_CONTEXT_LENGTH))?;
        let n_expert = match g.get_u64(&key("expert_count")) {
            Some(_) => dim("expert_count", None)?,
            None => 0,
        };
        let n_expert_used = if n_expert > 0 { dim("expert_used_count", None)? } else { 0 };
        let rms_eps = g.get_f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(DEFAULT_RMS_EPS);
        let rope_base = g.get_f32(&key("rope.freq_base")).unwrap_or(DEFAULT_ROPE_BASE);
        let rope_freq_scale = match g.get_str(&key("rope.scaling.type")) {
            None | Some("none") => 1.0,
            Some("linear") => 1.0 / g.get_f32(&key("rope.scaling.factor")).unwrap_or(1.0),
            Some(other) => return Err(bad(key("rope.scaling.type"), format!("'{other}' is not supported"))),
        };
        let n_ctx_orig = dim("rope.scaling.original_context_length", Some(n_ctx_train))?;
        let rope_attn_factor = g.get_f32(&key("rope.scaling.attn_factor")).unwrap_or(1.0);
        let (swa_base, rope_freq_scale_swa) = traits.swa_rope.unwrap_or((rope_base, rope_freq_scale));
        let rope_base_swa = g.get_f32(&key("rope.freq_base_swa")).unwrap_or(swa_base);
        let softcap = |name: &str| g.get_f32(&key(name)).filter(|&c| c != 0.0);
        let sliding_window = g.get_u64(&key("attention.sliding_window")).filter(|&w| w > 0).map(|w| w as usize);

        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
        let fused_qkv = g.tensor("blk.0.attn_qkv.weight").is_some();
        let fused_gate_up = n_expert == 0 && g.tensor("blk.0.ffn_gate.weight").is_none();

        if n_head % n_head_kv != 0 {
            return Err(bad(key("attention.head_count_kv"), format!("{n_head_kv} does not divide {n_head} heads")));
        }
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(bad(key("rope.dimension_count"), format!("{n_rot} with head size {head_dim}")));
        }
        if n_expert_used > n_expert {
            return Err(bad(key("expert_used_count"), format!("{n_expert_used} of {n_expert} experts")));
        }
        for (name, v) in [
            ("attention.layer_norm_rms_epsilon", rms_eps),
            ("rope.freq_base", rope_base),
            ("rope.freq_base_swa", rope_base_swa),
            ("rope.scaling.attn_factor", rope_attn_factor),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(bad(key(name), v.to_string()));
            }
        }
        if !(rope_freq_scale > 0.0 && rope_freq_scale.is_finite()) {
            return Err(bad(key("rope.scaling.factor"), (1.0 / rope_freq_scale).to_string()));
        }

        let rope_sections = if traits.mrope { Some(mrope_sections(g, &key("rope.dimension_sections"), n_rot, head_dim)?) } else { None };

        let swa_layers = (0..n_layer)
            .map(|i| sliding_window.is_some() && traits.swa_pattern > 0 && i % traits.swa_pattern < traits.swa_pattern - 1)
            .collect();
        Ok(ModelConfig {
            rope_style: traits.rope,
            rope_sections,
            activation: traits.activation,
            embedding_scale: traits.scale_embeddings.then(|| (n_embd as f32).sqrt()),
            qk_norm: traits.qk_norm,
            post_norms: traits.post_norms,
            attn_softcap: softcap("attn_logit_softcapping"),
            final_softcap: softcap("final_logit_softcapping"),
            sliding_window,
            swa_layers,
            tied_output: g.tensor("output.weight").is_none(),
            fused_qkv,
            fused_gate_up,
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_ctx_train,
            rms_eps,
            rope_base,
            rope_base_swa,
            rope_freq_scale,
            rope_freq_scale_swa,
            n_ctx_orig,
            rope_attn_factor,
            n_rot,
            n_expert,
            n_expert_used,
        })
    }

    /// Names, GGUF shapes (ne0 first) and optionality of every tensor the model reads.
    pub fn expected_tensors(&self) -> Vec<ExpectedTensor> {
        let (d, q, kv, ff, v, hd, e) = (
            self.n_embd as u64,
            (self.n_head * self.head_dim) as u64,
            (self.n_head_kv * self.head_dim) as u64,
            self.n_ff as u64,
            self.n_vocab as u64,
            self.head_dim as u64,
            self.n_expert as u64,
        );
        let mut out = vec![
            ExpectedTensor::new("token_embd.weight", vec![d, v]),
            ExpectedTensor::new("output_norm.weight", vec![d]),
            ExpectedTensor::optional("rope_freqs.weight", vec![self.n_rot as u64 / 2]),
            ExpectedTensor::optional("rope_factors_short.weight", vec![self.n_rot as u64 / 2]),
            ExpectedTensor::optional("rope_factors_long.weight", vec![self.n_rot as u64 / 2]),
        ];
        if !self.tied_output {
            out.push(ExpectedTensor::new("output.weight", vec![d, v]));
        }
        for i in 0..self.n_layer {
            let w = |n: &str, dims: Vec<u64>| ExpectedTensor::new(&format!("blk.{i}.{n}.weight"), dims);
            let bias = |n: &str, len: u64| ExpectedTensor::optional(&format!("blk.{i}.{n}.bias"), vec![len]);
            out.push(w("attn_norm", vec![d]));
            if self.fused_qkv {
                out.extend([w("attn_qkv", vec![d, q + 2 * kv]), bias("attn_qkv", q + 2 * kv)]);
            } else {
                out.extend([w("attn_q", vec![d, q]), w("attn_k", vec![d, kv]), w("attn_v", vec![d, kv])]);
                out.extend([bias("attn_q", q), bias("attn_k", kv), bias("attn_v", kv)]);
            }
            out.extend([w("attn_output", vec![q, d]), bias("attn_output", d)]);
            if self.qk_norm {
                out.extend([w("attn_q_norm", vec![hd]), w("attn_k_norm", vec![hd])]);
            }
            if self.post_norms {
                out.extend([w("post_attention_norm", vec![d]), w("post_ffw_norm", vec![d])]);
            }
            out.push(w("ffn_norm", vec![d]));
            if self.n_expert > 0 {
                out.extend([
                    w("ffn_gate_inp", vec![d, e]),
                    w("ffn_gate_exps", vec![d, ff, e]),
                    w("ffn_up_exps", vec![d, ff, e]),
                    w("ffn_down_exps", vec![ff, d, e]),
                ]);
            } else if self.fused_gate_up {
                out.extend([w("ffn_up", vec![d, 2 * ff]), w("ffn_down", vec![ff, d])]);
            } else {
                out.extend([w("ffn_gate", vec![d, ff]), w("ffn_up", vec![d, ff]), w("ffn_down", vec![ff, d])]);
            }
        }
        out
    }
}

/// M-RoPE's sections (rotated pairs per position: time, row, column, and a fourth llama.cpp
/// reserves, which Qwen2-VL leaves empty): they must cover the whole head, as llama.cpp asserts.
fn mrope_sections(g: &Gguf, key: &str, n_rot: usize, head_dim: usize) -> Result<[usize; 3], ModelError> {
    let values = g.get_array(key).ok_or_else(|| ModelError::MissingKey(key.into()))?;
    let bad = |why: String| ModelError::BadValue { key: key.into(), value: why };
    let s: Vec<usize> = values
        .iter()
        .map(|v| v.as_u64().and_then(|v| usize::try_from(v).ok()).filter(|&v| v <= MAX_DIMENSION))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(format!("{values:?}")))?;
    match s.as_slice() {
        [t, h, w, rest @ ..] if rest.iter().all(|&x| x == 0) && n_rot == head_dim && t + h + w == n_rot / 2 => Ok([*t, *h, *w]),
        _ => Err(bad(format!(
            "{s:?} (rotating {n_rot} of {head_dim} dimensions): M-RoPE rotates the whole head, its first three sections adding up to {} pairs, the others empty",
            head_dim / 2
        ))),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub optional: bool,
}

impl ExpectedTensor {
    fn new(name: &str, dims: Vec<u64>) -> Self {
        ExpectedTensor { name: name.to_string(), dims, optional: false }
    }
    fn optional(name: &str, dims: Vec<u64>) -> Self {
        ExpectedTensor { name: name.to_string(), dims, optional: true }
    }
}
