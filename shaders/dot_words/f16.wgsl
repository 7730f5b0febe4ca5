// dot_words/f16.wgsl: dotw(q, xb) = Σ_j W[32c + j] · x[32c + j] for 32 f16 weights, given as
// the 16 words that hold them (q[i]: weights 2i, 2i + 1). x[32c ..] is at x[xb ..] as vec4s.
// Tested through qmatvec_unrolled.wgsl (crates/gpu/tests/qmatmul.rs).

fn dotw(q: array<u32, 16>, xb: u32) -> f32 {
    return f16_dot4(q[0], q[1], xb) + f16_dot4(q[2], q[3], xb + 1u) + f16_dot4(q[4], q[5], xb + 2u)
        + f16_dot4(q[6], q[7], xb + 3u) + f16_dot4(q[8], q[9], xb + 4u)
        + f16_dot4(q[10], q[11], xb + 5u) + f16_dot4(q[12], q[13], xb + 6u)
        + f16_dot4(q[14], q[15], xb + 7u);
}

// Four f16 weights (in words a, b) times x[xi]. Calls unroll where loops might not (q8_0.wgsl).
fn f16_dot4(a: u32, b: u32, xi: u32) -> f32 {
    return dot(vec4<f32>(unpack2x16float(a), unpack2x16float(b)), x[xi]);
}
