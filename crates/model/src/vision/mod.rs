//! The vision encoder of a llama.cpp GGUF pair (the `mmproj` file, `general.architecture = clip`):
//! an image's pixels in, embeddings in the language model's space out, one row per image token.
//!
//! Two projectors, each as llama.cpp's mtmd builds it:
//! - SmolVLM (`idefics3`, [`idefics3`]): an image cut into tiles of a fixed size, each encoded on
//!   its own ([`VisionEncoder::encode_tile`]);
//! - Qwen2.5-VL (`qwen2.5vl_merger`, [`qwen25vl`]): an image of any size (whole 2 × 2 blocks of
//!   patches) encoded at once ([`VisionEncoder::encode_image`]).
//!
//! On the CPU reference every weight is f32 (Burn's ops). On wgpu the matrices stay in the file's
//! type (F16, Q8_0, …) and run Burrow's matmul kernels, as the language model's do; the patch and
//! position embeddings, norms and biases are f32, and the rest are Burn's ops on the device.

mod idefics3;
mod qwen25vl;

use std::collections::HashMap;

use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{Gguf, TensorInfo};
use burrow_gpu::{is_wgpu_device, supports_matrix, Kernels, QuantTensor, QuantUpload};

use crate::config::ModelConfig;
use crate::layer::{Linear, Matrix};
use crate::load::{Builder, FileBytes};
use crate::ModelError;

/// The projectors Burrow runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projector {
    /// SmolVLM: SigLIP, pixel shuffle, one linear layer.
    Idefics3,
    /// Qwen2.5-VL: a ViT with 2-D RoPE and window attention, then the 2 × 2 patch merger MLP.
    Qwen25Vl,
}

impl Projector {
    fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "idefics3" => Ok(Projector::Idefics3),
            "qwen2.5vl_merger" => Ok(Projector::Qwen25Vl),
            other => Err(ModelError::UnsupportedArchitecture(format!("vision projector {other}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Projector::Idefics3 => "idefics3",
            Projector::Qwen25Vl => "qwen2.5vl_merger",
        }
    }

    /// Whether it sizes images to a token budget (Qwen2.5-VL); SmolVLM's tiles have a fixed size.
    pub fn takes_token_budget(self) -> bool {
        self == Projector::Qwen25Vl
    }
}

/// Qwen2.5-VL's window attention: most layers attend only within square windows of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowAttention {
    /// Layer i attends over the whole image iff (i + 1) is a multiple of this
    /// (`clip.vision.n_wa_pattern`); the others within windows.
    pub full_every: usize,
    /// A window's side in merged tokens, tiled from the top left (the last ones partial).
    pub side: usize,
}

/// What an mmproj file's `clip.*` metadata says about its encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    pub projector: Projector,
    /// A tile's side in pixels (SmolVLM); Qwen2.5-VL's files carry it too, and size images by a
    /// token budget instead.
    pub image_size: usize,
    pub patch_size: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub eps: f32,
    /// Patches merged per side into one token (SmolVLM's pixel shuffle, Qwen's 2 × 2 merger).
    pub scale_factor: usize,
    /// The language model's embedding width the projection writes.
    pub projection_dim: usize,
    /// SmolVLM: the resized image's longer side before it is tiled; 0 for Qwen2.5-VL, which
    /// does not tile.
    pub longest_edge: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Qwen2.5-VL's window attention (`None`: every layer attends over the whole input).
    pub windows: Option<WindowAttention>,
}

/// Qwen2.5-VL's windows are 112 pixels a side: llama.cpp's fixed value, which its converter
/// does not write (`window_size` in transformers' config).
const QWEN25VL_WINDOW_PIXELS: usize = 112;
/// Qwen2-VL's and Qwen2.5-VL's merger takes 2 × 2 patches (llama.cpp's graph fixes it too).
const QWEN_MERGE: usize = 2;
/// The largest image token budget accepted: 16 times llama.cpp's default of 4096, far past what
/// a device's memory holds for one image, and its pixel counts far from overflowing u32.
const MAX_IMAGE_TOKENS: usize = 1 << 16;

