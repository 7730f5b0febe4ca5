//! Qwen2.5-VL (projector `qwen2.5vl_merger`), as llama.cpp's mtmd builds it (clip.cpp's qwen2vl
//! graph, tests/vision-fixtures/qwen2vl/README.md): the image, any size in whole 2 × 2 blocks of
//! patches, is cut into p × p patches; each (flattened channel, row, column) goes through the
//! conv3d patch embedding, whose two temporal halves both see the one frame of a still image.
//! The patches are held in merge-block order (2 × 2 blocks row by row, inside a block row by row),
//! which every later step keeps. Pre-norm ViT blocks follow (RMSNorm; attention with q/k/v
//! biases and a 2-D RoPE of each patch's row and column, within windows of the image in most
//! layers and over all of it in every `n_wa_pattern`-th; RMSNorm; SwiGLU MLP with biases), a last
//! RMSNorm, and the merger: each block's 4 patches side by side, a linear layer, tanh-GELU, and a
//! linear layer into the language model's width. The merged tokens come out row by row.

use burn::tensor::activation::{gelu_approximate, silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{Held, VisionBuilder, VisionConfig};
use crate::config::RopeStyle;
use crate::layer::Linear;
use crate::rope::apply_rope;
use crate::ModelError;

/// The encoder's RoPE base (transformers' `VisionRotaryEmbedding`).
const ROPE_BASE: f64 = 10_000.0;
/// Attention scores one pass of whole-image attention holds (f32 values, 64 MB): a large image
/// attends in chunks of query rows, so its memory stays bounded.
const MAX_SCORES: usize = 1 << 24;

/// Every tensor the encoder reads, with its GGUF dims (ne0 first) and how it is held.
pub(super) fn expected_tensors(c: &VisionConfig) -> Vec<(String, Vec<u64>, Held)> {
    let (e, ff, p) = (c.n_embd as u64, c.n_ff as u64, c.patch_size as u64);
    let merged = e * (c.scale_factor * c.scale_factor) as u64;
    let mut t = vec![
        ("v.patch_embd.weight".to_string(), vec![p, p, 3, e], Held::Values),
        ("v.patch_embd.weight.1".to_string(), vec![p, p, 3, e], Held::Values),
    ];
    for i in 0..c.n_layer {
        let b = format!("v.blk.{i}");
        t.push((format!("{b}.ln1.weight"), vec![e], Held::Values));
        t.push((format!("{b}.ln2.weight"), vec![e], Held::Values));
        for (name, cols, rows) in
            [("attn_q", e, e), ("attn_k", e, e), ("attn_v", e, e), ("attn_out", e, e), ("ffn_gate", e, ff), ("ffn_up", e, ff), ("ffn_down", ff, e)]
        {
            t.push((format!("{b}.{name}.weight"), vec![cols, rows], Held::Matrix));
            t.push((format!("{b}.{name}.bias"), vec![rows], Held::Values));
        }
    }
    t.push(("v.post_ln.weight".into(), vec![e], Held::Values));
    for (name, cols, rows) in [("mm.0", merged, merged), ("mm.2", merged, c.projection_dim as u64)] {
        t.push((format!("{name}.weight"), vec![cols, rows], Held::Matrix));
        t.push((format!("{name}.bias"), vec![rows], Held::Values));
    }
    t
}

/// `x / sqrt(mean(x²) + eps) · weight` over the last dimension.
struct RmsNorm {
    weight: Tensor<1>,
    eps: f32,
}

impl RmsNorm {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let inv = x.clone().square().mean_dim(1).add_scalar(self.eps).sqrt().recip();
        x * inv * self.weight.clone().unsqueeze::<2>()
    }
}

