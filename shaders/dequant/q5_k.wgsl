// dequant/q5_k.wgsl: Q5_K weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Super-block (176 bytes, 256 weights): f16 d, f16 dmin, 12 bytes of packed 6-bit sub-block
// scales/minimums (k4_scale_min in qcommon.wgsl), 32 bytes qh, 128 bytes of nibbles. Weight l of
// sub-block j takes the low (j even) or high (j odd) nibble of byte 32*(j/2) + l and bit j of
// qh[l] as its 5th bit; weight = d * scale_j * q - dmin * min_j.
// dequant32(row, c) returns weights 32c .. 32c+32 (sub-block c % 8 of super-block c / 8) of the
// row starting at byte `row`, element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q5_K_BYTES: u32 = 176u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c / 8u) * Q5_K_BYTES;
    let j = c % 8u;
    let dm = k4_sub_block(b, j);
    let d = dm.x;
    let m = dm.y;
    let qs = b + 48u + 32u * (j / 2u);
    let shift = 4u * (j % 2u);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let h = (nibbles(w_u32(b + 16u + 4u * i) >> j, 0u) & vec4<u32>(1u)) << vec4<u32>(4u);
        r[i] = d * vec4<f32>(nibbles(w_u32(qs + 4u * i), shift) + h) - m;
    }
    return r;
}
