//! The vision encoder of a llama.cpp GGUF pair (the `mmproj` file, `general.architecture = clip`):
//! an image's tiles in, embeddings in the language model's space out, one row per image token.
//!
//! SmolVLM (projector `idefics3`), as llama.cpp's mtmd builds it (clip.cpp's siglip graph): each
//! tile is cut into p × p patches, row by row; a patch (flattened channel, row, column) goes through
//! the patch embedding, plus its position's embedding; then pre-norm ViT blocks (LayerNorm,
//! unmasked multi-head attention, LayerNorm, tanh-GELU MLP, all with biases), a last LayerNorm,
//! the pixel shuffle (each s × s square of patches becomes one token: rows outer, columns inner),
//! and a linear projection. Every weight is f32 on the device (Burn's ops: the CPU reference).

use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{Gguf, TensorInfo};

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

/// `x · Wᵀ + b`.
struct Dense {
    /// `[out, in]`.
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
}

impl Dense {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let y = x.matmul(self.weight.clone().transpose());
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        }
    }
}

struct VitBlock {
    ln1: LayerNorm,
    q: Dense,
    k: Dense,
    v: Dense,
    out: Dense,
    ln2: LayerNorm,
    up: Dense,
    down: Dense,
}

/// A loaded vision encoder.
pub struct VisionEncoder {
    pub config: VisionConfig,
    /// `[n_embd, 3 · p²]`, columns in (channel, row, column) order.
    patch_embd: Dense,
    /// `[patches, n_embd]`.
    position_embd: Tensor<2>,
    blocks: Vec<VitBlock>,
    post_ln: LayerNorm,
    projection: Dense,
    device: Device,
}

/// Reads the mmproj file's tensors as f32.
struct Weights<'a> {
    gguf: &'a Gguf,
    file: &'a [u8],
    device: &'a Device,
}

impl Weights<'_> {
    fn info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.gguf.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))
    }

    fn values(&self, name: &str, expected: &[u64]) -> Result<Vec<f32>, ModelError> {
        let info = self.info(name)?;
        if info.dims != expected {
            return Err(ModelError::WrongShape { name: name.into(), expected: expected.to_vec(), found: info.dims.clone() });
        }
        let bytes = self.gguf.tensor_data(self.file, info)?;
        Ok(burrow_gguf::dequantize_to_vec(info.ty, bytes, info.n_elements as usize)?)
    }

    fn vector(&self, name: &str, n: usize) -> Result<Tensor<1>, ModelError> {
        Ok(Tensor::from_data(TensorData::new(self.values(name, &[n as u64])?, [n]), self.device))
    }

    /// A GGUF matrix (ne0 = `cols`, the input) as `[rows, cols]`.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor<2>, ModelError> {
        Ok(Tensor::from_data(TensorData::new(self.values(name, &[cols as u64, rows as u64])?, [rows, cols]), self.device))
    }

    fn dense(&self, prefix: &str, rows: usize, cols: usize, bias: bool) -> Result<Dense, ModelError> {
        Ok(Dense {
            weight: self.matrix(&format!("{prefix}.weight"), rows, cols)?,
            bias: if bias { Some(self.vector(&format!("{prefix}.bias"), rows)?) } else { None },
        })
    }

    fn layer_norm(&self, prefix: &str, n: usize, eps: f32) -> Result<LayerNorm, ModelError> {
        Ok(LayerNorm { weight: self.vector(&format!("{prefix}.weight"), n)?, bias: self.vector(&format!("{prefix}.bias"), n)?, eps })
    }
}

impl VisionEncoder {
    /// The encoder of the mmproj file `file` (parsed as `gguf`), on `device`.
    pub fn load(gguf: &Gguf, file: &[u8], device: &Device) -> Result<Self, ModelError> {
        let config = VisionConfig::from_gguf(gguf)?;
        let w = Weights { gguf, file, device };
        let (e, ff, p) = (config.n_embd, config.n_ff, config.patch_size);
        let patch_len = 3 * p * p;
        let patch_embd = Dense {
            // GGUF [p, p, 3, E]: per output, channel-major then row then column.
            weight: Tensor::from_data(TensorData::new(w.values("v.patch_embd.weight", &[p as u64, p as u64, 3, e as u64])?, [e, patch_len]), device),
            bias: Some(w.vector("v.patch_embd.bias", e)?),
        };
        let n_pos = config.patches_per_side().pow(2);
        let position_embd = w.matrix("v.position_embd.weight", n_pos, e)?;
        let blocks = (0..config.n_layer)
            .map(|i| {
                let b = format!("v.blk.{i}");
                Ok(VitBlock {
                    ln1: w.layer_norm(&format!("{b}.ln1"), e, config.eps)?,
                    q: w.dense(&format!("{b}.attn_q"), e, e, true)?,
                    k: w.dense(&format!("{b}.attn_k"), e, e, true)?,
                    v: w.dense(&format!("{b}.attn_v"), e, e, true)?,
                    out: w.dense(&format!("{b}.attn_out"), e, e, true)?,
                    ln2: w.layer_norm(&format!("{b}.ln2"), e, config.eps)?,
                    up: w.dense(&format!("{b}.ffn_up"), ff, e, true)?,
                    down: w.dense(&format!("{b}.ffn_down"), e, ff, true)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let post_ln = w.layer_norm("v.post_ln", e, config.eps)?;
        let merged = e * config.scale_factor * config.scale_factor;
        let projection = w.dense("mm.model.fc", config.projection_dim, merged, false)?;
        Ok(VisionEncoder { config, patch_embd, position_embd, blocks, post_ln, projection, device: device.clone() })
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
        let mut x = self.patch_embd.forward(patches) + self.position_embd.clone();
        for block in &self.blocks {
            x = x.clone() + block.out.forward(self.attention(block, block.ln1.forward(x)));
            x = x.clone() + block.down.forward(gelu_approximate(block.up.forward(block.ln2.forward(x))));
        }
        let x = self.post_ln.forward(x);
        Ok(self.projection.forward(self.pixel_shuffle(x)))
    }

    /// Unmasked multi-head attention over the tile's patches.
    fn attention(&self, block: &VitBlock, x: Tensor<2>) -> Tensor<2> {
        let c = &self.config;
        let (t, h, d) = (x.dims()[0], c.n_head, c.n_embd / c.n_head);
        let heads = |m: &Dense| m.forward(x.clone()).reshape([t, h, d]).swap_dims(0, 1);
        let (q, k, v) = (heads(&block.q), heads(&block.k), heads(&block.v));
        let scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(1.0 / (d as f32).sqrt());
        softmax(scores, 2).matmul(v).swap_dims(0, 1).reshape([t, c.n_embd])
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
