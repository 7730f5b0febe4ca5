//! RMSNorm, the fused add + RMSNorm, RoPE with the KV-cache store, the gated activation,
//! attention and the greedy choice of the next token on the machine's wgpu adapter against f64 references on the CPU.

mod common;

use burn::tensor::{Tensor, TensorData};
use burrow_gpu::{
    add_rms_norm, attention, choose, gated, rms_norm, rms_norm_add, rope_kv, AttentionParams, Choice, Columns, Gate, GpuError,
    Kernels, KvCache, RopePairs, RopeParams, RopeRows, StepTokens,
};
use common::{all_kernels, device, Rng};

fn upload<const D: usize>(values: &[f32], shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), &device())
}

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// A step of `t` tokens at positions `start ..` (the ids do not matter to these kernels).
fn step(start: usize, t: usize) -> StepTokens {
    StepTokens::new(&device(), start, &vec![0; t]).unwrap()
}

fn close(got: f32, want: f64, what: &str) {
    close_to(got, want, 1e-5, what);
}

fn close_to(got: f32, want: f64, tolerance: f64, what: &str) {
    assert!((got as f64 - want).abs() <= tolerance * want.abs().max(1.0), "{what}: {got}, expected {want}");
}

#[test]
fn rms_norm_matches_reference() {
    let mut rng = Rng(21);
    // Row counts below, at and above one workgroup; widths of a hidden state and of a head.
    // Row counts below, at and above one workgroup; widths of a hidden state, of a head, and past
    // the GPU family's small workgroup.
    for kernels in all_kernels() {
        for (rows, n) in [(1, 576), (7, 64), (64, 96), (130, 80), (2, 2052)] {
            let x: Vec<f32> = (0..rows * n).map(|_| rng.unit() * 3.0).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.unit() + 1.0).collect();
            let eps = 1e-5;
            let got = read(rms_norm(upload(&x, [rows, n]), &upload(&w, [n]), eps, kernels).unwrap());
            for r in 0..rows {
                let row = &x[r * n..(r + 1) * n];
                let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
                let inv = 1.0 / (ms + eps as f64).sqrt();
                for i in 0..n {
                    close(got[r * n + i], row[i] as f64 * inv * w[i] as f64, &format!("{kernels:?} [{rows}, {n}] row {r} value {i}"));
                }
            }
        }
        let x = upload(&[1.0; 64], [2, 32]);
        assert!(matches!(rms_norm(x, &upload(&[1.0; 16], [16]), 1e-5, kernels), Err(GpuError::Shape(_))));
        // The kernels read vec4s: a width that is not a multiple of 4 is refused, not misread.
        let x = upload(&[1.0; 60], [2, 30]);
        assert!(matches!(rms_norm(x, &upload(&[1.0; 30], [30]), 1e-5, kernels), Err(GpuError::Shape(_))));
    }
    assert!(!burrow_gpu::rms_norm_supports(30) && burrow_gpu::rms_norm_supports(576));
}

