// dequant/f32.wgsl: F32 weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// dequant32(row, c) returns weights 32c .. 32c+32 of the row starting at byte `row`, element
// 4i+e in r[i][e]. F32 rows are 4-byte aligned, so words are read directly.
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let base = (row >> 2u) + c * 32u;
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let k = base + 4u * i;
        r[i] = bitcast<vec4<f32>>(vec4<u32>(w[k], w[k + 1u], w[k + 2u], w[k + 3u]));
    }
    return r;
}
