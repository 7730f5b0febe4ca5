//! Choosing the next token on the GPU (`burrow_gpu::choose`: shaders/argmax.wgsl or
//! argmax_rows.wgsl, and shaders/sample.wgsl in its one-invocation and workgroup forms) against the
//! CPU sampler (`Sampler::choose`) for the same random draw, by both kernel families, on the
//! machine's wgpu adapter (lavapipe in CI): random logits with ties, every filter alone and
//! combined, the repetition penalty, and draws at both ends of [0, 1).

use std::sync::OnceLock;

use burn::tensor::{Device, Int, Tensor, TensorData};
use burrow_gpu::{choose, Kernels, StepTokens};
use burrow_model::{Sampler, SamplerConfig};

fn device() -> Device {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
        .clone()
        .unwrap_or_else(|e| panic!("no wgpu adapter ({e}): apt-get install -y mesa-vulkan-drivers"))
}

/// splitmix64, for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The GPU's choice from `logits` with `history` penalized, for the draw `r`, by `kernels`' family.
fn on_gpu_with(logits: &[f32], config: &SamplerConfig, history: &[u32], r: f32, kernels: Kernels) -> u32 {
    let sampler = Sampler::new(config.clone());
    let step = StepTokens::with_choice(&device(), 0, &[0], r, &sampler.penalized(history)).unwrap();
    let choice = config.device_choice();
    let row = Tensor::<1>::from_data(TensorData::new(logits.to_vec(), [logits.len()]), &device());
    let id: Tensor<1, Int> = choose(row, &step, &choice, kernels).unwrap();
    id.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()[0] as u32
}

fn on_cpu(logits: &[f32], config: &SamplerConfig, history: &[u32], r: f64) -> u32 {
    Sampler::new(config.clone()).choose(&mut logits.to_vec(), history, r)
}

/// The GPU sums in f32 where the CPU sums in f64: a draw within `SLACK` of a boundary between two
/// tokens' intervals may land on either side.
const SLACK: f64 = 1e-4;

fn check_family(logits: &[f32], config: &SamplerConfig, history: &[u32], r: f32, kernels: Kernels) {
    let gpu = on_gpu_with(logits, config, history, r, kernels);
    let r = f64::from(r);
    let cpu = on_cpu(logits, config, history, r);
    if gpu != cpu {
        // The choice moves up the kept ids in id order as r grows.
        let near = [on_cpu(logits, config, history, (r - SLACK).max(0.0)), on_cpu(logits, config, history, r + SLACK)];
        assert!(
            (near[0]..=near[1]).contains(&gpu),
            "n={} {config:?} {kernels:?} r={r}: the GPU chose {gpu} (logit {}), the CPU {cpu} (logit {}), and {near:?} near r",
            logits.len(),
            logits[gpu as usize],
            logits[cpu as usize]
        );
    }
}

fn random_logits(n: usize, rng: &mut Rng, ties: bool) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let l = (rng.unit() - 0.5) * 12.0;
            // Half steps make many exact ties, which the order settles by id.
            if ties { (l * 2.0).round() / 2.0 } else { l }
        })
        .collect()
}

#[test]
fn sampling_matches_the_cpu_sampler() {
    let mut rng = Rng(31);
    let base = SamplerConfig { temperature: 0.8, repeat_last_n: 1 << 20, ..Default::default() };
    let configs = [
        base.clone(),
        SamplerConfig { temperature: 1.7, ..base.clone() },
        SamplerConfig { top_k: 1, ..base.clone() },
        SamplerConfig { top_k: 5, ..base.clone() },
        SamplerConfig { top_k: 40, top_p: 0.9, min_p: 0.05, ..base.clone() },
        SamplerConfig { top_p: 0.5, ..base.clone() },
        SamplerConfig { top_p: 0.0, ..base.clone() },
        SamplerConfig { min_p: 0.1, ..base.clone() },
        SamplerConfig { min_p: 2.0, ..base.clone() },
        SamplerConfig { top_k: 3, repeat_penalty: 1.5, ..base.clone() },
    ];
    for (n, ties) in [(1, false), (7, true), (1000, false), (1000, true), (49_152, false)] {
        let logits = random_logits(n, &mut rng, ties);
        let history: Vec<u32> = (0..8).map(|_| (rng.next() % n as u64) as u32).collect();
        for config in &configs {
            for r in [0.0, rng.unit(), rng.unit(), 0.999_999] {
                for kernels in [Kernels::cpu_adapter(), Kernels::gpu(false)] {
                    check_family(&logits, config, &history, r, kernels);
                }
            }
        }
    }
}

/// A top-k larger than the row, NaN logits (never chosen) and −∞ ones (kept, with no weight).
#[test]
fn edge_rows_match_the_cpu_sampler() {
    let config = SamplerConfig { temperature: 1.0, top_k: 100, ..Default::default() };
    let row = [f32::NAN, -1.0, f32::NEG_INFINITY, 2.0, f32::NAN, 2.0, -3.0];
    for kernels in [Kernels::cpu_adapter(), Kernels::gpu(false)] {
        for r in [0.0, 0.3, 0.6, 0.9, 0.999_999] {
            let gpu = on_gpu_with(&row, &config, &[], r, kernels);
            assert!(!row[gpu as usize].is_nan() && row[gpu as usize] != f32::NEG_INFINITY, "{kernels:?} r={r}: chose {gpu}");
            check_family(&row, &config, &[], r, kernels);
        }
    }
}

/// Over many draws the choices follow the softmax at the temperature: a statistical check that
/// needs no CPU sampler (three tokens, 1000 draws, each frequency within 0.05 of its probability: 3.7 standard deviations).
#[test]
fn draws_follow_the_distribution() {
    let logits = [1.0f32, 0.0, 2.0];
    let config = SamplerConfig { temperature: 1.0, ..Default::default() };
    let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l).exp()).collect();
    let total: f64 = weights.iter().sum();
    for kernels in [Kernels::cpu_adapter(), Kernels::gpu(false)] {
        let mut counts = [0usize; 3];
        let mut rng = Rng(5);
        let draws = 1000;
        for _ in 0..draws {
            counts[on_gpu_with(&logits, &config, &[], rng.unit(), kernels) as usize] += 1;
        }
        for i in 0..3 {
            let freq = counts[i] as f64 / draws as f64;
            assert!((freq - weights[i] / total).abs() < 0.05, "{kernels:?} token {i}: {freq} vs {}", weights[i] / total);
        }
    }
}