/// The f64 attention the kernel must reproduce.
#[allow(clippy::too_many_arguments)]
fn reference(q: &[f32], k: &[f32], v: &[f32], [t, heads, hd]: [usize; 3], kv_heads: usize, n_ctx: usize, start: usize, p: &AttentionParams) -> Vec<f64> {
    let mut out = vec![0f64; t * heads * hd];
    for ti in 0..t {
        let pos = start + ti;
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
        (1, 9, 3, 64, 40, 17, None, None),       // SmolLM2-like decode (fewer positions than chunks)
        (1, 9, 3, 64, 300, 0, None, None),       // decode at the first position
        (1, 9, 3, 64, 300, 250, None, None),     // decode over more positions than chunks
        (1, 8, 2, 32, 300, 299, Some(70), Some(20.0)), // decode: window and soft-cap, last position
        (1, 4, 1, 256, 100, 65, None, None),     // decode: head_dim at the limit
        (7, 9, 3, 64, 16, 0, None, None),        // prefill from an empty cache
        (5, 4, 4, 80, 32, 6, None, None),        // prefill after a cached prefix, no grouping
        (9, 8, 2, 32, 24, 3, Some(4), Some(20.0)), // Gemma 2: sliding window and soft-cap
        (20, 8, 1, 256, 24, 2, None, None),      // head_dim at the limit, more rows than a workgroup
        // Longer than the GPU family's K/V tiles (64 positions of 64 values, 32 of 128, 51 of 80),
        // workgroups of query rows that straddle tokens (groups of 3 in 64 lanes).
        (100, 9, 3, 64, 160, 30, None, None),
        (70, 8, 2, 128, 100, 5, Some(40), Some(20.0)),
        (40, 4, 4, 80, 64, 10, None, None),
    ];
    for kernels in all_kernels() {
        // The GPU family keeps the cache in f16: the reference reads the values it holds.
        let f16 = kernels.is_gpu();
        for (t, heads, kv, hd, n_ctx, start, window, softcap) in cases {
            let q: Vec<f32> = (0..t * heads * hd).map(|_| rng.unit()).collect();
            let k: Vec<f32> = (0..kv * n_ctx * hd).map(|_| rng.unit()).collect();
            let v: Vec<f32> = (0..kv * n_ctx * hd).map(|_| rng.unit()).collect();
            let cache = KvCache::upload(&device(), [kv, n_ctx, hd], &k, &v, f16).unwrap();
            let (k, v) = cache.read().unwrap();
            let p = AttentionParams { window, scale: 1.0 / (hd as f32).sqrt() * 3.0, softcap };
            let got = read(attention(upload(&q, [t, heads, hd]), &cache, &step(start, t), &p, kernels).unwrap());
            let want = reference(&q, &k, &v, [t, heads, hd], kv, n_ctx, start, &p);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                close(g, w, &format!("{kernels:?} T={t} heads={heads}/{kv} hd={hd} start={start} window={window:?} softcap={softcap:?}: out[{i}]"));
            }
        }
        // Positions past the cache, and heads that do not group evenly.
        let z = |s: [usize; 3]| upload(&vec![0.0; s.iter().product()], s);
        let c = |s: [usize; 3]| KvCache::new(&device(), s, f16).unwrap();
        let p = AttentionParams { window: None, scale: 1.0, softcap: None };
        assert!(matches!(attention(z([2, 4, 32]), &c([2, 16, 32]), &step(15, 2), &p, kernels), Err(GpuError::Shape(_))));
        assert!(matches!(attention(z([1, 5, 32]), &c([2, 16, 32]), &step(0, 1), &p, kernels), Err(GpuError::Shape(_))));
        // The step must hold one token per query row.
        assert!(matches!(attention(z([2, 4, 32]), &c([2, 16, 32]), &step(0, 3), &p, kernels), Err(GpuError::Shape(_))));
        // The kernels read heads as vec4s.
        assert!(matches!(KvCache::new(&device(), [2, 16, 30], f16), Err(GpuError::Shape(_))));
    }
    assert!(!burrow_gpu::attention_supports(30) && burrow_gpu::attention_supports(80));
}

