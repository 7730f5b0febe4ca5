//! One forward step's tokens on the device: the first position and the token ids, uploaded once
//! per step and read by the kernels that need them (embedding, RoPE, attention), with what the
//! choice of the next token needs (the random draw and the penalized ids).
//!
//! Positions change every token; as kernel parameters they would make cubecl write a fresh
//! parameter uniform per kernel and per token. One small buffer per step is the only upload:
//! cubecl submits the queued work before every buffer write, so a second upload in the middle of
//! a step would be a second submission.

use burn::backend::CubeDevice;
use burn::cubecl::client::Client;
use burn::cubecl::server::Handle;
use burn::tensor::Device;

use crate::error::GpuError;

/// A step's first position and token ids, on a wgpu device. The buffer holds
/// `[start, ids[0], ids[1], …, ids[T - 1], draw, P, penalized[0], …, penalized[P - 1]]` as u32
/// (`draw` as f32 bits): `shaders/qembed.wgsl`, `rope_kv.wgsl` and `attention.wgsl` read the
/// first part, `argmax.wgsl` and `sample.wgsl` the rest.
#[derive(Clone, Debug)]
pub struct StepTokens {
    start: usize,
    ids: Vec<u32>,
    /// How many ids the repetition penalty applies to (the ids are only needed on the GPU).
    penalized: usize,
    pub(crate) handle: Handle,
    pub(crate) device: CubeDevice,
}

impl StepTokens {
    /// Uploads `ids` at positions `start ..` to `device`.
    ///
    /// # Errors
    ///
    /// [`GpuError::NotWgpu`] off wgpu, [`GpuError::Shape`] for no ids,
    /// [`GpuError::TooLarge`] for positions past u32.
    pub fn new(device: &Device, start: usize, ids: &[u32]) -> Result<StepTokens, GpuError> {
        Self::with_choice(device, start, ids, 0.0, &[])
    }

    /// [`StepTokens::new`] with what [`crate::choose`] reads after the step: the random draw in
    /// [0, 1) for sampling and the ids the repetition penalty applies to (each once).
    ///
    /// # Errors
    ///
    /// As [`StepTokens::new`].
    pub fn with_choice(
        device: &Device,
        start: usize,
        ids: &[u32],
        draw: f32,
        penalized: &[u32],
    ) -> Result<StepTokens, GpuError> {
        let cube = crate::device::wgpu_device(device).ok_or_else(|| GpuError::NotWgpu(format!("{device:?}")))?;
        if ids.is_empty() {
            return Err(GpuError::Shape("a step needs at least one token".into()));
        }
        if u32::try_from(start + ids.len()).is_err() {
            return Err(GpuError::TooLarge(format!("position {start}")));
        }
        let client: Client = cube.client();
        let words: Vec<u8> = std::iter::once(start as u32)
            .chain(ids.iter().copied())
            .chain([draw.to_bits(), penalized.len() as u32])
            .chain(penalized.iter().copied())
            .flat_map(u32::to_le_bytes)
            .collect();
        let handle = client.create_from_slice(&words);
        Ok(StepTokens { start, ids: ids.to_vec(), penalized: penalized.len(), handle, device: cube.clone() })
    }

    /// Index of the draw's word in the buffer (the count of penalized ids follows).
    pub(crate) fn draw_word(&self) -> usize {
        1 + self.ids.len()
    }

    /// How many ids the repetition penalty applies to.
    pub fn penalized_count(&self) -> usize {
        self.penalized
    }

    /// Position of the first token.
    pub fn start(&self) -> usize {
        self.start
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
