//! GGUF tensors → Burn tensors on a device, found by their GGUF names.

use std::borrow::Cow;

use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{Gguf, TensorInfo};

use crate::config::ModelConfig;
use crate::decoder::{Attention, Block, Decoder, Linear, Mlp, Model, Moe, RmsNorm};
use crate::{check_support, ModelError};

/// Where tensor bytes come from: the whole file in memory natively, chunks from storage in the browser.
pub trait TensorSource {
    fn tensor_bytes(&mut self, gguf: &Gguf, tensor: &TensorInfo) -> Result<Cow<'_, [u8]>, ModelError>;
}

/// A GGUF file held in memory.
pub struct FileBytes<'a>(pub &'a [u8]);

impl TensorSource for FileBytes<'_> {
    fn tensor_bytes(&mut self, gguf: &Gguf, tensor: &TensorInfo) -> Result<Cow<'_, [u8]>, ModelError> {
        Ok(Cow::Borrowed(gguf.tensor_data(self.0, tensor)?))
    }
}

/// Reads every weight the architecture needs, dequantized to f32 (the reference path).
pub fn load_model(gguf: &Gguf, source: &mut dyn TensorSource, device: &Device) -> Result<Model, ModelError> {
    if let Some(first) = check_support(gguf).into_iter().next() {
        return Err(first);
    }
    let config = ModelConfig::from_gguf(gguf)?;
    let mut l = Loader { gguf, source, device, eps: config.rms_eps };

    let mut blocks = Vec::with_capacity(config.n_layer);
    for i in 0..config.n_layer {
        let name = |n: &str| format!("blk.{i}.{n}");
        let (q, kv) = (config.n_head * config.head_dim, config.n_head_kv * config.head_dim);
        let [wq, wk, wv] = if config.fused_qkv {
            l.split_linear(&name("attn_qkv"), &[q, kv, kv])?
                .try_into()
                .map_err(|_| ModelError::MissingTensor(name("attn_qkv.weight")))?
        } else {
            [l.linear(&name("attn_q"))?, l.linear(&name("attn_k"))?, l.linear(&name("attn_v"))?]
        };
        let attn = Attention {
            wq,
            wk,
            wv,
            wo: l.linear(&name("attn_output"))?,
            q_norm: l.optional_norm(&name("attn_q_norm.weight"))?,
            k_norm: l.optional_norm(&name("attn_k_norm.weight"))?,
        };
        let (mlp, moe) = if config.n_expert > 0 {
            let moe = Moe {
                router: l.linear(&name("ffn_gate_inp"))?,
                gate: l.tensor::<3>(&name("ffn_gate_exps.weight"))?,
                up: l.tensor::<3>(&name("ffn_up_exps.weight"))?,
                down: l.tensor::<3>(&name("ffn_down_exps.weight"))?,
            };
            (None, Some(moe))
        } else {
            let (gate, up) = if config.fused_gate_up {
                let mut parts = l.split_linear(&name("ffn_up"), &[config.n_ff, config.n_ff])?;
                let up = parts.pop();
                let gate = parts.pop();
                gate.zip(up).ok_or_else(|| ModelError::MissingTensor(name("ffn_up.weight")))?
            } else {
                (l.linear(&name("ffn_gate"))?, l.linear(&name("ffn_up"))?)
            };
            (Some(Mlp { gate, up, down: l.linear(&name("ffn_down"))? }), None)
        };
        blocks.push(Block {
            attn_norm: l.norm(&name("attn_norm.weight"))?,
            attn,
            post_attn_norm: l.optional_norm(&name("post_attention_norm.weight"))?,
            ffn_norm: l.norm(&name("ffn_norm.weight"))?,
            mlp,
            moe,
            post_ffn_norm: l.optional_norm(&name("post_ffw_norm.weight"))?,
        });
    }
    let net = Decoder {
        tok_embd: l.tensor::<2>("token_embd.weight")?,
        blocks,
        output_norm: l.norm("output_norm.weight")?,
        output: if config.tied_output { None } else { Some(l.tensor::<2>("output.weight")?) },
    };
    let rope_freq_factors = match gguf.tensor("rope_freqs.weight") {
        Some(_) => Some(l.values("rope_freqs.weight")?),
        None => None,
    };
    Ok(Model { config, net, rope_freq_factors, device: device.clone() })
}

struct Loader<'a> {
    gguf: &'a Gguf,
    source: &'a mut dyn TensorSource,
    device: &'a Device,
    eps: f32,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.gguf.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))
    }

    fn values(&mut self, name: &str) -> Result<Vec<f32>, ModelError> {
        let info = self.info(name)?.clone();
        let bytes = self.source.tensor_bytes(self.gguf, &info)?;
        Ok(burrow_gguf::dequantize_to_vec(info.ty, &bytes, info.n_elements as usize)?)
    }

    /// A tensor in Burn's row-major order: GGUF's `ne0` is the last (contiguous) dimension.
    fn tensor<const D: usize>(&mut self, name: &str) -> Result<Tensor<D>, ModelError> {
        let dims = self.info(name)?.dims.clone();
        if dims.len() > D {
            return Err(ModelError::BadShape { name: name.into(), dims });
        }
        let mut shape = [1usize; D];
        for (i, &d) in dims.iter().enumerate() {
            shape[D - 1 - i] = d as usize;
        }
        let values = self.values(name)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), self.device))
    }

    fn optional<const D: usize>(&mut self, name: &str) -> Result<Option<Tensor<D>>, ModelError> {
        match self.gguf.tensor(name) {
            Some(_) => self.tensor(name).map(Some),
            None => Ok(None),
        }
    }

    fn norm(&mut self, name: &str) -> Result<RmsNorm, ModelError> {
        Ok(RmsNorm::new(self.tensor::<1>(name)?, self.eps))
    }

    fn optional_norm(&mut self, name: &str) -> Result<Option<RmsNorm>, ModelError> {
        Ok(self.optional::<1>(name)?.map(|w| RmsNorm::new(w, self.eps)))
    }

    /// `<prefix>.weight` and, when the file has it, `<prefix>.bias`.
    fn linear(&mut self, prefix: &str) -> Result<Linear, ModelError> {
        Ok(Linear::new(self.tensor::<2>(&format!("{prefix}.weight"))?, self.optional::<1>(&format!("{prefix}.bias"))?))
    }

    /// A fused projection split by output rows into `parts` (e.g. Q, K, V).
    fn split_linear(&mut self, prefix: &str, parts: &[usize]) -> Result<Vec<Linear>, ModelError> {
        let (weight, bias) = self.linear(prefix)?.into_parts();
        let [rows, cols] = weight.dims();
        if parts.iter().sum::<usize>() != rows {
            return Err(ModelError::WrongShape {
                name: format!("{prefix}.weight"),
                expected: vec![cols as u64, parts.iter().sum::<usize>() as u64],
                found: vec![cols as u64, rows as u64],
            });
        }
        let mut at = 0;
        Ok(parts
            .iter()
            .map(|&n| {
                let range = at..at + n;
                at += n;
                Linear::new(
                    weight.clone().slice([range.clone(), 0..cols]),
                    bias.as_ref().map(|b| b.clone().slice([range])),
                )
            })
            .collect())
    }
}
