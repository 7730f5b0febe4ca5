// dot_words/q4_0.wgsl: dotw(q, xb) = Σ_j W[32c + j] · x[32c + j] for one Q4_0 block (see
// dequant/q4_0.wgsl for its 18 bytes), given as words: q[i] holds bytes 4i .. 4i + 3 of the block
// (q[4] only its first two). x[32c ..] is at x[xb ..] as vec4s. weight = d·(code − 8).
// Tested through qmatvec_unrolled.wgsl (crates/gpu/tests/qmatmul.rs).

fn dotw(q: array<u32, 5>, xb: u32) -> f32 {
    let s = dot_q4_words(funnel16(q[0], q[1]), funnel16(q[1], q[2]), funnel16(q[2], q[3]),
        funnel16(q[3], q[4]), xb);
    return unpack2x16float(q[0]).x * (s.x - 8.0 * s.y);
}
