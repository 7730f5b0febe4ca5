// dot/generic.wgsl: dot32(row, c, xb) = Σ_j W[row][32c + j] · x[32c + j] through the type's
// dequant32 (F32, F16, Q5_K, Q6_K: types without a dot form of their own), x[32c ..] at x[xb ..]
// as vec4s, with constant indices so the dequantized array can stay in registers.
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn dot32(row: u32, c: u32, xb: u32) -> f32 {
    let v = dequant32(row, c);
    return dot(v[0], x[xb]) + dot(v[1], x[xb + 1u]) + dot(v[2], x[xb + 2u]) + dot(v[3], x[xb + 3u])
        + dot(v[4], x[xb + 4u]) + dot(v[5], x[xb + 5u]) + dot(v[6], x[xb + 6u]) + dot(v[7], x[xb + 7u]);
}
