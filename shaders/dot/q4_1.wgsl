// dot/q4_1.wgsl: dot32(row, c, xb) = Σ_j W[row][32c + j] · x[32c + j] for a Q4_1 block (see
// dequant/q4_1.wgsl for the layout), with x[32c ..] at x[xb ..] as vec4s: since
// weight = q·d + m, the sum is d·Σ q·x + m·Σ x (dot/q4_words.wgsl).
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn dot32(row: u32, c: u32, xb: u32) -> f32 {
    let b = row + c * Q4_1_BYTES;
    let s = dot_q4_words(w_u32(b + 4u), w_u32(b + 8u), w_u32(b + 12u), w_u32(b + 16u), xb);
    return w_f16(b) * s.x + w_f16(b + 2u) * s.y;
}
