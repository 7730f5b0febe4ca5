// slices/iq4_nl.wgsl: matvec.wgsl's slice of an IQ4_NL row (block: f16 d, 16 bytes of nibbles
// laid out as Q4_0's; 18 bytes): one word of nibbles, so 4 lanes share a block; each nibble
// indexes the 16 levels (iq4.wgsl); weight = d · level. Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_SLICES: u32 = 4u;
const XV: u32 = 2u;
const IQ4_NL_BYTES: u32 = 18u;

fn x_index(s: u32, i: u32) -> u32 {
    return (s / 4u) * 8u + 4u * i + s % 4u;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row + (s / 4u) * IQ4_NL_BYTES;
    let q = ld_u32(b + 2u + 4u * (s % 4u));
    return ld_f16(b) * (dot(iq4_levels(nib4u(q, 0u)), xv[0]) + dot(iq4_levels(nib4u(q, 4u)), xv[1]));
}
