// dequant/q5_1.wgsl: Q5_1 weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Block (24 bytes, 32 weights): f16 d, f16 m, u32 qh, 16 bytes of nibbles, the 5th bits as in
// dequant/q5_0.wgsl; weight = q * d + m.
// dequant32(row, c) returns weights 32c .. 32c+32 (block c) of the row starting at byte `row`,
// element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q5_1_BYTES: u32 = 24u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * Q5_1_BYTES;
    let d = w_f16(b);
    let m = w_f16(b + 2u);
    let qh = w_u32(b + 4u);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 8u + 4u * i);
        let h_lo = fifth_bits(qh, 4u * i);
        let h_hi = fifth_bits(qh, 16u + 4u * i);
        r[i] = vec4<f32>(nibbles(q, 0u) | h_lo) * d + m;
        r[i + 4u] = vec4<f32>(nibbles(q, 4u) | h_hi) * d + m;
    }
    return r;
}
