// slices/q2_k.wgsl: matvec.wgsl's slice of a Q2_K row (super-block of 84 bytes, word-aligned in
// every row, 256 weights: 16 scale bytes, 64 bytes of 2-bit codes, f16 d, f16 dmin): word w of
// the codes, so 16 lanes read one super-block's codes. In half h = w / 8, with k = (w % 8) / 4 and
// L = 4 · (w % 4), bits 2i, 2i + 1 of its bytes are weights 128h + 32i + 16k + L .. + 4, whose
// scale byte is 8h + 2i + k (low nibble: scale, high: minimum), for i = 0 .. 4;
// weight = d · scale · q − dmin · minimum. Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 256u;
const BLOCK_SLICES: u32 = 16u;
const XV: u32 = 4u;
const Q2_K_WORDS: u32 = 21u;

fn x_index(s: u32, i: u32) -> u32 {
    let w = s % 16u;
    return (s / 16u) * 64u + 32u * (w / 8u) + w % 8u + 8u * i;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row / 4u + (s / 16u) * Q2_K_WORDS;
    let w = s % 16u;
    let h = w / 8u;
    let k = (w % 8u) / 4u;
    let dm = unpack2x16float(ld(b + 20u));
    // Scale bytes 8h + k, + 2 (first word) and + 4, + 6 (second).
    let sw = array<u32, 2>(ld(b + 2u * h), ld(b + 2u * h + 1u));
    let q = vec4<u32>(ld(b + 4u + w)) >> vec4<u32>(0u, 8u, 16u, 24u);
    let one = vec4<f32>(1.0);
    var scaled = 0.0;
    var mins = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let sc = (sw[i / 2u] >> (8u * (2u * (i % 2u) + k))) & 255u;
        let qi = vec4<f32>((q >> vec4<u32>(2u * i)) & vec4<u32>(3u));
        scaled += f32(sc & 15u) * dot(qi, xv[i]);
        mins += f32(sc >> 4u) * dot(xv[i], one);
    }
    return dm.x * scaled - dm.y * mins;
}
