// dot/q4_k.wgsl: dot32(row, c, xb) = Σ_j W[row][32c + j] · x[32c + j] for sub-block c % 8 of a
// Q4_K super-block (see dequant/q4_k.wgsl for the layout), x[32c ..] at x[xb ..] as vec4s:
// weight = scale·q − minimum, so the sum is scale·Σ q·x − minimum·Σ x. Unrolled by hand (see
// dot/q4_1.wgsl).
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn dot32(row: u32, c: u32, xb: u32) -> f32 {
    let b = row + (c / 8u) * Q4_K_BYTES;
    let j = c % 8u;
    let dm = k4_sub_block(b, j);
    let qs = b + 16u + 32u * (j / 2u);
    let shift = 4u * (j % 2u);
    let x0 = x[xb];
    let x1 = x[xb + 1u];
    let x2 = x[xb + 2u];
    let x3 = x[xb + 3u];
    let x4 = x[xb + 4u];
    let x5 = x[xb + 5u];
    let x6 = x[xb + 6u];
    let x7 = x[xb + 7u];
    let sq = dot(nibbles_f(w_u32(qs), shift), x0) + dot(nibbles_f(w_u32(qs + 4u), shift), x1)
        + dot(nibbles_f(w_u32(qs + 8u), shift), x2) + dot(nibbles_f(w_u32(qs + 12u), shift), x3)
        + dot(nibbles_f(w_u32(qs + 16u), shift), x4) + dot(nibbles_f(w_u32(qs + 20u), shift), x5)
        + dot(nibbles_f(w_u32(qs + 24u), shift), x6) + dot(nibbles_f(w_u32(qs + 28u), shift), x7);
    let sx = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
    return dm.x * sq - dm.y * (sx.x + sx.y + sx.z + sx.w);
}
