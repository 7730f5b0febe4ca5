//! The vision encoder of a llama.cpp GGUF pair (the `mmproj` file, `general.architecture = clip`):
//! an image's tiles in, embeddings in the language model's space out, one row per image token.
//!
//! SmolVLM (projector `idefics3`), as llama.cpp's mtmd builds it (clip.cpp's siglip graph): each
//! tile is cut into p × p patches, row by row; a patch (flattened channel, row, column) goes through
//! the patch embedding, plus its position's embedding; then pre-norm ViT blocks (LayerNorm,
//! unmasked multi-head attention, LayerNorm, tanh-GELU MLP, all with biases), a last LayerNorm,
//! the pixel shuffle (each s × s square of patches becomes one token: rows outer, columns inner),
//! and a linear projection.
//!
//! On the CPU reference every weight is f32 (Burn's ops). On wgpu the matrices stay in the file's
//! type (F16, Q8_0, …) and run Burrow's matmul kernels, as the language model's do; the patch and
//! position embeddings, norms and biases are f32, and the rest are Burn's ops on the device.

use std::collections::HashMap;

use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{Gguf, TensorInfo};
use burrow_gpu::{is_wgpu_device, supports_matrix, Kernels, QuantTensor, QuantUpload};

use crate::layer::{Linear, Matrix};
use crate::load::{Builder, FileBytes};
use crate::ModelError;

/// The projectors Burrow runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projector {
    /// SmolVLM: SigLIP, pixel shuffle, one linear layer.
    Idefics3,
}