struct Block {
    ln1: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Qwen2.5-VL's vision tower and merger.
pub(super) struct Tower {
    /// `[n_embd, 3 · p²]`, columns in (channel, row, column) order: the two temporal halves of
    /// the conv3d kernel summed.
    patch_embd: Tensor<2>,
    blocks: Vec<Block>,
    post_ln: RmsNorm,
    mm0: Linear,
    mm2: Linear,
}

fn rms_norm(b: &mut VisionBuilder, name: &str) -> Result<RmsNorm, ModelError> {
    let (n, eps) = (b.config.n_embd, b.config.eps);
    Ok(RmsNorm { weight: b.tensor(name, [n])?, eps })
}

pub(super) fn build(b: &mut VisionBuilder) -> Result<Tower, ModelError> {
    let (e, p) = (b.config.n_embd, b.config.patch_size);
    // A still image is one frame seen by both halves of the kernel: their sum is the embedding.
    let patch_embd = b.tensor("v.patch_embd.weight", [e, 3 * p * p])? + b.tensor("v.patch_embd.weight.1", [e, 3 * p * p])?;
    let blocks = (0..b.config.n_layer)
        .map(|i| {
            let n = format!("v.blk.{i}");
            Ok(Block {
                ln1: rms_norm(b, &format!("{n}.ln1.weight"))?,
                q: b.linear(&format!("{n}.attn_q"), true)?,
                k: b.linear(&format!("{n}.attn_k"), true)?,
                v: b.linear(&format!("{n}.attn_v"), true)?,
                out: b.linear(&format!("{n}.attn_out"), true)?,
                ln2: rms_norm(b, &format!("{n}.ln2.weight"))?,
                gate: b.linear(&format!("{n}.ffn_gate"), true)?,
                up: b.linear(&format!("{n}.ffn_up"), true)?,
                down: b.linear(&format!("{n}.ffn_down"), true)?,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let post_ln = rms_norm(b, "v.post_ln.weight")?;
    Ok(Tower { patch_embd, blocks, post_ln, mm0: b.linear("mm.0", true)?, mm2: b.linear("mm.2", true)? })
}

impl Tower {
    /// The image's planes (`planar`: R, G, B, each row by row) over `grid` = [rows, columns] of
    /// patches to `[merged tokens, projection_dim]`, the tokens row by row.
    pub(super) fn encode(&self, c: &VisionConfig, planar: &[f32], grid: [usize; 2], device: &Device) -> Result<Tensor<2>, ModelError> {
        let ([gh, gw], p, m, e) = (grid, c.patch_size, c.scale_factor, c.n_embd);
        if gh == 0 || gw == 0 || gh % m != 0 || gw % m != 0 || planar.len() != 3 * gh * gw * p * p {
            return Err(ModelError::Context(format!(
                "an image of {} values over {gh} × {gw} patches of {p} px (whole {m} × {m} blocks of patches, 3 planes)",
                planar.len()
            )));
        }
        let (width, plane) = (gw * p, gh * gw * p * p);
        let n = gh * gw;
        // Patches in merge-block order, each flattened (channel, row, column), and where each is.
        let mut patches = Vec::with_capacity(n * 3 * p * p);
        let mut at = Vec::with_capacity(n);
        for by in 0..gh / m {
            for bx in 0..gw / m {
                for dy in 0..m {
                    for dx in 0..m {
                        let (py, px) = (by * m + dy, bx * m + dx);
                        at.push((py, px));
                        for ch in 0..3 {
                            for ky in 0..p {
                                let from = ch * plane + (py * p + ky) * width + px * p;
                                patches.extend_from_slice(&planar[from..from + p]);
                            }
                        }
                    }
                }
            }
        }
        let patches = Tensor::<2>::from_data(TensorData::new(patches, [n, 3 * p * p]), device);
        let mut x = patches.matmul(self.patch_embd.clone().transpose());
        let (cos, sin) = rope_2d(&at, c.n_embd / c.n_head, device);
        let windows = c.windows.map(|w| (w.full_every, Windows::new(gh / m, gw / m, m, w.side, device)));
        for (i, block) in self.blocks.iter().enumerate() {
            let within = windows.as_ref().filter(|(full_every, _)| (i + 1) % full_every != 0).map(|(_, w)| w);
            x = x.clone() + block.out.forward(attention(c, block, block.ln1.forward(x), &cos, &sin, within)?)?;
            let h = block.ln2.forward(x.clone());
            x = x.clone() + block.down.forward(silu(block.gate.forward(h.clone())?) * block.up.forward(h)?)?;
        }
        // Each merge block's patches side by side (they are consecutive), then the merger.
        let merged = self.post_ln.forward(x).reshape([n / (m * m), m * m * e]);
        self.mm2.forward(gelu_approximate(self.mm0.forward(merged)?))
    }
}

/// cos and sin `[patches, 1, d_head / 2]` of the 2-D RoPE: NeoX pair j (dimensions j and
/// j + d_head / 2) turns by the patch's row · base^(−4j/d_head) for j < d_head / 4, and by its
/// column · base^(−4(j − d_head/4)/d_head) for the others (ggml's vision RoPE: each section's
/// frequencies start again).
fn rope_2d(at: &[(usize, usize)], d_head: usize, device: &Device) -> (Tensor<3>, Tensor<3>) {
    let (half, quarter) = (d_head / 2, d_head / 4);
    let mut cos = Vec::with_capacity(at.len() * half);
    let mut sin = Vec::with_capacity(at.len() * half);
    for &(y, x) in at {
        for j in 0..half {
            let (pos, k) = if j < quarter { (y, j) } else { (x, j - quarter) };
            let angle = pos as f64 * ROPE_BASE.powf(-4.0 * k as f64 / d_head as f64);
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let table = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [at.len(), 1, half]), device);
    (table(cos), table(sin))
}

/// Multi-head attention with the 2-D RoPE over the whole image, or `within` its windows.
fn attention(c: &VisionConfig, block: &Block, x: Tensor<2>, cos: &Tensor<3>, sin: &Tensor<3>, within: Option<&Windows>) -> Result<Tensor<2>, ModelError> {
    let (n, h, d) = (x.dims()[0], c.n_head, c.n_embd / c.n_head);
    let heads = |m: &Linear| Ok::<_, ModelError>(m.forward(x.clone())?.reshape([n, h, d]));
    let q = apply_rope(heads(&block.q)?, cos, sin, d, RopeStyle::Neox);
    let k = apply_rope(heads(&block.k)?, cos, sin, d, RopeStyle::Neox);
    let v = heads(&block.v)?;
    let scale = 1.0 / (d as f32).sqrt();
    Ok(match within {
        Some(windows) => windows.attend(q, k, v, scale),
        None => whole(q, k, v, scale),
    })
}

/// Attention over every patch, `[n, heads, d]` each → `[n, heads · d]`, in chunks of query
/// rows of at most [`MAX_SCORES`] scores.
fn whole(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, scale: f32) -> Tensor<2> {
    let [n, h, d] = q.dims();
    let (q, keys, v) = (q.swap_dims(0, 1), k.swap_dims(0, 1).swap_dims(1, 2), v.swap_dims(0, 1));
    let chunk = (MAX_SCORES / (h * n)).max(1);
    let parts: Vec<Tensor<3>> = (0..n)
        .step_by(chunk)
        .map(|r| {
            let rows = q.clone().slice([0..h, r..(r + chunk).min(n), 0..d]);
            softmax(rows.matmul(keys.clone()).mul_scalar(scale), 2).matmul(v.clone())
        })
        .collect();
    Tensor::cat(parts, 1).swap_dims(0, 1).reshape([n, h * d])
}

/// The image's attention windows: squares of `side` × `side` merged tokens tiled from the top
/// left, row by row (the last ones in a row or column partial), as llama.cpp lays them out. The
/// patches are gathered window by window into slots of equal size (a partial window's spare
/// slots masked out), so all windows attend in one batch.
struct Windows {
    count: usize,
    /// Patches a window holds at most.
    slots: usize,
    /// Per slot, the patch it holds (padding: patch 0).
    gather: Tensor<1, Int>,
    /// Per patch, its slot.
    place: Tensor<1, Int>,
    /// `[count, 1, 1, slots]`: 0 for a patch, −∞ for a spare slot.
    mask: Tensor<4>,
}

impl Windows {
    /// For an image of `rows` × `cols` merged tokens of `m` × `m` patches, in merge-block order.
    fn new(rows: usize, cols: usize, m: usize, side: usize, device: &Device) -> Windows {
        let (across, per_block) = (cols.div_ceil(side), m * m);
        let count = rows.div_ceil(side) * across;
        let slots = side * side * per_block;
        let n = rows * cols * per_block;
        let mut gather = vec![0i64; count * slots];
        let mut mask = vec![f32::NEG_INFINITY; count * slots];
        let mut place = vec![0i64; n];
        let mut filled = vec![0usize; count];
        for (patch, placed) in place.iter_mut().enumerate() {
            let block = patch / per_block;
            let window = (block / cols / side) * across + (block % cols) / side;
            let slot = window * slots + filled[window];
            filled[window] += 1;
            gather[slot] = patch as i64;
            mask[slot] = 0.0;
            *placed = slot as i64;
        }
        let ints = |v: Vec<i64>| {
            let len = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [len]), device)
        };
        Windows {
            count,
            slots,
            gather: ints(gather),
            place: ints(place),
            mask: Tensor::from_data(TensorData::new(mask, [count, 1, 1, slots]), device),
        }
    }

    /// Attention within each window, `[n, heads, d]` each → `[n, heads · d]`.
    fn attend(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, scale: f32) -> Tensor<2> {
        let [_, h, d] = q.dims();
        let (count, slots) = (self.count, self.slots);
        let by_window = |x: Tensor<3>| x.select(0, self.gather.clone()).reshape([count, slots, h, d]).swap_dims(1, 2);
        let scores = by_window(q).matmul(by_window(k).swap_dims(2, 3)).mul_scalar(scale) + self.mask.clone();
        let out = softmax(scores, 3).matmul(by_window(v)); // [count, heads, slots, d]
        out.swap_dims(1, 2).reshape([count * slots, h * d]).select(0, self.place.clone())
    }
}
