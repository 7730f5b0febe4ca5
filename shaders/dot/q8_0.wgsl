// dot/q8_0.wgsl: dot32(row, c, xb) = Σ_j W[row][32c + j] · x[32c + j] for a Q8_0 block (see
// dequant/q8_0.wgsl for the layout), x[32c ..] at x[xb ..] as vec4s: d·Σ q·x. Unrolled by hand
// (see dot/q4_1.wgsl).
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn dot32(row: u32, c: u32, xb: u32) -> f32 {
    let b = row + c * Q8_0_BYTES + 2u;
    let s = dot(bytes_i8(w_u32(b)), x[xb]) + dot(bytes_i8(w_u32(b + 4u)), x[xb + 1u])
        + dot(bytes_i8(w_u32(b + 8u)), x[xb + 2u]) + dot(bytes_i8(w_u32(b + 12u)), x[xb + 3u])
        + dot(bytes_i8(w_u32(b + 16u)), x[xb + 4u]) + dot(bytes_i8(w_u32(b + 20u)), x[xb + 5u])
        + dot(bytes_i8(w_u32(b + 24u)), x[xb + 6u]) + dot(bytes_i8(w_u32(b + 28u)), x[xb + 7u]);
    return w_f16(b - 2u) * s;
}