#[test]
fn add_rms_norm_matches_reference() {
    let mut rng = Rng(23);
    for kernels in all_kernels() {
        for (rows, n) in [(1, 576), (3, 64), (70, 48)] {
            let x: Vec<f32> = (0..rows * n).map(|_| rng.unit() * 3.0).collect();
            let a: Vec<f32> = (0..rows * n).map(|_| rng.unit()).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.unit() + 1.0).collect();
            let eps = 1e-6;
            let (s, y) = add_rms_norm(upload(&x, [rows, n]), upload(&a, [rows, n]), &upload(&w, [n]), eps, kernels).unwrap();
            let (s, y) = (read(s), read(y));
            // The other order: a sub-layer's output normalized, then added (Gemma's post-norms).
            let z = read(rms_norm_add(upload(&a, [rows, n]), upload(&x, [rows, n]), &upload(&w, [n]), eps, kernels).unwrap());
            for r in 0..rows {
                let sum: Vec<f64> = (0..n).map(|i| x[r * n + i] as f64 + a[r * n + i] as f64).collect();
                let inv = 1.0 / (sum.iter().map(|v| v * v).sum::<f64>() / n as f64 + eps as f64).sqrt();
                let row_a = &a[r * n..(r + 1) * n];
                let inv_a = 1.0 / (row_a.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64 + eps as f64).sqrt();
                for i in 0..n {
                    let what = format!("{kernels:?} [{rows}, {n}] {r},{i}");
                    close(s[r * n + i], sum[i], &format!("{what} sum"));
                    close(y[r * n + i], sum[i] * inv * w[i] as f64, &format!("{what} norm"));
                    close(z[r * n + i], x[r * n + i] as f64 + row_a[i] as f64 * inv_a * w[i] as f64, &format!("{what} norm + add"));
                }
            }
        }
        let x = upload(&[1.0; 64], [2, 32]);
        let a = upload(&[1.0; 32], [1, 32]);
        assert!(matches!(add_rms_norm(x.clone(), a.clone(), &upload(&[1.0; 32], [32]), 1e-5, kernels), Err(GpuError::Shape(_))));
        assert!(matches!(rms_norm_add(x, a, &upload(&[1.0; 32], [32]), 1e-5, kernels), Err(GpuError::Shape(_))));
    }
}

/// The f64 rotation of dimensions (a, b) of one head at `pos`, `θ_i = base^(−2i/n_rot)`.
fn rotate(x: &[f32], pos: usize, n_rot: usize, pairs: RopePairs, base: f64) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for i in 0..n_rot / 2 {
        let (a, b) = match pairs {
            RopePairs::Adjacent => (2 * i, 2 * i + 1),
            RopePairs::Halves => (i, i + n_rot / 2),
        };
        let angle = pos as f64 * base.powf(-2.0 * i as f64 / n_rot as f64);
        let (c, s) = (angle.cos(), angle.sin());
        out[a] = x[a] as f64 * c - x[b] as f64 * s;
        out[b] = x[a] as f64 * s + x[b] as f64 * c;
    }
    out
}

