// dot/q4_0.wgsl: dot32(row, c, xb) = Σ_j W[row][32c + j] · x[32c + j] for a Q4_0 block (see
// dequant/q4_0.wgsl for the layout), x[32c ..] at x[xb ..] as vec4s: weight = (q − 8)·d, so the
// sum is d·(Σ q·x − 8·Σ x). Unrolled by hand (see dot/q4_1.wgsl).
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn dot32(row: u32, c: u32, xb: u32) -> f32 {
    let b = row + c * Q4_0_BYTES;
    let q0 = w_u32(b + 2u);
    let q1 = w_u32(b + 6u);
    let q2 = w_u32(b + 10u);
    let q3 = w_u32(b + 14u);
    let x0 = x[xb];
    let x1 = x[xb + 1u];
    let x2 = x[xb + 2u];
    let x3 = x[xb + 3u];
    let x4 = x[xb + 4u];
    let x5 = x[xb + 5u];
    let x6 = x[xb + 6u];
    let x7 = x[xb + 7u];
    let sq = dot(nibbles_f(q0, 0u), x0) + dot(nibbles_f(q1, 0u), x1) + dot(nibbles_f(q2, 0u), x2)
        + dot(nibbles_f(q3, 0u), x3) + dot(nibbles_f(q0, 4u), x4) + dot(nibbles_f(q1, 4u), x5)
        + dot(nibbles_f(q2, 4u), x6) + dot(nibbles_f(q3, 4u), x7);
    let sx = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
    return w_f16(b) * (sq - 8.0 * (sx.x + sx.y + sx.z + sx.w));
}
