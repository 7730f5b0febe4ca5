// dequant/q3_k.wgsl: Q3_K weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Super-block (110 bytes, so it starts on any even byte; 256 weights): 32 bytes hmask, 64 bytes
// of 2-bit codes, 12 bytes of packed 6-bit scales, f16 d. The codes are laid out as Q2_K's; weight
// l of 16-weight group g = 8h + 2j + k (half h, j = 0 .. 4, k = 0 / 1) takes bit 4h + j of
// hmask[16k + l]: q = code - 4 where that bit is clear. Its scale is nibble g / 8 of byte g % 8
// with bits 2 (g / 4), +1 of byte 8 + g % 4 on top, minus 32; weight = d * scale * q.
// dequant32(row, c) returns weights 32c .. 32c+32 (groups 2c % 16, +1 of super-block c / 8) of
// the row starting at byte `row`, element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q3_K_BYTES: u32 = 110u;

// The signed scale of group g of the super-block at byte b.
fn q3_k_scale(b: u32, g: u32) -> f32 {
    let lo = (w_u8(b + 96u + g % 8u) >> (4u * (g / 8u))) & 15u;
    let hi = (w_u8(b + 104u + g % 4u) >> (2u * (g / 4u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c / 8u) * Q3_K_BYTES;
    let h = (c % 8u) / 4u;
    let j = c % 4u;
    let d = w_f16(b + 108u);
    let d0 = d * q3_k_scale(b, 8u * h + 2u * j);
    let d1 = d * q3_k_scale(b, 8u * h + 2u * j + 1u);
    let qs = b + 32u + 32u * h;
    let bytes = vec4<u32>(0u, 8u, 16u, 24u);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let low = (vec4<u32>(w_u32(qs + 4u * i)) >> (bytes + vec4<u32>(2u * j))) & vec4<u32>(3u);
        let high = (vec4<u32>(w_u32(b + 4u * i)) >> (bytes + vec4<u32>(4u * h + j))) & vec4<u32>(1u);
        let q = vec4<f32>(low) - 4.0 * vec4<f32>(vec4<u32>(1u) - high);
        r[i] = select(d1, d0, i < 4u) * q;
    }
    return r;
}
