// dot/q4_1.wgsl: dot32(row, c, xb) = Σ_j W[row][32c + j] · x[32c + j] for a Q4_1 block (see
// dequant/q4_1.wgsl for the layout), with x[32c ..] at x[xb ..] as vec4s: since
// weight = q·d + m, the sum is d·Σ q·x + m·Σ x. Unrolled by hand: SwiftShader does not unroll
// the loop and ran it 1.6x slower.
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn dot32(row: u32, c: u32, xb: u32) -> f32 {
    let b = row + c * Q4_1_BYTES;
    let q0 = w_u32(b + 4u);
    let q1 = w_u32(b + 8u);
    let q2 = w_u32(b + 12u);
    let q3 = w_u32(b + 16u);
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
    return w_f16(b) * sq + w_f16(b + 2u) * (sx.x + sx.y + sx.z + sx.w);
}