fn key_u64(gguf: &Gguf, key: &str) -> Result<u64, ModelError> {
    gguf.get_u64(key).ok_or_else(|| ModelError::MissingKey(key.into()))
}

fn key_usize(gguf: &Gguf, key: &str) -> Result<usize, ModelError> {
    let v = key_u64(gguf, key)?;
    if v == 0 || v > 1 << 20 {
        return Err(ModelError::BadValue { key: key.into(), value: v.to_string() });
    }
    Ok(v as usize)
}

/// A per-channel triple (`image_mean`, `image_std`); converters write one value for all three.
fn key_rgb(gguf: &Gguf, key: &str) -> Result<[f32; 3], ModelError> {
    let values = gguf.get_array(key).ok_or_else(|| ModelError::MissingKey(key.into()))?;
    let v: Vec<f32> = values.iter().filter_map(|v| v.as_f32()).collect();
    match v.as_slice() {
        [a] => Ok([*a; 3]),
        [r, g, b] => Ok([*r, *g, *b]),
        _ => Err(ModelError::BadValue { key: key.into(), value: format!("{} values", values.len()) }),
    }
}

impl VisionConfig {
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, ModelError> {
        if gguf.architecture() != Some("clip") {
            return Err(ModelError::Context(format!(
                "this is not a vision projector (mmproj) file: its architecture is {}",
                gguf.architecture().unwrap_or("missing")
            )));
        }
        if gguf.get_bool("clip.has_vision_encoder") != Some(true) {
            return Err(ModelError::Context("this projector file has no vision encoder".into()));
        }
        let projector = gguf
            .get_str("clip.vision.projector_type")
            .or_else(|| gguf.get_str("clip.projector_type"))
            .ok_or_else(|| ModelError::MissingKey("clip.projector_type".into()))?;
        let projector = Projector::parse(projector)?;
        let patch_size = key_usize(gguf, "clip.vision.patch_size")?;
        let (scale_factor, longest_edge, windows) = match projector {
            Projector::Idefics3 => {
                (key_usize(gguf, "clip.vision.projector.scale_factor")?, key_usize(gguf, "clip.vision.preproc_image_size")?, None)
            }
            Projector::Qwen25Vl => {
                let merge_key = "clip.vision.spatial_merge_size";
                if let Some(merge) = gguf.get_u64(merge_key).filter(|&m| m != QWEN_MERGE as u64) {
                    return Err(ModelError::BadValue { key: merge_key.into(), value: format!("{merge} (the merger takes 2 × 2 patches)") });
                }
                let side = QWEN25VL_WINDOW_PIXELS / patch_size / QWEN_MERGE;
                let full_every = key_usize(gguf, "clip.vision.n_wa_pattern")?;
                (QWEN_MERGE, 0, Some(WindowAttention { full_every, side: side.max(1) }))
            }
        };
        let c = VisionConfig {
            projector,
            image_size: key_usize(gguf, "clip.vision.image_size")?,
            patch_size,
            n_embd: key_usize(gguf, "clip.vision.embedding_length")?,
            n_ff: key_usize(gguf, "clip.vision.feed_forward_length")?,
            n_layer: key_usize(gguf, "clip.vision.block_count")?,
            n_head: key_usize(gguf, "clip.vision.attention.head_count")?,
            eps: gguf.get_f32("clip.vision.attention.layer_norm_epsilon").unwrap_or(1e-6),
            scale_factor,
            projection_dim: key_usize(gguf, "clip.vision.projection_dim")?,
            longest_edge,
            mean: key_rgb(gguf, "clip.vision.image_mean")?,
            std: key_rgb(gguf, "clip.vision.image_std")?,
            windows,
        };
        let consistent = match projector {
            Projector::Idefics3 => c.image_size % c.patch_size == 0 && c.patches_per_side() % c.scale_factor == 0,
            // The 2-D RoPE turns a quarter of each head by the row and a quarter by the column.
            Projector::Qwen25Vl => (c.n_embd / c.n_head) % 4 == 0,
        };
        if !consistent || c.n_embd % c.n_head != 0 {
            return Err(ModelError::Context(format!(
                "inconsistent vision encoder: tiles of {} px, patches of {} px, scale factor {}, {} heads over {} values",
                c.image_size, c.patch_size, c.scale_factor, c.n_head, c.n_embd
            )));
        }
        Ok(c)
    }

