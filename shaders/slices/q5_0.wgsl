// slices/q5_0.wgsl: matvec.wgsl's slice of a Q5_0 row (block: f16 d, u32 qh, 16 bytes of
// nibbles; 22 bytes, so a block starts on any even byte): one word of nibbles, as
// slices/q4_0.wgsl, with bit j of qh as the 5th bit of weight j; weight = d · (q − 16).
// Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_SLICES: u32 = 4u;
const XV: u32 = 2u;
const Q5_0_BYTES: u32 = 22u;

fn x_index(s: u32, i: u32) -> u32 {
    return (s / 4u) * 8u + 4u * i + s % 4u;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row + (s / 4u) * Q5_0_BYTES;
    let qh = ld_u32(b + 2u);
    let q = ld_u32(b + 6u + 4u * (s % 4u));
    let j = 4u * (s % 4u);
    let sx = dot(xv[0] + xv[1], vec4<f32>(1.0));
    return ld_f16(b) * (dot(nib4(q, 0u) + vec4<f32>(fifth_bits(qh, j)), xv[0]) + dot(nib4(q, 4u) + vec4<f32>(fifth_bits(qh, j + 16u)), xv[1]) - 16.0 * sx);
}