impl Projector {
    fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "idefics3" => Ok(Projector::Idefics3),
            other => Err(ModelError::UnsupportedArchitecture(format!("vision projector {other}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Projector::Idefics3 => "idefics3",
        }
    }
}

/// What an mmproj file's `clip.*` metadata says about its encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    pub projector: Projector,
    /// A tile's side in pixels.
    pub image_size: usize,
    pub patch_size: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub eps: f32,
    /// Patches merged per side into one token (the pixel shuffle).
    pub scale_factor: usize,
    /// The language model's embedding width the projection writes.
    pub projection_dim: usize,
    /// The resized image's longer side before it is tiled.
    pub longest_edge: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

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
        let c = VisionConfig {
            projector: Projector::parse(projector)?,
            image_size: key_usize(gguf, "clip.vision.image_size")?,
            patch_size: key_usize(gguf, "clip.vision.patch_size")?,
            n_embd: key_usize(gguf, "clip.vision.embedding_length")?,
            n_ff: key_usize(gguf, "clip.vision.feed_forward_length")?,
            n_layer: key_usize(gguf, "clip.vision.block_count")?,
            n_head: key_usize(gguf, "clip.vision.attention.head_count")?,
            eps: gguf.get_f32("clip.vision.attention.layer_norm_epsilon").unwrap_or(1e-6),
            scale_factor: key_usize(gguf, "clip.vision.projector.scale_factor")?,
            projection_dim: key_usize(gguf, "clip.vision.projection_dim")?,
            longest_edge: key_usize(gguf, "clip.vision.preproc_image_size")?,
            mean: key_rgb(gguf, "clip.vision.image_mean")?,
            std: key_rgb(gguf, "clip.vision.image_std")?,
        };
        let side = c.image_size / c.patch_size;
        if c.image_size % c.patch_size != 0 || side % c.scale_factor != 0 || c.n_embd % c.n_head != 0 {
            return Err(ModelError::Context(format!(
                "inconsistent vision encoder: tiles of {} px, patches of {} px, scale factor {}, {} heads over {} values",
                c.image_size, c.patch_size, c.scale_factor, c.n_head, c.n_embd
            )));
        }
        Ok(c)
    }

    /// Patches per tile side.
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Image tokens one tile becomes.
    pub fn tokens_per_tile(&self) -> usize {
        (self.patches_per_side() / self.scale_factor).pow(2)
    }

    /// Whether this projector feeds a language model whose embeddings are `lm_width` wide: the
    /// reason they are not a pair, if they are not.
    pub fn check_pair(&self, lm_width: usize) -> Result<(), String> {
        if self.projection_dim == lm_width {
            return Ok(());
        }
        Err(format!(
            "this vision projector writes embeddings {} wide, but the language model's are {lm_width} wide: they are not a pair",
            self.projection_dim
        ))
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
        for (name, dims, held) in self.expected_tensors() {
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

    /// Every tensor the encoder reads, with its GGUF dims (ne0 first) and how it is held.
    fn expected_tensors(&self) -> Vec<(String, Vec<u64>, Held)> {
        let (e, ff, p) = (self.n_embd as u64, self.n_ff as u64, self.patch_size as u64);
        let mut t = vec![
            ("v.patch_embd.weight".to_string(), vec![p, p, 3, e], Held::Values),
            ("v.patch_embd.bias".to_string(), vec![e], Held::Values),
            ("v.position_embd.weight".to_string(), vec![e, self.patches_per_side().pow(2) as u64], Held::Values),
        ];
        for i in 0..self.n_layer {
            let b = format!("v.blk.{i}");
            for norm in ["ln1", "ln2"] {
                t.push((format!("{b}.{norm}.weight"), vec![e], Held::Values));
                t.push((format!("{b}.{norm}.bias"), vec![e], Held::Values));
            }
            for (name, cols, rows) in [("attn_q", e, e), ("attn_k", e, e), ("attn_v", e, e), ("attn_out", e, e), ("ffn_up", e, ff), ("ffn_down", ff, e)] {
                t.push((format!("{b}.{name}.weight"), vec![cols, rows], Held::Matrix));
                t.push((format!("{b}.{name}.bias"), vec![rows], Held::Values));
            }
        }
        t.push(("v.post_ln.weight".into(), vec![e], Held::Values));
        t.push(("v.post_ln.bias".into(), vec![e], Held::Values));
        let merged = e * (self.scale_factor * self.scale_factor) as u64;
        t.push(("mm.model.fc.weight".into(), vec![merged, self.projection_dim as u64], Held::Matrix));
        t
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

/// `y = (x − mean) / sqrt(var + eps) · weight + bias` over the last dimension.
struct LayerNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f32,
}

impl LayerNorm {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mean = x.clone().mean_dim(1);
        let centered = x - mean;
        let inv = centered.clone().square().mean_dim(1).add_scalar(self.eps).sqrt().recip();
        centered * inv * self.weight.clone().unsqueeze::<2>() + self.bias.clone().unsqueeze::<2>()
    }
}

struct VitBlock {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    up: Linear,
    down: Linear,
}

/// A loaded vision encoder.
pub struct VisionEncoder {
    pub config: VisionConfig,
    /// `[n_embd, 3 · p²]`, columns in (channel, row, column) order.
    patch_embd: Tensor<2>,
    patch_bias: Tensor<1>,
    /// `[patches, n_embd]`.
    position_embd: Tensor<2>,
    blocks: Vec<VitBlock>,
    post_ln: LayerNorm,
    projection: Linear,
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

    fn layer_norm(&mut self, prefix: &str) -> Result<LayerNorm, ModelError> {
        let (n, eps) = (self.config.n_embd, self.config.eps);
        Ok(LayerNorm { weight: self.tensor(&format!("{prefix}.weight"), [n])?, bias: self.tensor(&format!("{prefix}.bias"), [n])?, eps })
    }

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
        let config = self.config.clone();
        let (e, p) = (config.n_embd, config.patch_size);
        // GGUF [p, p, 3, E]: per output, channel-major then row then column.
        let patch_embd = self.tensor("v.patch_embd.weight", [e, 3 * p * p])?;
        let patch_bias = self.tensor("v.patch_embd.bias", [e])?;
        let position_embd = self.tensor("v.position_embd.weight", [config.patches_per_side().pow(2), e])?;
        let blocks = (0..config.n_layer)
            .map(|i| {
                let b = format!("v.blk.{i}");
                Ok(VitBlock {
                    ln1: self.layer_norm(&format!("{b}.ln1"))?,
                    q: self.linear(&format!("{b}.attn_q"), true)?,
                    k: self.linear(&format!("{b}.attn_k"), true)?,
                    v: self.linear(&format!("{b}.attn_v"), true)?,
                    out: self.linear(&format!("{b}.attn_out"), true)?,
                    ln2: self.layer_norm(&format!("{b}.ln2"))?,
                    up: self.linear(&format!("{b}.ffn_up"), true)?,
                    down: self.linear(&format!("{b}.ffn_down"), true)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let post_ln = self.layer_norm("v.post_ln")?;
        let projection = self.linear("mm.model.fc", false)?;
        Ok(VisionEncoder { config, patch_embd, patch_bias, position_embd, blocks, post_ln, projection, device: self.device })
    }
}

impl VisionEncoder {
    /// The encoder of the mmproj file `file` (parsed as `gguf`) on `device`, to run `kernels` (on
    /// a wgpu device; `None` on the CPU reference).
    pub fn load(gguf: &Gguf, file: &[u8], device: &Device, kernels: Option<Kernels>) -> Result<Self, ModelError> {
        crate::load::load::<VisionBuilder>(gguf, &mut FileBytes(file), device, kernels)
    }

    /// One tile (`image_size`² pixels of normalized `[r, g, b]`, rows top to bottom) to its
    /// `[tokens_per_tile, projection_dim]` embeddings.
    pub fn encode_tile(&self, pixels: &[f32]) -> Result<Tensor<2>, ModelError> {
        let c = &self.config;
        let (s, p, n) = (c.image_size, c.patch_size, c.patches_per_side());
        if pixels.len() != s * s * 3 {
            return Err(ModelError::Context(format!("a tile of {} values, expected {s} × {s} × 3", pixels.len())));
        }
        // Patches row by row, each flattened (channel, row, column) as the patch embedding reads it.
        let patch_len = 3 * p * p;
        let mut patches = Vec::with_capacity(n * n * patch_len);
        for py in 0..n {
            for px in 0..n {
                for ch in 0..3 {
                    for ky in 0..p {
                        let row = (py * p + ky) * s + px * p;
                        patches.extend((0..p).map(|kx| pixels[(row + kx) * 3 + ch]));
                    }
                }
            }
        }
        let patches = Tensor::<2>::from_data(TensorData::new(patches, [n * n, patch_len]), &self.device);
        let mut x = patches.matmul(self.patch_embd.clone().transpose()) + self.patch_bias.clone().unsqueeze::<2>() + self.position_embd.clone();
        for block in &self.blocks {
            x = x.clone() + block.out.forward(self.attention(block, block.ln1.forward(x))?)?;
            x = x.clone() + block.down.forward(gelu_approximate(block.up.forward(block.ln2.forward(x))?))?;
        }
        let x = self.post_ln.forward(x);
        self.projection.forward(self.pixel_shuffle(x))
    }

    /// Unmasked multi-head attention over the tile's patches.
    fn attention(&self, block: &VitBlock, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        let c = &self.config;
        let (t, h, d) = (x.dims()[0], c.n_head, c.n_embd / c.n_head);
        let heads = |m: &Linear| Ok::<_, ModelError>(m.forward(x.clone())?.reshape([t, h, d]).swap_dims(0, 1));
        let (q, k, v) = (heads(&block.q)?, heads(&block.k)?, heads(&block.v)?);
        let scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(1.0 / (d as f32).sqrt());
        Ok(softmax(scores, 2).matmul(v).swap_dims(0, 1).reshape([t, c.n_embd]))
    }

    /// `[n², E]` → `[(n/s)², s² · E]`: token (row, column) is patches (row·s + dy, column·s + dx)
    /// for dy then dx in 0..s, side by side.
    fn pixel_shuffle(&self, x: Tensor<2>) -> Tensor<2> {
        let c = &self.config;
        let (n, s, e) = (c.patches_per_side(), c.scale_factor, c.n_embd);
        let m = n / s;
        // [yg, dy, xg, dx, E] → [yg, xg, dy, dx, E]
        x.reshape([m, s, m, s * e]).swap_dims(1, 2).reshape([m * m, s * s * e])
    }
}
