// dot_words/q4_1.wgsl: dotw(q, xb) = Σ_j W[32c + j] · x[32c + j] for one Q4_1 block (see
// dequant/q4_1.wgsl for its 20 bytes), given as words: q[i] holds bytes 4i .. 4i + 3 of the
// block. x[32c ..] is at x[xb ..] as vec4s. weight = d·code + m, so the sum is
// d·Σ code·x + m·Σ x (dot_words/q4_words.wgsl).
// Tested through qmatvec_unrolled.wgsl (crates/gpu/tests/qmatmul.rs).

fn dotw(q: array<u32, 5>, xb: u32) -> f32 {
    let dm = unpack2x16float(q[0]);
    let s = dot_q4_words(q[1], q[2], q[3], q[4], xb);
    return dm.x * s.x + dm.y * s.y;
}
