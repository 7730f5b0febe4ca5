// slices/q4_0.wgsl: matvec.wgsl's slice of a Q4_0 row (block: f16 d, 16 bytes of nibbles; 18
// bytes): one word of nibbles, so 4 lanes share a block and 32 lanes read 8 consecutive blocks.
// Byte j holds weight j (low nibble) and j + 16 (high); weight = d · (q − 8). Slice q of a block
// holds weights 4q .. 4q + 4 and 16 + 4q .. 16 + 4q + 4. Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_SLICES: u32 = 4u;
const XV: u32 = 2u;
const Q4_0_BYTES: u32 = 18u;

fn x_index(s: u32, i: u32) -> u32 {
    return (s / 4u) * 8u + 4u * i + s % 4u;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row + (s / 4u) * Q4_0_BYTES;
    let q = ld_u32(b + 2u + 4u * (s % 4u));
    let sx = dot(xv[0] + xv[1], vec4<f32>(1.0));
    return ld_f16(b) * (dot(nib4(q, 0u), xv[0]) + dot(nib4(q, 4u), xv[1]) - 8.0 * sx);
}