#[test]
fn rope_kv_rotates_and_stores_like_the_reference() {
    let mut rng = Rng(24);
    let base = 10_000f64;
    let cases = [
        // (tokens, heads, kv_heads, head_dim, n_rot, n_ctx, start, pairs, rows)
        (1, 9, 3, 64, 64, 20, 13, RopePairs::Adjacent, RopeRows::Shifted(0)), // SmolLM2-like decode
        (6, 4, 2, 32, 32, 8, 0, RopePairs::Halves, RopeRows::Shifted(0)),     // prefill, Qwen-style pairs
        (3, 2, 1, 48, 24, 10, 5, RopePairs::Halves, RopeRows::Shifted(0)),    // partial rotary (GLM-4)
        (70, 3, 3, 16, 8, 80, 4, RopePairs::Adjacent, RopeRows::Shifted(0)),  // more tokens than a workgroup
        (4, 4, 2, 32, 32, 16, 9, RopePairs::Halves, RopeRows::Shifted(5)),    // text after an M-RoPE image
        (5, 4, 2, 32, 32, 16, 3, RopePairs::Halves, RopeRows::PerToken),      // an M-RoPE image's rows
    ];
    for (t, heads, kv, hd, n_rot, n_ctx, start, pairs, rows) in cases {
        let half = n_rot / 2;
        // Token ti's rotary position, and the positions the table holds, row by row.
        let rotary = |ti: usize| match rows {
            RopeRows::Shifted(shift) => start + ti - shift,
            RopeRows::PerToken => (7 * ti + 2) % n_ctx,
        };
        let table_positions: Vec<usize> = match rows {
            RopeRows::Shifted(_) => (0..n_ctx).collect(),
            RopeRows::PerToken => (0..t).map(rotary).collect(),
        };
        let table: Vec<f32> = table_positions
            .iter()
            .flat_map(|&pos| {
                (0..half).flat_map(move |i| {
                    let angle = pos as f64 * base.powf(-2.0 * i as f64 / n_rot as f64);
                    [angle.cos() as f32, angle.sin() as f32]
                })
            })
            .collect();
        let q: Vec<f32> = (0..t * heads * hd).map(|_| rng.unit()).collect();
        let k: Vec<f32> = (0..t * kv * hd).map(|_| rng.unit()).collect();
        let v: Vec<f32> = (0..t * kv * hd).map(|_| rng.unit()).collect();
        let old_k: Vec<f32> = (0..kv * n_ctx * hd).map(|_| rng.unit()).collect();
        let old_v: Vec<f32> = (0..kv * n_ctx * hd).map(|_| rng.unit()).collect();
        // Q/K norm weights (Qwen3, Gemma 3): the query norm's, then the key norm's.
        let norms: Vec<f32> = (0..2 * hd).map(|_| rng.unit() * 0.5 + 1.0).collect();
        let p = RopeParams { n_rot, pairs, rows };
        let (qd, kd) = (heads * hd, kv * hd);
        // q, k and v as tensors of their own, and as columns of one fused projection's rows
        // (after 4 columns of something else, so that every part starts past column 0).
        let fused: Vec<f32> = (0..t)
            .flat_map(|ti| {
                let row = |x: &[f32], n: usize| x[ti * n..(ti + 1) * n].to_vec();
                [vec![9.0; 4], row(&q, qd), row(&k, kd), row(&v, kd)].concat()
            })
            .collect();
        let parts = Columns::split(upload(&fused, [t, 4 + qd + 2 * kd]), &[4, qd, kd, kd]).unwrap();
        let parts = [parts[1].clone(), parts[2].clone(), parts[3].clone()];
        let separate = [Columns::all(upload(&q, [t, qd])), Columns::all(upload(&k, [t, kd])), Columns::all(upload(&v, [t, kd]))];
        let norm_weights = upload(&norms, [2 * hd]);
        for kernels in all_kernels() {
            // The GPU family takes Q, K and V from one tensor only, and can normalize them; its
            // cache is f16.
            let f16 = kernels.is_gpu();
            let layouts: Vec<(&str, &[Columns; 3], bool)> = if f16 {
                vec![("fused", &parts, false), ("fused, normalized", &parts, true)]
            } else {
                vec![("separate", &separate, false), ("fused", &parts, false)]
            };
            for (layout, [q_in, k_in, v_in], normalized) in layouts {
                let cache = KvCache::upload(&device(), [kv, n_ctx, hd], &old_k, &old_v, f16).unwrap();
                let (old_k, old_v) = cache.read().unwrap();
                let qk_norm = normalized.then_some((&norm_weights, 1e-6f32));
                let table = upload(&table, [table_positions.len(), half, 2]);
                let q_rot = rope_kv(q_in, k_in, v_in, &cache, &table, &step(start, t), &p, qk_norm, kernels).unwrap();
                let (q_rot, (k_cache, v_cache)) = (read(q_rot), cache.read().unwrap());
                let what = format!("{kernels:?} {layout}: T={t} heads={heads}/{kv} hd={hd} n_rot={n_rot} start={start} {pairs:?} {rows:?}");
                // A head as the kernel rotates it: normalized first if asked.
                let head = |x: &[f32], which: usize| -> Vec<f32> {
                    if !normalized {
                        return x.to_vec();
                    }
                    let inv = 1.0 / (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / hd as f64 + 1e-6).sqrt();
                    x.iter().zip(&norms[which * hd..]).map(|(&v, &w)| (v as f64 * inv * w as f64) as f32).collect()
                };
                let tolerance = if f16 { 1e-3 } else { 1e-5 };
                for ti in 0..t {
                    for h in 0..heads {
                        let at = (ti * heads + h) * hd;
                        let want = rotate(&head(&q[at..at + hd], 0), rotary(ti), n_rot, pairs, base);
                        for d in 0..hd {
                            close_to(q_rot[at + d], want[d], 1e-5, &format!("{what}: q[{ti}, {h}, {d}]"));
                        }
                    }
                }
                for g in 0..kv {
                    for pos in 0..n_ctx {
                        let at = (g * n_ctx + pos) * hd;
                        let new = (start..start + t).contains(&pos);
                        let src = ((pos.wrapping_sub(start)) * kv + g) * hd;
                        let want_k = if new { rotate(&head(&k[src..src + hd], 1), rotary(pos - start), n_rot, pairs, base) } else { old_k[at..at + hd].iter().map(|&x| x as f64).collect() };
                        let want_v: Vec<f64> = if new { &v[src..src + hd] } else { &old_v[at..at + hd] }.iter().map(|&x| x as f64).collect();
                        for d in 0..hd {
                            close_to(k_cache[at + d], want_k[d], tolerance, &format!("{what}: k_cache[{g}, {pos}, {d}]"));
                            close_to(v_cache[at + d], want_v[d], tolerance, &format!("{what}: v_cache[{g}, {pos}, {d}]"));
                        }
                    }
                }
            }
        }
    }
    for kernels in all_kernels() {
        let f16 = kernels.is_gpu();
        // Positions past the cache are refused.
        let z = |s: [usize; 3]| upload(&vec![0.0; s.iter().product()], s);
        let c = |s: [usize; 3]| KvCache::new(&device(), s, f16).unwrap();
        let cols = |t: usize, widths: &[usize]| {
            let n = widths.iter().sum::<usize>();
            Columns::split(upload(&vec![0.0; t * n], [t, n]), widths).unwrap()
        };
        let p = RopeParams { n_rot: 32, pairs: RopePairs::Adjacent, rows: RopeRows::Shifted(0) };
        let qkv = cols(2, &[64, 32, 32]);
        let past = rope_kv(&qkv[0], &qkv[1], &qkv[2], &c([1, 16, 32]), &z([16, 16, 2]), &step(15, 2), &p, None, kernels);
        assert!(matches!(past, Err(GpuError::Shape(_))));
        // A shift past the slot, and a per-token table of another length, are refused.
        let shifted = RopeParams { rows: RopeRows::Shifted(3), ..p };
        let behind = rope_kv(&qkv[0], &qkv[1], &qkv[2], &c([1, 16, 32]), &z([16, 16, 2]), &step(2, 2), &shifted, None, kernels);
        assert!(matches!(behind, Err(GpuError::Shape(_))));
        let per_token = RopeParams { rows: RopeRows::PerToken, ..p };
        let short = rope_kv(&qkv[0], &qkv[1], &qkv[2], &c([1, 16, 32]), &z([1, 16, 2]), &step(2, 2), &per_token, None, kernels);
        assert!(matches!(short, Err(GpuError::Shape(_))));
        // Queries that are not whole heads are refused.
        let qkv = cols(1, &[40, 32, 32]);
        let ragged = rope_kv(&qkv[0], &qkv[1], &qkv[2], &c([1, 16, 32]), &z([16, 16, 2]), &step(0, 1), &p, None, kernels);
        assert!(matches!(ragged, Err(GpuError::Shape(_))));
        // A cache of the other family's precision is refused.
        let qkv = cols(1, &[64, 32, 32]);
        let other = KvCache::new(&device(), [1, 16, 32], !f16).unwrap();
        assert!(matches!(rope_kv(&qkv[0], &qkv[1], &qkv[2], &other, &z([16, 16, 2]), &step(0, 1), &p, None, kernels), Err(GpuError::Shape(_))));
    }
}

