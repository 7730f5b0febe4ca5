// dot_words/q4_words.wgsl: shared by dot_words/q4_0.wgsl and dot_words/q4_1.wgsl. For 32 4-bit
// codes packed as in Q4_0/Q4_1 (byte j of the four words q0..q3 holds code j in its low nibble
// and code j + 16 in its high nibble), returns (Σ code·x, Σ x) over x[32c ..] at x[xb ..] as
// vec4s. Unrolled by hand: a loop is not always unrolled by the driver.
// Tested through qmatvec_unrolled.wgsl (crates/gpu/tests/qmatmul.rs).

fn dot_q4_words(q0: u32, q1: u32, q2: u32, q3: u32, xb: u32) -> vec2<f32> {
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
    return vec2<f32>(sq, sx.x + sx.y + sx.z + sx.w);
}
