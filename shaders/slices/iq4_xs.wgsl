// slices/iq4_xs.wgsl: matvec.wgsl's slice of an IQ4_XS row (super-block of 136 bytes, word-aligned
// in every row, 256 weights: f16 d, u16 scales_h, 4 bytes scales_l, 128 bytes of nibbles): word k
// of the nibbles, so 32 lanes read one super-block's 128 bytes. It is word k % 4 of sub-block
// j = k / 4, laid out as IQ4_NL's: weights 32j + 4 · (k % 4) .. + 4 (low nibbles) and 16 further
// (high). The sub-block's scale: nibble j % 2 of scales_l[j / 2] | bits 2j, 2j + 1 of scales_h
// << 4; weight = d · (scale − 32) · level (iq4.wgsl). Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 256u;
const BLOCK_SLICES: u32 = 32u;
const XV: u32 = 2u;
const IQ4_XS_WORDS: u32 = 34u;

fn x_index(s: u32, i: u32) -> u32 {
    let k = s % 32u;
    return (s / 32u) * 64u + 8u * (k / 4u) + k % 4u + 4u * i;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row / 4u + (s / 32u) * IQ4_XS_WORDS;
    let k = s % 32u;
    let j = k / 4u;
    let head = ld(b);
    let lo = (ld(b + 1u) >> (4u * j)) & 15u;
    let hi = (head >> (16u + 2u * j)) & 3u;
    let d = unpack2x16float(head).x * f32(i32(lo | (hi << 4u)) - 32);
    let q = ld(b + 2u + k);
    return d * (dot(iq4_levels(nib4u(q, 0u)), xv[0]) + dot(iq4_levels(nib4u(q, 4u)), xv[1]));
}
