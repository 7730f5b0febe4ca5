// dequant/q8_0.wgsl: Q8_0 weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Block (34 bytes, 32 weights): f16 d, 32 x i8 q; weight = q * d.
// dequant32(row, c) returns weights 32c .. 32c+32 (block c) of the row starting at byte `row`,
// element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q8_0_BYTES: u32 = 34u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * Q8_0_BYTES;
    let d = w_f16(b);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        r[i] = bytes_i8(w_u32(b + 2u + 4u * i)) * d;
    }
    return r;
}
