// slices/f16.wgsl: matvec.wgsl's slice of an F16 row: 4 values (2 words), widened with
// unpack2x16float (no shader-f16). Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 4u;
const BLOCK_SLICES: u32 = 1u;
const XV: u32 = 1u;

fn x_index(s: u32, i: u32) -> u32 {
    return s;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let i = row / 4u + 2u * s;
    return dot(vec4<f32>(unpack2x16float(ld(i)), unpack2x16float(ld(i + 1u))), xv[0]);
}
