// slices/q8_0.wgsl: matvec.wgsl's slice of a Q8_0 row (block: f16 d, 32 i8 q; 34 bytes, so a
// block starts on any even byte): 4 values, one word of q read at its even offset; 8 lanes
// share a block, 32 lanes read 4 consecutive blocks. weight = d · q. Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 32u;
const BLOCK_SLICES: u32 = 8u;
const XV: u32 = 1u;
const Q8_0_BYTES: u32 = 34u;

fn x_index(s: u32, i: u32) -> u32 {
    return s;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row + (s / 8u) * Q8_0_BYTES;
    return ld_f16(b) * dot(sbytes4(ld_u32(b + 2u + 4u * (s % 8u))), xv[0]);
}
