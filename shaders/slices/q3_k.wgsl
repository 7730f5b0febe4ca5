// slices/q3_k.wgsl: matvec.wgsl's slice of a Q3_K row (super-block of 110 bytes, so it starts on
// any even byte, 256 weights: 32 bytes hmask, 64 bytes of 2-bit codes, 12 bytes of packed 6-bit
// scales, f16 d): word w of the codes, laid out as Q2_K's (slices/q2_k.wgsl): bits 2i, 2i + 1 of
// its bytes are weights 128h + 32i + 16k + L .. + 4 of group g = 8h + 2i + k, and bit 4h + i of
// hmask word w % 8 their third bits (q = code − 4 where clear). Scale g: nibble h of byte 2i + k
// with bits 2 (g / 4), + 1 of byte 8 + (2i + k) % 4 on top, minus 32; weight = d · scale · q.
// Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 256u;
const BLOCK_SLICES: u32 = 16u;
const XV: u32 = 4u;
const Q3_K_BYTES: u32 = 110u;

fn x_index(s: u32, i: u32) -> u32 {
    let w = s % 16u;
    return (s / 16u) * 64u + 32u * (w / 8u) + w % 8u + 8u * i;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row + (s / 16u) * Q3_K_BYTES;
    let w = s % 16u;
    let h = w / 8u;
    let k = (w % 8u) / 4u;
    let bytes = vec4<u32>(0u, 8u, 16u, 24u);
    let q = vec4<u32>(ld_u32(b + 32u + 4u * w)) >> bytes;
    let mask = vec4<u32>(ld_u32(b + 4u * (w % 8u))) >> bytes;
    let lo = array<u32, 2>(ld_u32(b + 96u), ld_u32(b + 100u));
    let hi = ld_u32(b + 104u);
    var acc = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let g = 8u * h + 2u * i + k;
        let byte = 2u * i + k;
        let sc = ((lo[i / 2u] >> (8u * (byte % 4u) + 4u * h)) & 15u) | (((hi >> (8u * (byte % 4u) + 2u * (g / 4u))) & 3u) << 4u);
        let code = vec4<f32>((q >> vec4<u32>(2u * i)) & vec4<u32>(3u));
        let third = vec4<f32>((mask >> vec4<u32>(4u * h + i)) & vec4<u32>(1u));
        acc += f32(i32(sc) - 32) * dot(code - 4.0 + 4.0 * third, xv[i]);
    }
    return ld_f16(b + 108u) * acc;
}
