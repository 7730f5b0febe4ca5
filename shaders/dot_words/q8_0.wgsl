// dot_words/q8_0.wgsl: dotw(q, xb) = Σ_j W[32c + j] · x[32c + j] for one Q8_0 block (f16 d, then
// 32 i8 codes: 34 bytes), given as words: q[i] holds bytes 4i .. 4i + 3 of the block (q[8] only
// its first two). x[32c ..] is at x[xb ..] as vec4s. weight = d·code.
// Tested through qmatvec_unrolled.wgsl (crates/gpu/tests/qmatmul.rs).

// Unrolled by hand, like every dot_words function: x must be read at constant indices (see
// qmatvec_unrolled.wgsl), and a loop is not always unrolled by the driver.
fn dotw(q: array<u32, 9>, xb: u32) -> f32 {
    let s = dot(bytes_i8(funnel16(q[0], q[1])), x[xb]) + dot(bytes_i8(funnel16(q[1], q[2])), x[xb + 1u])
        + dot(bytes_i8(funnel16(q[2], q[3])), x[xb + 2u]) + dot(bytes_i8(funnel16(q[3], q[4])), x[xb + 3u])
        + dot(bytes_i8(funnel16(q[4], q[5])), x[xb + 4u]) + dot(bytes_i8(funnel16(q[5], q[6])), x[xb + 5u])
        + dot(bytes_i8(funnel16(q[6], q[7])), x[xb + 6u]) + dot(bytes_i8(funnel16(q[7], q[8])), x[xb + 7u]);
    return unpack2x16float(q[0]).x * s;
}
