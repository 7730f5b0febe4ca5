// dot4/q4_1.wgsl: qmatvec.wgsl's unit for Q4_1 (see dequant/q4_1.wgsl for the layout): one
// 20-byte block, which starts on a word in every row (rows are padded to 16 bytes). weight =
// d·code + m, so a block's sum is d·Σ code·x + m·Σ x, with d and m from one word.
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

const UNIT_VALUES: u32 = 32u;
const Q4_1_WORDS: u32 = 5u;

// The block at word i against the block of x v, whose sum is s.
fn q4_1_block(i: u32, v: array<vec4<f32>, 8>, s: f32) -> f32 {
    let dm = unpack2x16float(w[i]);
    return dm.x * q4_dot(vec4<u32>(w[i + 1u], w[i + 2u], w[i + 3u], w[i + 4u]), v) + dm.y * s;
}

// Block u of the four rows starting at words r, against the token whose x starts at vec4 xt.
fn dot_unit(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    let v = x_block(xt, u);
    let s = x_sum(v);
    let i = r + vec4<u32>(u * Q4_1_WORDS);
    return vec4<f32>(q4_1_block(i.x, v, s), q4_1_block(i.y, v, s), q4_1_block(i.z, v, s), q4_1_block(i.w, v, s));
}

// Never called: a unit is one block, so rows have no tail.
fn dot_tail(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}
