// dot_words/f32.wgsl: dotw(q, xb) = Σ_j W[32c + j] · x[32c + j] for 32 f32 weights, given as
// their 32 words. x[32c ..] is at x[xb ..] as vec4s.
// Tested through qmatvec_unrolled.wgsl (crates/gpu/tests/qmatmul.rs).

fn dotw(q: array<u32, 32>, xb: u32) -> f32 {
    return f32_dot4(q[0], q[1], q[2], q[3], xb) + f32_dot4(q[4], q[5], q[6], q[7], xb + 1u)
        + f32_dot4(q[8], q[9], q[10], q[11], xb + 2u) + f32_dot4(q[12], q[13], q[14], q[15], xb + 3u)
        + f32_dot4(q[16], q[17], q[18], q[19], xb + 4u) + f32_dot4(q[20], q[21], q[22], q[23], xb + 5u)
        + f32_dot4(q[24], q[25], q[26], q[27], xb + 6u) + f32_dot4(q[28], q[29], q[30], q[31], xb + 7u);
}

// Four f32 weights (words a .. d) times x[xi]. Calls unroll where loops might not (q8_0.wgsl).
fn f32_dot4(a: u32, b: u32, c: u32, d: u32, xi: u32) -> f32 {
    return dot(bitcast<vec4<f32>>(vec4<u32>(a, b, c, d)), x[xi]);
}
