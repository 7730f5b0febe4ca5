//! Choosing the next token from logits: repetition penalty, then top-k, top-p and min-p
//! filters, then temperature, then a seeded draw (llama.cpp's default order). A temperature of
//! 0 (or less) is greedy. The draw walks the kept tokens in id order, which needs no sort: the
//! GPU sampler (`shaders/sample.wgsl`) makes the same choice for the same draw.

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 or less: greedy (argmax after penalties).
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1: off.
    pub top_p: f32,
    /// 0: off. Drops tokens whose probability is below `min_p` × the top probability.
    pub min_p: f32,
    /// 1: off. Logits of recently seen tokens are divided (positive) or multiplied (negative) by it.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// These settings for the choice on the GPU (`burrow_gpu::choose`).
    pub fn device_choice(&self) -> burrow_gpu::Choice {
        burrow_gpu::Choice {
            penalty: self.repeat_penalty,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
        }
    }
}

pub struct Sampler {
    config: SamplerConfig,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = SplitMix64(config.seed);
        Sampler { config, rng }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The ids the repetition penalty applies to, each once: the distinct tokens among the last
    /// `repeat_last_n` of `history` (none when the penalty is off).
    pub fn penalized(&self, history: &[u32]) -> Vec<u32> {
        let c = &self.config;
        if c.repeat_penalty == 1.0 || c.repeat_last_n == 0 {
            return Vec::new();
        }
        let recent = &history[history.len().saturating_sub(c.repeat_last_n)..];
        let mut seen = std::collections::HashSet::with_capacity(recent.len());
        recent.iter().copied().filter(|&id| seen.insert(id)).collect()
    }

    /// Whether the choice is the most likely token (temperature 0 or less), which the GPU can
    /// make without reading the logits back.
    pub fn is_greedy(&self) -> bool {
        self.config.temperature <= 0.0
    }

    /// The random draw in [0, 1) of the next sampled token (not greedy): [`Sampler::sample`]
    /// takes it itself; a choice on the device takes it with the step.
    pub fn next_draw(&mut self) -> f64 {
        self.rng.next_f64()
    }

    /// Picks a token from `logits` (modified in place by the penalty); `history` is every token
    /// of the sequence so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let r = if self.is_greedy() { 0.0 } else { self.next_draw() };
        self.choose(logits, history, r)
    }

    /// [`Sampler::sample`] with the draw `r` (from [`Sampler::next_draw`]; unused when greedy).
    pub fn choose(&self, logits: &mut [f32], history: &[u32], r: f64) -> u32 {
        let c = &self.config;
        for id in self.penalized(history) {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l > 0.0 { *l / c.repeat_penalty } else { *l * c.repeat_penalty };
            }
        }
        if self.is_greedy() {
            argmax(logits)
        } else {
            self.pick(logits, r)
        }
    }

    /// The token the filters and temperature choose from penalized `logits` for the draw `r` in
    /// [0, 1): the kept tokens in id order, the first whose running probability exceeds `r`.
    pub fn pick(&self, logits: &[f32], r: f64) -> u32 {
        let c = &self.config;

        // Candidates sorted by logit, best first (ties by id so a seed reproduces exactly).
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cand.is_empty() {
            return 0;
        }
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            cand.truncate(c.top_k.max(1));
        }
        let probs = softmax(&cand, 1.0);
        if c.top_p < 1.0 {
            let mut sum = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    sum += p;
                    sum >= c.top_p as f64
                })
                .map_or(cand.len(), |i| i + 1);
            cand.truncate(keep.max(1));
        }
        if c.min_p > 0.0 {
            let floor = probs[0] * c.min_p as f64;
            let keep = probs.iter().take(cand.len()).take_while(|&&p| p >= floor).count();
            cand.truncate(keep.max(1));
        }
        let probs = softmax(&cand, c.temperature);
        let mut kept: Vec<(u32, f64)> = cand.iter().map(|&(id, _)| id).zip(probs).collect();
        kept.sort_unstable_by_key(|&(id, _)| id);
        let mut acc = 0.0;
        for &(id, p) in &kept {
            acc += p;
            if r < acc {
                return id;
            }
        }
        // Rounding left the sum short of r: the last token with any probability.
        kept.iter().rev().find(|&&(_, p)| p > 0.0).map_or(kept[kept.len() - 1].0, |&(id, _)| id)
    }
}

/// Index of the largest logit (the first one on ties, like llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Probabilities of sorted candidates at `temperature`, in f64 so long tails sum to 1.
fn softmax(cand: &[(u32, f32)], temperature: f32) -> Vec<f64> {
    let max = cand[0].1 as f64;
    let t = temperature as f64;
    let e: Vec<f64> = cand.iter().map(|&(_, l)| ((l as f64 - max) / t).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

/// Small, fast, seedable generator; identical draws on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32) -> SamplerConfig {
        SamplerConfig { temperature, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(cfg(0.0));
        assert_eq!(s.sample(&mut [0.5, 2.0, 2.0, -1.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_changes_the_greedy_choice() {
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 2.0, ..cfg(0.0) });
        // Token 0 (3.0) was just seen: 3.0 / 2 = 1.5 < 2.0.
        assert_eq!(s.sample(&mut [3.0, 2.0, -1.0], &[0]), 1);
        // Negative logits are multiplied, pushing them further down.
        let mut l = [-1.0, -1.5];
        s.sample(&mut l, &[0]);
        assert_eq!(l, [-2.0, -1.5]);
    }

    #[test]
    fn top_k_one_is_greedy_whatever_the_temperature() {
        let mut s = Sampler::new(SamplerConfig { top_k: 1, ..cfg(5.0) });
        for _ in 0..100 {
            assert_eq!(s.sample(&mut [0.0, 1.0, 0.9, 0.8], &[]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities ≈ [0.665, 0.245, 0.090]: top_p 0.8 keeps two, min_p 0.2 keeps two.
        let logits = [2.0, 1.0, 0.0];
        for c in [SamplerConfig { top_p: 0.8, ..cfg(1.0) }, SamplerConfig { min_p: 0.2, ..cfg(1.0) }] {
            let mut s = Sampler::new(c);
            for _ in 0..500 {
                assert_ne!(s.sample(&mut logits.clone(), &[]), 2);
            }
        }
    }

    #[test]
    fn draws_follow_the_distribution_and_the_seed() {
        // softmax([ln 1, ln 3]) = [0.25, 0.75].
        let logits = [0.0f32, 3f32.ln()];
        let mut s = Sampler::new(SamplerConfig { seed: 7, ..cfg(1.0) });
        let n = 20_000;
        let ones = (0..n).filter(|_| s.sample(&mut logits.clone(), &[]) == 1).count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");

        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg(1.0) });
            (0..50).map(|_| s.sample(&mut [0.0, 0.1, 0.2, 0.3], &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
