// slices/f32.wgsl: matvec.wgsl's slice of an F32 row: 2 values (2 words), so 32 lanes read 256
// consecutive bytes per load. The slice's x is half of one vec4.
// Interface of every slices/<type>.wgsl: BLOCK_VALUES values per block, BLOCK_SLICES slices per
// block, XV vec4s of x per slice at x_index(s, 0 .. XV), and slice_dot(row, s, xv): the dot
// product of slice s of the row starting at byte `row` with those x values.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 2u;
const BLOCK_SLICES: u32 = 1u;
const XV: u32 = 1u;

fn x_index(s: u32, i: u32) -> u32 {
    return s / 2u;
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let i = row / 4u + 2u * s;
    let v = vec2<f32>(bitcast<f32>(ld(i)), bitcast<f32>(ld(i + 1u)));
    return dot(v, select(xv[0].xy, xv[0].zw, (s & 1u) == 1u));
}