    /// Patches per tile side (SmolVLM).
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Image tokens one tile becomes (SmolVLM).
    pub fn tokens_per_tile(&self) -> usize {
        (self.patches_per_side() / self.scale_factor).pow(2)
    }

    /// Whether this projector feeds the language model `lm`: embeddings as wide as its, placed as
    /// it reads them (Qwen2.5-VL's on a grid, for an M-RoPE model; SmolVLM's like text). The
    /// reason they are not a pair, if they are not.
    pub fn check_pair(&self, lm: &ModelConfig) -> Result<(), String> {
        if self.projection_dim != lm.n_embd {
            return Err(format!(
                "this vision projector writes embeddings {} wide, but the language model's are {} wide: they are not a pair",
                self.projection_dim, lm.n_embd
            ));
        }
        let grid = self.projector == Projector::Qwen25Vl;
        if grid != lm.rope_sections.is_some() {
            return Err(format!(
                "this vision projector ({}) {} image tokens on a grid, but the language model ({}) {}: they are not a pair",
                self.projector.name(),
                if grid { "places" } else { "does not place" },
                lm.arch,
                if grid { "has no M-RoPE to read them so" } else { "expects them there (M-RoPE)" }
            ));
        }
        Ok(())
    }

    /// The projector of `gguf` when Burrow runs it: its metadata, and every tensor there in its
    /// shape and a type Burrow reads (checked from the header alone, before any tensor data).
    pub fn check(gguf: &Gguf) -> Result<VisionConfig, ModelError> {
        let config = VisionConfig::from_gguf(gguf)?;
        config.wanted_tensors(gguf)?;
        Ok(config)
    }

    fn wanted_tensors(&self, gguf: &Gguf) -> Result<HashMap<String, Held>, ModelError> {
        let mut wanted = HashMap::new();
        let expected = match self.projector {
            Projector::Idefics3 => idefics3::expected_tensors(self),
            Projector::Qwen25Vl => qwen25vl::expected_tensors(self),
        };
        for (name, dims, held) in expected {
            let info = gguf.tensor(&name).ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
            if info.dims != dims {
                return Err(ModelError::WrongShape { name, expected: dims, found: info.dims.clone() });
            }
            if !info.ty.can_dequantize() {
                return Err(ModelError::UnsupportedTensorType { name, ty: info.ty.name().to_string() });
            }
            wanted.insert(name, held);
        }
        Ok(wanted)
    }
}

/// How a tensor of the projector is held on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// f32 values (embeddings, norms, biases).
    Values,
    /// A weight matrix: in its GGUF type on wgpu where the kernels read it, f32 otherwise.
    Matrix,
}

/// The network of one projector.
enum Net {
    Idefics3(idefics3::Siglip),
    Qwen25Vl(qwen25vl::Tower),
}

/// A loaded vision encoder.
pub struct VisionEncoder {
    pub config: VisionConfig,
    net: Net,
    /// The least and most tokens an image may become, where the projector sizes images by a
    /// budget (Qwen2.5-VL); `None`: llama.cpp's default.
    image_tokens: Option<(usize, usize)>,
    device: Device,
}

/// A tensor on its way into the encoder.
enum Part {
    Values(Vec<f32>),
    Matrix(Matrix),
}

/// Collects an mmproj file's tensors ([`Builder`]: from memory, or streamed in the browser).
pub struct VisionBuilder {
    config: VisionConfig,
    device: Device,
    kernels: Option<Kernels>,
    wanted: HashMap<String, Held>,
    loaded: HashMap<String, Part>,
}

