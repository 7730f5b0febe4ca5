// slices/q5_1.wgsl: matvec.wgsl's slice of a Q5_1 row (block: f16 d, f16 m, u32 qh, 16 bytes of
// nibbles; 24 bytes, word-aligned in every row): one word of nibbles, as slices/q5_0.wgsl;
// weight = d · q + m. Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_SLICES: u32 = 4u;
const XV: u32 = 2u;
const Q5_1_WORDS: u32 = 6u;

fn x_index(s: u32, i: u32) -> u32 {
    return (s / 4u) * 8u + 4u * i + s % 4u;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row / 4u + (s / 4u) * Q5_1_WORDS;
    let dm = unpack2x16float(ld(b));
    let qh = ld(b + 1u);
    let q = ld(b + 2u + s % 4u);
    let j = 4u * (s % 4u);
    let sx = dot(xv[0] + xv[1], vec4<f32>(1.0));
    return dm.x * (dot(nib4(q, 0u) + vec4<f32>(fifth_bits(qh, j)), xv[0]) + dot(nib4(q, 4u) + vec4<f32>(fifth_bits(qh, j + 16u)), xv[1])) + dm.y * sx;
}
