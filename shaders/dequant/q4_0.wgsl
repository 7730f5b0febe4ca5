// dequant/q4_0.wgsl: Q4_0 weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Block (18 bytes, 32 weights): f16 d, 16 bytes; weight j < 16 is the low nibble of byte j and
// weight j + 16 its high nibble; weight = (q - 8) * d.
// dequant32(row, c) returns weights 32c .. 32c+32 (block c) of the row starting at byte `row`,
// element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q4_0_BYTES: u32 = 18u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * Q4_0_BYTES;
    let d = w_f16(b);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 2u + 4u * i);
        r[i] = (vec4<f32>(nibbles(q, 0u)) - 8.0) * d;
        r[i + 4u] = (vec4<f32>(nibbles(q, 4u)) - 8.0) * d;
    }
    return r;
}
