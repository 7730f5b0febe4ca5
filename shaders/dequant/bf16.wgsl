// dequant/bf16.wgsl: BF16 weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// A bf16 is the top half of an f32, so widening is a shift (exact). A row of 32k values is
// 4-byte aligned; each u32 holds two, low first.
// dequant32(row, c) returns weights 32c .. 32c+32 of the row starting at byte `row`, element
// 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
fn bf16_pair(v: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
}

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let base = (row >> 2u) + c * 16u;
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let k = base + 2u * i;
        r[i] = vec4<f32>(bf16_pair(w[k]), bf16_pair(w[k + 1u]));
    }
    return r;
}
