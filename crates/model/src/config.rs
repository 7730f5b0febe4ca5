//! Hyper-parameters of a model, read from GGUF metadata.

use burrow_gguf::Gguf;

use crate::ModelError;

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate adjacent pairs (2i, 2i+1): llama.cpp's `LLAMA_ROPE_TYPE_NORM` (Llama GGUFs have
    /// their Q/K rows permuted at conversion so this matches Hugging Face's rotate_half).
    Norm,
    /// Rotate (i, i + n_rot/2): GPT-NeoX style, used by Qwen, Phi-3, Gemma and others.
    Neox,
}

/// Architectures whose tensors and hyper-parameters Burrow reads.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// Context length used when the file does not state one.
const DEFAULT_CONTEXT_LENGTH: usize = 2048;
/// llama.cpp's default RoPE base when `rope.freq_base` is absent.
const DEFAULT_ROPE_BASE: f32 = 10_000.0;
/// llama.cpp's default RMSNorm epsilon when the key is absent.
const DEFAULT_RMS_EPS: f32 = 1e-5;

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
    /// Number of leading dimensions of each head that are rotated.
    pub n_rot: usize,
    pub rope_style: RopeStyle,
    /// True when the file has no `output.weight` and the embedding doubles as the output head.
    pub tied_output: bool,
}

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig, ModelError> {
        let arch = g
            .architecture()
            .ok_or_else(|| ModelError::MissingKey("general.architecture".into()))?
            .to_string();
        if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(ModelError::UnsupportedArchitecture(arch));
        }
        let key = |name: &str| format!("{arch}.{name}");
        let req = |name: &str| -> Result<usize, ModelError> {
            let k = key(name);
            let v = g.get_u64(&k).ok_or_else(|| ModelError::MissingKey(k.clone()))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0 && v <= MAX_DIMENSION)
                .ok_or(ModelError::BadValue { key: k, value: v.to_string() })
        };
        let n_embd = req("embedding_length")?;
        let n_layer = req("block_count")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = match g.get_u64(&key("attention.head_count_kv")) {
            Some(_) => req("attention.head_count_kv")?,
            None => n_head,
        };
        let n_ff = req("feed_forward_length")?;
        let head_dim = match g.get_u64(&key("attention.key_length")) {
            Some(_) => req("attention.key_length")?,
            None => n_embd / n_head,
        };
        let n_rot = match g.get_u64(&key("rope.dimension_count")) {
            Some(_) => req("rope.dimension_count")?,
            None => head_dim,
        };
        let n_ctx_train = match g.get_u64(&key("context_length")) {
            Some(_) => req("context_length")?,
            None => DEFAULT_CONTEXT_LENGTH,
        };
        let rms_eps = g.get_f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(DEFAULT_RMS_EPS);
        let rope_base = g.get_f32(&key("rope.freq_base")).unwrap_or(DEFAULT_ROPE_BASE);

        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;

        let bad = |what: &str, value: String| ModelError::BadValue { key: what.into(), value };
        if n_head % n_head_kv != 0 {
            return Err(bad(&key("attention.head_count_kv"), format!("{n_head_kv} does not divide {n_head} heads")));
        }
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(bad(&key("rope.dimension_count"), format!("{n_rot} with head size {head_dim}")));
        }
        if !(rms_eps > 0.0 && rms_eps.is_finite()) {
            return Err(bad(&key("attention.layer_norm_rms_epsilon"), rms_eps.to_string()));
        }
        if !(rope_base > 0.0 && rope_base.is_finite()) {
            return Err(bad(&key("rope.freq_base"), rope_base.to_string()));
        }

        Ok(ModelConfig {
            rope_style: RopeStyle::Norm,
            tied_output: g.tensor("output.weight").is_none(),
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
            n_rot,
        })
    }

    /// Names, GGUF shapes (ne0 first) and optionality of every tensor the model reads.
    pub fn expected_tensors(&self) -> Vec<ExpectedTensor> {
        let (d, q, kv, ff, v) = (
            self.n_embd as u64,
            (self.n_head * self.head_dim) as u64,
            (self.n_head_kv * self.head_dim) as u64,
            self.n_ff as u64,
            self.n_vocab as u64,
        );
        let mut out = vec![
            ExpectedTensor::new("token_embd.weight", vec![d, v]),
            ExpectedTensor::new("output_norm.weight", vec![d]),
        ];
        if !self.tied_output {
            out.push(ExpectedTensor::new("output.weight", vec![d, v]));
        }
        out.push(ExpectedTensor::optional("rope_freqs.weight", vec![self.n_rot as u64 / 2]));
        for i in 0..self.n_layer {
            let b = |n: &str| format!("blk.{i}.{n}.weight");
            out.extend([
                ExpectedTensor::new(&b("attn_norm"), vec![d]),
                ExpectedTensor::new(&b("attn_q"), vec![d, q]),
                ExpectedTensor::new(&b("attn_k"), vec![d, kv]),
                ExpectedTensor::new(&b("attn_v"), vec![d, kv]),
                ExpectedTensor::new(&b("attn_output"), vec![q, d]),
                ExpectedTensor::new(&b("ffn_norm"), vec![d]),
                ExpectedTensor::new(&b("ffn_gate"), vec![d, ff]),
                ExpectedTensor::new(&b("ffn_up"), vec![d, ff]),
                ExpectedTensor::new(&b("ffn_down"), vec![ff, d]),
            ]);
        }
        out
    }
}

/// Largest single hyper-parameter accepted; keeps products of dimensions far from overflow.
const MAX_DIMENSION: usize = 1 << 24;

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
