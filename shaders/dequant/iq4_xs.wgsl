// dequant/iq4_xs.wgsl: IQ4_XS weights for the quantized matmul kernels (qmatmul.wgsl,
// qembed.wgsl). Super-block (136 bytes, 256 weights): f16 d, u16 scales_h, 4 bytes scales_l, 128
// bytes of nibbles. Sub-block j (32 weights) has the 6-bit scale (nibble j % 2 of scales_l[j / 2])
// | (bits 2j, 2j + 1 of scales_h) << 4, and 16 bytes of nibbles laid out as IQ4_NL's, indexing
// the 16 levels (iq4.wgsl); weight = d * (scale - 32) * level.
// dequant32(row, c) returns weights 32c .. 32c+32 (sub-block c % 8 of super-block c / 8) of the
// row starting at byte `row`, element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const IQ4_XS_BYTES: u32 = 136u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c / 8u) * IQ4_XS_BYTES;
    let j = c % 8u;
    let lo = (w_u8(b + 4u + j / 2u) >> (4u * (j % 2u))) & 15u;
    let hi = (w_u32(b) >> (16u + 2u * j)) & 3u;
    let d = w_f16(b) * f32(i32(lo | (hi << 4u)) - 32);
    let qs = b + 8u + 16u * j;
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(qs + 4u * i);
        r[i] = d * iq4_levels(nibbles(q, 0u));
        r[i + 4u] = d * iq4_levels(nibbles(q, 4u));
    }
    return r;
}