impl VisionBuilder {
    /// Whether `info` stays in its GGUF blocks on the GPU.
    fn stays_quantized(&self, info: &TensorInfo) -> bool {
        self.kernels.is_some() && self.wanted.get(&info.name) == Some(&Held::Matrix) && supports_matrix(info.ty, info.dims[0])
    }

    fn values(&mut self, name: &str) -> Result<Vec<f32>, ModelError> {
        match self.loaded.remove(name) {
            Some(Part::Values(v)) => Ok(v),
            _ => Err(ModelError::MissingTensor(name.into())),
        }
    }

    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<D>, ModelError> {
        Ok(Tensor::from_data(TensorData::new(self.values(name)?, shape), &self.device))
    }

    /// `<prefix>.weight` and, with `bias`, `<prefix>.bias`.
    fn linear(&mut self, prefix: &str, bias: bool) -> Result<Linear, ModelError> {
        let name = format!("{prefix}.weight");
        let Some(Part::Matrix(weight)) = self.loaded.remove(&name) else {
            return Err(ModelError::MissingTensor(name));
        };
        let bias = if bias { Some(self.tensor(&format!("{prefix}.bias"), [weight.rows()])?) } else { None };
        Ok(Linear::new(weight, bias))
    }
}

impl Builder for VisionBuilder {
    type Output = VisionEncoder;

    /// Checks the projector's metadata and that every tensor is there, in its shape and a type
    /// Burrow reads, before any is loaded.
    fn start(gguf: &Gguf, device: &Device, kernels: Option<Kernels>) -> Result<Self, ModelError> {
        let config = VisionConfig::from_gguf(gguf)?;
        if kernels.is_some() != is_wgpu_device(device) {
            return Err(ModelError::Context(format!("kernels {kernels:?} for the device {device:?}")));
        }
        let wanted = config.wanted_tensors(gguf)?;
        // No 8-bit activations here: a vision tower's activations have outliers that 8-bit
        // blocks round by several percent (a Q8_0 SigLIP moved its embeddings by 4e-2; 3e-6
        // with f32 activations), and it runs once per image, not per token.
        let kernels = kernels.map(|k| k.with_dp4a(false));
        Ok(VisionBuilder { config, device: device.clone(), kernels, wanted, loaded: HashMap::new() })
    }

    fn tensors_in_file_order(&self, gguf: &Gguf) -> Vec<TensorInfo> {
        let mut tensors: Vec<TensorInfo> = gguf.tensors.iter().filter(|t| self.wanted.contains_key(&t.name)).cloned().collect();
        tensors.sort_by_key(|t| t.offset);
        tensors
    }

    fn begin_upload(&mut self, info: &TensorInfo) -> Result<Option<QuantUpload>, ModelError> {
        if !self.stays_quantized(info) {
            return Ok(None);
        }
        QuantTensor::upload(info.ty, &info.dims, &self.device)
            .map(Some)
            .map_err(|e| ModelError::Context(format!("uploading tensor '{}': {e}", info.name)))
    }

    fn add_uploaded(&mut self, info: &TensorInfo, upload: QuantUpload) -> Result<(), ModelError> {
        let tensor = upload.finish().map_err(|e| ModelError::Context(format!("uploading tensor '{}': {e}", info.name)))?;
        let tensor = match self.kernels {
            Some(k) => tensor.with_kernels(k),
            None => tensor,
        };
        self.loaded.insert(info.name.clone(), Part::Matrix(Matrix::Quant(tensor)));
        Ok(())
    }

