//! SmolVLM (projector `idefics3`), as llama.cpp's mtmd builds it (clip.cpp's siglip graph): each
//! tile is cut into p × p patches, row by row; a patch (flattened channel, row, column) goes through
//! the patch embedding, plus its position's embedding; then pre-norm ViT blocks (LayerNorm,
//! unmasked multi-head attention, LayerNorm, tanh-GELU MLP, all with biases), a last LayerNorm,
//! the pixel shuffle (each s × s square of patches becomes one token: rows outer, columns inner),
//! and a linear projection.

use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Held, VisionBuilder, VisionConfig};
use crate::layer::Linear;
use crate::ModelError;

/// Every tensor the encoder reads, with its GGUF dims (ne0 first) and how it is held.
pub(super) fn expected_tensors(c: &VisionConfig) -> Vec<(String, Vec<u64>, Held)> {
    let (e, ff, p) = (c.n_embd as u64, c.n_ff as u64, c.patch_size as u64);
    let mut t = vec![
        ("v.patch_embd.weight".to_string(), vec![p, p, 3, e], Held::Values),
        ("v.patch_embd.bias".to_string(), vec![e], Held::Values),
        ("v.position_embd.weight".to_string(), vec![e, c.patches_per_side().pow(2) as u64], Held::Values),
    ];
    for i in 0..c.n_layer {
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
    let merged = e * (c.scale_factor * c.scale_factor) as u64;
    t.push(("mm.model.fc.weight".into(), vec![merged, c.projection_dim as u64], Held::Matrix));
    t
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

/// SmolVLM's SigLIP encoder and projection.
pub(super) struct Siglip {
    /// `[n_embd, 3 · p²]`, columns in (channel, row, column) order.
    patch_embd: Tensor<2>,
    patch_bias: Tensor<1>,
    /// `[patches, n_embd]`.
    position_embd: Tensor<2>,
    blocks: Vec<VitBlock>,
    post_ln: LayerNorm,
    projection: Linear,
}

fn layer_norm(b: &mut VisionBuilder, prefix: &str) -> Result<LayerNorm, ModelError> {
    let (n, eps) = (b.config.n_embd, b.config.eps);
    Ok(LayerNorm { weight: b.tensor(&format!("{prefix}.weight"), [n])?, bias: b.tensor(&format!("{prefix}.bias"), [n])?, eps })
}

pub(super) fn build(b: &mut VisionBuilder) -> Result<Siglip, ModelError> {
    let config = b.config.clone();
    let (e, p) = (config.n_embd, config.patch_size);
    // GGUF [p, p, 3, E]: per output, channel-major then row then column.
    let patch_embd = b.tensor("v.patch_embd.weight", [e, 3 * p * p])?;
    let patch_bias = b.tensor("v.patch_embd.bias", [e])?;
    let position_embd = b.tensor("v.position_embd.weight", [config.patches_per_side().pow(2), e])?;
    let blocks = (0..config.n_layer)
        .map(|i| {
            let n = format!("v.blk.{i}");
            Ok(VitBlock {
                ln1: layer_norm(b, &format!("{n}.ln1"))?,
                q: b.linear(&format!("{n}.attn_q"), true)?,
                k: b.linear(&format!("{n}.attn_k"), true)?,
                v: b.linear(&format!("{n}.attn_v"), true)?,
                out: b.linear(&format!("{n}.attn_out"), true)?,
                ln2: layer_norm(b, &format!("{n}.ln2"))?,
                up: b.linear(&format!("{n}.ffn_up"), true)?,
                down: b.linear(&format!("{n}.ffn_down"), true)?,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let post_ln = layer_norm(b, "v.post_ln")?;
    let projection = b.linear("mm.model.fc", false)?;
    Ok(Siglip { patch_embd, patch_bias, position_embd, blocks, post_ln, projection })
}

impl Siglip {
    /// One tile (`image_size`² pixels of normalized `[r, g, b]`, rows top to bottom) to its
    /// `[tokens_per_tile, projection_dim]` embeddings.
    pub(super) fn encode_tile(&self, c: &VisionConfig, pixels: &[f32], device: &Device) -> Result<Tensor<2>, ModelError> {
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
        let patches = Tensor::<2>::from_data(TensorData::new(patches, [n * n, patch_len]), device);
        let mut x = patches.matmul(self.patch_embd.clone().transpose()) + self.patch_bias.clone().unsqueeze::<2>() + self.position_embd.clone();
        for block in &self.blocks {
            x = x.clone() + block.out.forward(attention(c, block, block.ln1.forward(x))?)?;
            x = x.clone() + block.down.forward(gelu_approximate(block.up.forward(block.ln2.forward(x))?))?;
        }
        let x = self.post_ln.forward(x);
        self.projection.forward(pixel_shuffle(c, x))
    }
}

/// Unmasked multi-head attention over the tile's patches.
fn attention(c: &VisionConfig, block: &VitBlock, x: Tensor<2>) -> Result<Tensor<2>, ModelError> {
    let (t, h, d) = (x.dims()[0], c.n_head, c.n_embd / c.n_head);
    let heads = |m: &Linear| Ok::<_, ModelError>(m.forward(x.clone())?.reshape([t, h, d]).swap_dims(0, 1));
    let (q, k, v) = (heads(&block.q)?, heads(&block.k)?, heads(&block.v)?);
    let scores = q.matmul(k.swap_dims(1, 2)).mul_scalar(1.0 / (d as f32).sqrt());
    Ok(softmax(scores, 2).matmul(v).swap_dims(0, 1).reshape([t, c.n_embd]))
}

/// `[n², E]` → `[(n/s)², s² · E]`: token (row, column) is patches (row·s + dy, column·s + dx)
/// for dy then dx in 0..s, side by side.
fn pixel_shuffle(c: &VisionConfig, x: Tensor<2>) -> Tensor<2> {
    let (n, s, e) = (c.patches_per_side(), c.scale_factor, c.n_embd);
    let m = n / s;
    // [yg, dy, xg, dx, E] → [yg, xg, dy, dx, E]
    x.reshape([m, s, m, s * e]).swap_dims(1, 2).reshape([m * m, s * s * e])
}
