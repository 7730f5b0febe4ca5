//! Rotary position embeddings: the cos/sin tables a session precomputes for every position, and
//! the rotation on Burn's ops (the reference; the kernels rotate in `shaders/rope_kv.wgsl` and
//! `rope_heads.wgsl`).

use burn::tensor::{Device, Int, Tensor, TensorData};
use burrow_gpu::RopeRows;

use crate::config::RopeStyle;

/// Per rotated pair, the divisor of its RoPE frequency, as the file gives them.
#[derive(Clone, Debug, Default)]
pub struct RopeFactors {
    /// For every context (`rope_freqs.weight`, Llama 3 scaling).
    pub all: Option<Vec<f32>>,
    /// Phi-3 "longrope": for contexts up to the original one, and past it.
    pub short: Option<Vec<f32>>,
    pub long: Option<Vec<f32>>,
}

impl RopeFactors {
    /// The factors a session of `n_ctx` positions uses (as llama.cpp chooses them: the long ones
    /// once the context exceeds the original).
    pub(crate) fn for_context(&self, n_ctx: usize, n_ctx_orig: usize) -> Option<&[f32]> {
        let longrope = if n_ctx > n_ctx_orig { &self.long } else { &self.short };
        self.all.as_deref().or(longrope.as_deref())
    }
}

/// cos/sin of every position for one RoPE configuration.
pub(crate) enum RopeTable {
    /// `[n_ctx, n_rot / 2]` each, for Burn's ops.
    Split { cos: Tensor<2>, sin: Tensor<2> },
    /// `[n_ctx, n_rot / 2, 2]`, (cos, sin) interleaved, for the kernels.
    Packed(Tensor<3>),
}

/// Where one step's tokens are rotated.
pub(crate) enum StepPositions<'a> {
    /// Consecutive positions from this one (text, and images placed like text).
    From(usize),
    /// Per token, its (time, row, column) positions, and the rotated pairs each turns (M-RoPE).
    Sections(&'a [[u32; 3]], [usize; 3]),
}

/// What attention's RoPE reads for one step and one table.
pub(crate) enum StepRope {
    /// cos and sin of the step's tokens, `[t, 1, n_rot / 2]` each (Burn's ops).
    Split(Tensor<3>, Tensor<3>),
    /// A table laid out for the kernels and which of its rows each token reads.
    Packed(Tensor<3>, RopeRows),
}

impl RopeTable {
    /// What the step's tokens at `positions` read from this table; `slot` is the first token's
    /// cache slot.
    pub(crate) fn for_step(&self, positions: &StepPositions, slot: usize, t: usize, device: &Device) -> StepRope {
        match (self, positions) {
            (RopeTable::Split { cos, sin }, StepPositions::From(start)) => {
                let pick = |m: &Tensor<2>| m.clone().slice([*start..start + t]).unsqueeze_dim::<3>(1);
                StepRope::Split(pick(cos), pick(sin))
            }
            (RopeTable::Split { cos, sin }, StepPositions::Sections(p, s)) => {
                let pick = |m: &Tensor<2>| gather_sections(m, p, *s, device).unsqueeze_dim::<3>(1);
                StepRope::Split(pick(cos), pick(sin))
            }
            (RopeTable::Packed(table), StepPositions::From(start)) => StepRope::Packed(table.clone(), RopeRows::Shifted(slot - start)),
            (RopeTable::Packed(table), StepPositions::Sections(p, s)) => StepRope::Packed(gather_sections(table, p, *s, device), RopeRows::PerToken),
        }
    }
}

/// Rows of a table (`[positions, pairs, …]`) for tokens placed by sections: token i's first
/// `s[0]` pairs from row `p[i][0]`, the next `s[1]` from row `p[i][1]`, the rest from `p[i][2]`.
fn gather_sections<const D: usize>(table: &Tensor<D>, positions: &[[u32; 3]], sections: [usize; 3], device: &Device) -> Tensor<D> {
    let t = positions.len();
    let mut first = 0;
    let mut parts = Vec::with_capacity(3);
    for (s, &width) in sections.iter().enumerate() {
        if width > 0 {
            let rows: Vec<i64> = positions.iter().map(|p| i64::from(p[s])).collect();
            let rows = table.clone().select(0, Tensor::<1, Int>::from_data(TensorData::new(rows, [t]), device));
            parts.push(rows.narrow(1, first, width));
        }
        first += width;
    }
    Tensor::cat(parts, 1)
}

