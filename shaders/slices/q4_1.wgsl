// slices/q4_1.wgsl: matvec.wgsl's slice of a Q4_1 row (block: f16 d, f16 m, 16 bytes of nibbles;
// 20 bytes, word-aligned in every row): one word of nibbles, as slices/q4_0.wgsl; weight =
// d · q + m. Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_SLICES: u32 = 4u;
const XV: u32 = 2u;
const Q4_1_WORDS: u32 = 5u;

fn x_index(s: u32, i: u32) -> u32 {
    return (s / 4u) * 8u + 4u * i + s % 4u;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row / 4u + (s / 4u) * Q4_1_WORDS;
    let dm = unpack2x16float(ld(b));
    let q = ld(b + 1u + s % 4u);
    let sx = dot(xv[0] + xv[1], vec4<f32>(1.0));
    return dm.x * (dot(nib4(q, 0u), xv[0]) + dot(nib4(q, 4u), xv[1])) + dm.y * sx;
}