    fn add(&mut self, info: &TensorInfo, bytes: &[u8]) -> Result<(), ModelError> {
        let Some(&held) = self.wanted.get(&info.name) else {
            return Ok(());
        };
        if bytes.len() as u64 != info.n_bytes {
            return Err(ModelError::Context(format!("tensor '{}' arrived with {} bytes, expected {}", info.name, bytes.len(), info.n_bytes)));
        }
        if let Some(mut upload) = self.begin_upload(info)? {
            upload.push(bytes).map_err(|e| ModelError::Context(format!("uploading tensor '{}': {e}", info.name)))?;
            return self.add_uploaded(info, upload);
        }
        let values = burrow_gguf::dequantize_to_vec(info.ty, bytes, info.n_elements as usize)?;
        let part = match held {
            Held::Values => Part::Values(values),
            Held::Matrix => {
                let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
                Part::Matrix(Matrix::Dense(Tensor::from_data(TensorData::new(values, [rows, cols]), &self.device)))
            }
        };
        self.loaded.insert(info.name.clone(), part);
        Ok(())
    }

    fn finish(mut self) -> Result<VisionEncoder, ModelError> {
        let net = match self.config.projector {
            Projector::Idefics3 => Net::Idefics3(idefics3::build(&mut self)?),
            Projector::Qwen25Vl => Net::Qwen25Vl(qwen25vl::build(&mut self)?),
        };
        Ok(VisionEncoder { config: self.config, net, image_tokens: None, device: self.device })
    }
}

impl VisionEncoder {
    /// The encoder of the mmproj file `file` (parsed as `gguf`) on `device`, to run `kernels` (on
    /// a wgpu device; `None` on the CPU reference).
    pub fn load(gguf: &Gguf, file: &[u8], device: &Device, kernels: Option<Kernels>) -> Result<Self, ModelError> {
        crate::load::load::<VisionBuilder>(gguf, &mut FileBytes(file), device, kernels)
    }

    /// One tile (`image_size`² pixels of normalized `[r, g, b]`, rows top to bottom) to its
    /// `[tokens_per_tile, projection_dim]` embeddings (SmolVLM).
    pub fn encode_tile(&self, pixels: &[f32]) -> Result<Tensor<2>, ModelError> {
        match &self.net {
            Net::Idefics3(net) => net.encode_tile(&self.config, pixels, &self.device),
            Net::Qwen25Vl(_) => Err(ModelError::Context("Qwen2.5-VL's encoder takes whole images, not tiles".into())),
        }
    }

    /// A whole image (Qwen2.5-VL): `planar` holds its normalized pixels as three planes (R, G,
    /// B), each row by row, `grid` = [rows, columns] of patches (both even: whole 2 × 2 blocks).
    /// Returns `[rows / 2 · columns / 2, projection_dim]`: the merged tokens row by row.
    pub fn encode_image(&self, planar: &[f32], grid: [usize; 2]) -> Result<Tensor<2>, ModelError> {
        match &self.net {
            Net::Qwen25Vl(net) => net.encode(&self.config, planar, grid, &self.device),
            Net::Idefics3(_) => Err(ModelError::Context("SmolVLM's encoder takes tiles of a fixed size, not whole images".into())),
        }
    }

    /// The least and most tokens an image becomes, if set ([`VisionEncoder::set_image_token_budget`]).
    pub fn image_token_budget(&self) -> Option<(usize, usize)> {
        self.image_tokens
    }

    /// Sizes images to `min` to `max` tokens each, as llama.cpp's `--image-min-tokens` and
    /// `--image-max-tokens` do (Qwen2.5-VL; SmolVLM's tiles have a fixed size).
    pub fn set_image_token_budget(&mut self, min: usize, max: usize) -> Result<(), ModelError> {
        if !self.config.projector.takes_token_budget() {
            return Err(ModelError::Context("SmolVLM's images are cut into tiles of a fixed size: they take no token budget".into()));
        }
        if min == 0 || min > max || max > MAX_IMAGE_TOKENS {
            return Err(ModelError::Context(format!(
                "an image token budget of {min} to {max} tokens (it takes 1 to {MAX_IMAGE_TOKENS} tokens, the least first)"
            )));
        }
        self.image_tokens = Some((min, max));
        Ok(())
    }
}
