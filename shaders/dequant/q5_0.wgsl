// dequant/q5_0.wgsl: Q5_0 weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Block (22 bytes, 32 weights, so it starts on any even byte): f16 d, u32 qh, 16 bytes of
// nibbles; weight j < 16 is the low nibble of byte j with bit j of qh as its 5th bit, weight
// j + 16 the high nibble with bit j + 16; weight = (q - 16) * d.
// dequant32(row, c) returns weights 32c .. 32c+32 (block c) of the row starting at byte `row`,
// element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q5_0_BYTES: u32 = 22u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * Q5_0_BYTES;
    let d = w_f16(b);
    let qh = w_u32(b + 2u);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 6u + 4u * i);
        let h_lo = fifth_bits(qh, 4u * i);
        let h_hi = fifth_bits(qh, 16u + 4u * i);
        r[i] = (vec4<f32>(nibbles(q, 0u) | h_lo) - 16.0) * d;
        r[i + 4u] = (vec4<f32>(nibbles(q, 4u) | h_hi) - 16.0) * d;
    }
    return r;
}
