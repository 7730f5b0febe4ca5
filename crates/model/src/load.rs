//! GGUF tensors → Burn tensors on a device, found by their GGUF names.

use std::borrow::Cow;

use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{Gguf, TensorInfo};

use crate::config::ModelConfig;
use crate::llama::{Block, Linear, Llama, Model, RmsNorm};
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
    let problems = check_support(gguf);
    if let Some(first) = problems.into_iter().next() {
        return Err(first);
    }
    let config = ModelConfig::from_gguf(gguf)?;
    let mut loader = Loader { gguf, source, device };

    let norm = |l: &mut Loader, name: &str| -> Result<RmsNorm, ModelError> {
        Ok(RmsNorm::new(l.tensor::<1>(name)?, config.rms_eps))
    };
    let mut blocks = Vec::with_capacity(config.n_layer);
    for i in 0..config.n_layer {
        let name = |n: &str| format!("blk.{i}.{n}.weight");
        let mut linear = |n: &str| -> Result<Linear, ModelError> { Ok(Linear::new(loader.tensor::<2>(&name(n))?)) };
        let (wq, wk, wv, wo) = (linear("attn_q")?, linear("attn_k")?, linear("attn_v")?, linear("attn_output")?);
        let (w_gate, w_up, w_down) = (linear("ffn_gate")?, linear("ffn_up")?, linear("ffn_down")?);
        blocks.push(Block {
            attn_norm: norm(&mut loader, &name("attn_norm"))?,
            ffn_norm: norm(&mut loader, &name("ffn_norm"))?,
            wq,
            wk,
            wv,
            wo,
            w_gate,
            w_up,
            w_down,
        });
    }
    let net = Llama {
        tok_embd: loader.tensor::<2>("token_embd.weight")?,
        blocks,
        output_norm: norm(&mut loader, "output_norm.weight")?,
        output: if config.tied_output { None } else { Some(loader.tensor::<2>("output.weight")?) },
    };
    let rope_freq_factors = match gguf.tensor("rope_freqs.weight") {
        Some(_) => Some(loader.values("rope_freqs.weight")?),
        None => None,
    };
    Ok(Model { config, net, rope_freq_factors, device: device.clone() })
}

struct Loader<'a> {
    gguf: &'a Gguf,
    source: &'a mut dyn TensorSource,
    device: &'a Device,
}

impl Loader<'_> {
    fn values(&mut self, name: &str) -> Result<Vec<f32>, ModelError> {
        let info = self.gguf.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        let bytes = self.source.tensor_bytes(self.gguf, info)?;
        Ok(burrow_gguf::dequantize_to_vec(info.ty, &bytes, info.n_elements as usize)?)
    }

    /// A tensor in Burn's row-major order: GGUF's `ne0` is the last (contiguous) dimension.
    fn tensor<const D: usize>(&mut self, name: &str) -> Result<Tensor<D>, ModelError> {
        let info = self.gguf.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        let dims = &info.dims;
        if dims.len() > D {
            return Err(ModelError::BadShape { name: name.into(), dims: dims.clone() });
        }
        let mut shape = [1usize; D];
        for (i, &d) in dims.iter().enumerate() {
            shape[D - 1 - i] = d as usize;
        }
        let values = self.values(name)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), self.device))
    }
}
