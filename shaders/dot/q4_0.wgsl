// dot/q4_0.wgsl: dot32(row, c, xb) = Σ_j W[row][32c + j] · x[32c + j] for a Q4_0 block (see
// dequant/q4_0.wgsl for the layout), x[32c ..] at x[xb ..] as vec4s: weight = (q − 8)·d, so the
// sum is d·(Σ q·x − 8·Σ x) (dot/q4_words.wgsl).
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn dot32(row: u32, c: u32, xb: u32) -> f32 {
    let b = row + c * Q4_0_BYTES;
    let s = dot_q4_words(w_u32(b + 2u), w_u32(b + 6u), w_u32(b + 10u), w_u32(b + 14u), xb);
    return w_f16(b) * (s.x - 8.0 * s.y);
}
