// dequant/q4_1.wgsl: Q4_1 weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Block (20 bytes, 32 weights): f16 d, f16 m, 16 bytes; weight j < 16 is the low nibble of byte j
// and weight j + 16 its high nibble; weight = q * d + m.
// dequant32(row, c) returns weights 32c .. 32c+32 (block c) of the row starting at byte `row`,
// element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q4_1_BYTES: u32 = 20u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * Q4_1_BYTES;
    let d = w_f16(b);
    let m = w_f16(b + 2u);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 4u + 4u * i);
        r[i] = vec4<f32>(nibbles(q, 0u)) * d + m;
        r[i + 4u] = vec4<f32>(nibbles(q, 4u)) * d + m;
    }
    return r;
}
