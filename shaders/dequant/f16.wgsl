// dequant/f16.wgsl: F16 weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// dequant32(row, c) returns weights 32c .. 32c+32 of the row starting at byte `row`, element
// 4i+e in r[i][e]. A row of 32k halves is 4-byte aligned; each u32 holds two halves, low first.
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let base = (row >> 2u) + c * 16u;
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let k = base + 2u * i;
        r[i] = vec4<f32>(unpack2x16float(w[k]), unpack2x16float(w[k + 1u]));
    }
    return r;
}