/// What a table is computed from.
pub(crate) struct RopeSpec<'a> {
    pub base: f32,
    pub scale: f32,
    pub n_rot: usize,
    pub factors: Option<&'a [f32]>,
    pub attn_factor: f32,
}

impl RopeTable {
    /// The table of `n_ctx` positions, laid out for the kernels (`packed`) or for Burn's ops.
    pub(crate) fn new(spec: &RopeSpec, n_ctx: usize, packed: bool, device: &Device) -> RopeTable {
        let half = spec.n_rot / 2;
        let (cos, sin) = rope_tables(spec, n_ctx);
        if packed {
            let packed: Vec<f32> = cos.iter().zip(&sin).flat_map(|(&c, &s)| [c, s]).collect();
            return RopeTable::Packed(Tensor::from_data(TensorData::new(packed, [n_ctx, half, 2]), device));
        }
        RopeTable::Split {
            cos: Tensor::from_data(TensorData::new(cos, [n_ctx, half]), device),
            sin: Tensor::from_data(TensorData::new(sin, [n_ctx, half]), device),
        }
    }
}

/// `attn_factor` · cos/sin of `pos · scale · θ_i` for every position and rotated pair,
/// `θ_i = base^(−2i/n_rot) / factor_i`.
fn rope_tables(spec: &RopeSpec, n_ctx: usize) -> (Vec<f32>, Vec<f32>) {
    let half = spec.n_rot / 2;
    let theta: Vec<f64> = (0..half)
        .map(|i| {
            let f = spec.factors.map_or(1.0, |f| f[i] as f64);
            (spec.base as f64).powf(-2.0 * i as f64 / spec.n_rot as f64) / f
        })
        .collect();
    let mut cos = Vec::with_capacity(n_ctx * half);
    let mut sin = Vec::with_capacity(n_ctx * half);
    for p in 0..n_ctx {
        for &th in &theta {
            let a = p as f64 * spec.scale as f64 * th;
            cos.push((a.cos() * spec.attn_factor as f64) as f32);
            sin.push((a.sin() * spec.attn_factor as f64) as f32);
        }
    }
    (cos, sin)
}

/// Rotates the first `n_rot` dimensions of each head of `x: [t, heads, head_dim]`;
/// `cos`/`sin` are `[t, 1, n_rot / 2]`.
pub(crate) fn apply_rope(x: Tensor<3>, cos: &Tensor<3>, sin: &Tensor<3>, n_rot: usize, style: RopeStyle) -> Tensor<3> {
    let [t, heads, hd] = x.dims();
    let half = n_rot / 2;
    let rot = x.clone().slice([0..t, 0..heads, 0..n_rot]);
    let (a, b) = match style {
        RopeStyle::Norm => {
            let pairs = rot.reshape([t, heads, half, 2]);
            (
                pairs.clone().slice([0..t, 0..heads, 0..half, 0..1]).reshape([t, heads, half]),
                pairs.slice([0..t, 0..heads, 0..half, 1..2]).reshape([t, heads, half]),
            )
        }
        RopeStyle::Neox => (rot.clone().slice([0..t, 0..heads, 0..half]), rot.slice([0..t, 0..heads, half..n_rot])),
    };
    let ra = a.clone() * cos.clone() - b.clone() * sin.clone();
    let rb = a * sin.clone() + b * cos.clone();
    let rotated = match style {
        RopeStyle::Norm => Tensor::stack::<4>(vec![ra, rb], 3).reshape([t, heads, n_rot]),
        RopeStyle::Neox => Tensor::cat(vec![ra, rb], 2),
    };
    if n_rot == hd {
        rotated
    } else {
        Tensor::cat(vec![rotated, x.slice([0..t, 0..heads, n_rot..hd])], 2)
    }
}
