//! RMSNorm and attention kernels on the machine's wgpu adapter against f64 references on the CPU.

mod common;

use burn::tensor::{Tensor, TensorData};
use burrow_gpu::{attention, rms_norm, AttentionParams, GpuError};
use common::{device, Rng};

fn upload<const D: usize>(values: &[f32], shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), &device())
}

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn close(got: f32, want: f64, what: &str) {
    assert!((got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0), "{what}: {got}, expected {want}");
}

#[test]
fn rms_norm_matches_reference() {
    let mut rng = Rng(21);
    // Row counts below, at and above one workgroup; widths of a hidden state and of a head.
    for (rows, n) in [(1, 576), (7, 64), (64, 96), (130, 80)] {
        let x: Vec<f32> = (0..rows * n).map(|_| rng.unit() * 3.0).collect();
        let w: Vec<f32> = (0..n).map(|_| rng.unit() + 1.0).collect();
        let eps = 1e-5;
        let got = read(rms_norm(upload(&x, [rows, n]), &upload(&w, [n]), eps).unwrap());
        for r in 0..rows {
            let row = &x[r * n..(r + 1) * n];
            let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            for i in 0..n {
                close(got[r * n + i], row[i] as f64 * inv * w[i] as f64, &format!("[{rows}, {n}] row {r} value {i}"));
            }
        }
    }
    let x = upload(&[1.0; 64], [2, 32]);
    assert!(matches!(rms_norm(x, &upload(&[1.0; 16], [16]), 1e-5), Err(GpuError::Shape(_))));
}

/// The f64 attention the kernel must reproduce.
#[allow(clippy::too_many_arguments)]
fn reference(q: &[f32], k: &[f32], v: &[f32], [t, heads, hd]: [usize; 3], kv_heads: usize, n_ctx: usize, p: &AttentionParams) -> Vec<f64> {
    let mut out = vec![0f64; t * heads * hd];
    for ti in 0..t {
        let pos = p.start + ti;
        for h in 0..heads {
            let g = h / (heads / kv_heads);
            let visible: Vec<usize> = (0..=pos).filter(|&j| p.window.is_none_or(|w| pos - j < w)).collect();
            let scores: Vec<f64> = visible
                .iter()
                .map(|&j| {
                    let dot: f64 = (0..hd).map(|d| q[(ti * heads + h) * hd + d] as f64 * k[(g * n_ctx + j) * hd + d] as f64).sum();
                    let s = dot * p.scale as f64;
                    p.softcap.map_or(s, |c| (s / c as f64).tanh() * c as f64)
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (&j, ej) in visible.iter().zip(&e) {
                for d in 0..hd {
                    out[(ti * heads + h) * hd + d] += ej / sum * v[(g * n_ctx + j) * hd + d] as f64;
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_reference() {
    let mut rng = Rng(22);
    let cases = [
        // (tokens, heads, kv_heads, head_dim, n_ctx, start, window, softcap)
        (1, 9, 3, 64, 40, 17, None, None),       // SmolLM2-like decode
        (7, 9, 3, 64, 16, 0, None, None),        // prefill from an empty cache
        (5, 4, 4, 80, 32, 6, None, None),        // prefill after a cached prefix, no grouping
        (9, 8, 2, 32, 24, 3, Some(4), Some(20.0)), // Gemma 2: sliding window and soft-cap
        (20, 8, 1, 256, 24, 2, None, None),      // head_dim at the limit, more rows than a workgroup
    ];
    for (t, heads, kv, hd, n_ctx, start, window, softcap) in cases {
        let q: Vec<f32> = (0..t * heads * hd).map(|_| rng.unit()).collect();
        let k: Vec<f32> = (0..kv * n_ctx * hd).map(|_| rng.unit()).collect();
        let v: Vec<f32> = (0..kv * n_ctx * hd).map(|_| rng.unit()).collect();
        let p = AttentionParams { start, window, scale: 1.0 / (hd as f32).sqrt() * 3.0, softcap };
        let got = read(attention(upload(&q, [t, heads, hd]), &upload(&k, [kv, n_ctx, hd]), &upload(&v, [kv, n_ctx, hd]), &p).unwrap());
        let want = reference(&q, &k, &v, [t, heads, hd], kv, n_ctx, &p);
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            close(g, w, &format!("T={t} heads={heads}/{kv} hd={hd} start={start} window={window:?} softcap={softcap:?}: out[{i}]"));
        }
    }
    // Positions past the cache, and heads that do not group evenly.
    let z = |s: [usize; 3]| upload(&vec![0.0; s.iter().product()], s);
    let p = AttentionParams { start: 15, window: None, scale: 1.0, softcap: None };
    assert!(matches!(attention(z([2, 4, 32]), &z([2, 16, 32]), &z([2, 16, 32]), &p), Err(GpuError::Shape(_))));
    let p = AttentionParams { start: 0, ..p };
    assert!(matches!(attention(z([1, 5, 32]), &z([2, 16, 32]), &z([2, 16, 32]), &p), Err(GpuError::Shape(_))));
}