#[test]
fn gated_activations_match_reference() {
    let mut rng = Rng(25);
    for (rows, n) in [(1, 1), (1, 63), (1, 1536), (1, 4099), (3, 100)] {
        let g: Vec<f32> = (0..rows * n).map(|_| rng.unit() * 12.0).collect();
        let u: Vec<f32> = (0..rows * n).map(|_| rng.unit() * 2.0).collect();
        // Gate and up as tensors of their own, and as the two halves of one fused matmul's rows.
        let halves: Vec<f32> = (0..rows).flat_map(|r| [&g[r * n..(r + 1) * n], &u[r * n..(r + 1) * n]].concat()).collect();
        let fused = Columns::split(upload(&halves, [rows, 2 * n]), &[n, n]).unwrap();
        let separate = [Columns::all(upload(&g, [rows, n])), Columns::all(upload(&u, [rows, n]))];
        for (layout, [gate, up]) in [("separate", &separate), ("fused", &[fused[0].clone(), fused[1].clone()])] {
            for act in [Gate::Silu, Gate::GeluTanh] {
                let got = read(gated(gate, up, act).unwrap());
                for i in 0..rows * n {
                    let x = g[i] as f64;
                    let a = match act {
                        Gate::Silu => x / (1.0 + (-x).exp()),
                        Gate::GeluTanh => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh()),
                    };
                    close(got[i], a * u[i] as f64, &format!("{layout} {act:?} [{rows}, {n}] [{i}]"));
                }
            }
        }
    }
    // Extreme gates must not overflow into NaN.
    let one_row = |v: &[f32]| Columns::all(upload(v, [1, v.len()]));
    let got = read(gated(&one_row(&[-1e4, 1e4, -90.0, 90.0]), &one_row(&[1.0; 4]), Gate::GeluTanh).unwrap());
    assert_eq!(got, vec![0.0, 1e4, 0.0, 90.0]);
    let got = read(gated(&one_row(&[-1e4, 1e4]), &one_row(&[1.0; 2]), Gate::Silu).unwrap());
    assert!(got[0].abs() < 1e-30 && got[1] == 1e4, "{got:?}");
    assert!(matches!(gated(&one_row(&[1.0; 3]), &one_row(&[1.0; 4]), Gate::Silu), Err(GpuError::Shape(_))));
}

