// dequant/q4_k.wgsl: Q4_K weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Super-block (144 bytes, 256 weights): f16 d, f16 dmin, 12 bytes of packed 6-bit sub-block
// scales/minimums (k4_scale_min in qcommon.wgsl), 128 bytes of nibbles. Sub-block j (32 weights)
// uses the low (j even) or high (j odd) nibbles of bytes 32*(j/2) .. +32;
// weight = d * scale_j * q - dmin * min_j.
// dequant32(row, c) returns weights 32c .. 32c+32 (sub-block c % 8 of super-block c / 8) of the
// row starting at byte `row`, element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q4_K_BYTES: u32 = 144u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c / 8u) * Q4_K_BYTES;
    let j = c % 8u;
    let dm = k4_sub_block(b, j);
    let d = dm.x;
    let m = dm.y;
    let qs = b + 16u + 32u * (j / 2u);
    let shift = 4u * (j % 2u);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        r[i] = d * vec4<f32>(nibbles(w_u32(qs + 4u * i), shift)) - m;
    }
    return r;
}
