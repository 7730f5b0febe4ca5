// dequant/q2_k.wgsl: Q2_K weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Super-block (84 bytes, 256 weights): 16 scale bytes (low nibble: scale, high nibble: minimum
// of 16 weights), 64 bytes of 2-bit codes, f16 d, f16 dmin. In half h (128 weights, 32 code
// bytes), weights 32j .. 32j + 16 are bits 2j, 2j + 1 of bytes 0 .. 16 with scale byte 8h + 2j,
// weights 32j + 16 .. 32j + 32 those of bytes 16 .. 32 with scale byte 8h + 2j + 1;
// weight = d * scale * q - dmin * minimum.
// dequant32(row, c) returns weights 32c .. 32c+32 (j = c % 4 of half (c % 8) / 4 of super-block
// c / 8) of the row starting at byte `row`, element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q2_K_BYTES: u32 = 84u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c / 8u) * Q2_K_BYTES;
    let h = (c % 8u) / 4u;
    let j = c % 4u;
    let d = w_f16(b + 80u);
    let dmin = w_f16(b + 82u);
    let sc = b + 8u * h + 2u * j;
    let qs = b + 16u + 32u * h;
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let s = w_u8(sc + i / 4u);
        let q = (vec4<u32>(w_u32(qs + 4u * i)) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(2u * j))) & vec4<u32>(3u);
        r[i] = (d * f32(s & 15u)) * vec4<f32>(q) - dmin * f32(s >> 4u);
    }
    return r;
}
