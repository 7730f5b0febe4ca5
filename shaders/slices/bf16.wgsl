// slices/bf16.wgsl: matvec.wgsl's slice of a BF16 row: 4 values (2 words), widened exactly by
// shifting each into the top half of an f32. Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 4u;
const BLOCK_SLICES: u32 = 1u;
const XV: u32 = 1u;

fn x_index(s: u32, i: u32) -> u32 {
    return s;
}

fn bf16_pair(v: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let i = row / 4u + 2u * s;
    return dot(vec4<f32>(bf16_pair(ld(i)), bf16_pair(ld(i + 1u))), xv[0]);
}