/// The CPU sampler's greedy choice: the repetition penalty, then the first maximum.
fn greedy_reference(logits: &[f32], penalized: &[u32], penalty: f32) -> u32 {
    let mut l = logits.to_vec();
    for &id in penalized {
        let v = l[id as usize];
        l[id as usize] = if v > 0.0 { v / penalty } else { v * penalty };
    }
    let mut best = 0;
    for i in 0..l.len() {
        if l[i] > l[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy choice on the device of `logits` with the repetition penalty on `penalized`.
fn greedy(logits: Tensor<1>, penalized: &[u32], penalty: f32, kernels: Kernels) -> u32 {
    let step = StepTokens::with_choice(&device(), 0, &[0], 0.0, penalized).unwrap();
    let id = choose(logits, &step, &Choice::greedy(penalty), kernels).unwrap();
    id.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()[0] as u32
}

#[test]
fn greedy_choice_matches_the_cpu_sampler() {
    for kernels in all_kernels() {
    let mut rng = Rng(26);
    for n in [1, 5, 255, 257, 49_152, 151_936] {
        let logits: Vec<f32> = (0..n).map(|_| rng.unit() * 10.0).collect();
        assert_eq!(greedy(upload(&logits, [n]), &[], 1.0, kernels), greedy_reference(&logits, &[], 1.0), "{kernels:?} n={n}");
        // Penalize the winner and some others: the choice must move as on the CPU.
        let first = greedy_reference(&logits, &[], 1.0);
        let penalized: Vec<u32> = [first, 0, (n as u32) / 2].into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let want = greedy_reference(&logits, &penalized, 1.3);
        assert_eq!(greedy(upload(&logits, [n]), &penalized, 1.3, kernels), want, "n={n} with a penalty");
        // A row another tensor still holds: penalized as a copy, the other tensor unchanged.
        let shared = upload(&logits, [n]);
        assert_eq!(greedy(shared.clone(), &penalized, 1.3, kernels), want, "n={n}, shared");
        assert_eq!(read(shared), logits, "n={n}: the penalty changed a shared row");
    }
    // Ties: the first maximum wins, also across the kernel's partial scans.
    let mut tie = vec![0f32; 1000];
    for i in [700, 300, 301, 999] {
        tie[i] = 5.0;
    }
    assert_eq!(greedy(upload(&tie, [1000]), &[], 1.0, kernels), 300);
    // All −∞: the first element, as on the CPU.
    assert_eq!(greedy(upload(&[f32::NEG_INFINITY; 9], [9]), &[], 1.0, kernels), 0);
    assert_eq!(greedy(upload(&[-1.0, f32::NAN, -0.5], [3]), &[], 1.0, kernels), 2);
    }
}
