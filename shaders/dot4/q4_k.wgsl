// dot4/q4_k.wgsl: qmatvec.wgsl's unit for Q4_K (see dequant/q4_k.wgsl for the layout): one
// 32-value sub-block j of a 144-byte super-block, which starts on a word in every row. weight =
// scale·code − minimum, so a sub-block's sum is scale·Σ code·x − minimum·Σ x; its codes are the
// low (j even) or high (j odd) nibbles of 32 word-aligned bytes.
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

const UNIT_VALUES: u32 = 32u;
const Q4_K_WORDS: u32 = 36u;

// Sub-block j of the super-block at word i against the block of x v, whose sum is s.
fn q4_k_sub_block(i: u32, j: u32, v: array<vec4<f32>, 8>, s: f32) -> f32 {
    let dm = k4_sub_block(4u * i, j);
    let q = i + 4u + 8u * (j / 2u);
    let shift = 4u * (j % 2u);
    let sq = dot(nibbles_f(w[q], shift), v[0]) + dot(nibbles_f(w[q + 1u], shift), v[1])
        + dot(nibbles_f(w[q + 2u], shift), v[2]) + dot(nibbles_f(w[q + 3u], shift), v[3])
        + dot(nibbles_f(w[q + 4u], shift), v[4]) + dot(nibbles_f(w[q + 5u], shift), v[5])
        + dot(nibbles_f(w[q + 6u], shift), v[6]) + dot(nibbles_f(w[q + 7u], shift), v[7]);
    return dm.x * sq - dm.y * s;
}

// Sub-block u % 8 of super-block u / 8 of the four rows starting at words r, against the
// token at xt.
fn dot_unit(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    let v = x_block(xt, u);
    let s = x_sum(v);
    let i = r + vec4<u32>((u / 8u) * Q4_K_WORDS);
    let j = u % 8u;
    return vec4<f32>(q4_k_sub_block(i.x, j, v, s), q4_k_sub_block(i.y, j, v, s), q4_k_sub_block(i.z, j, v, s),
        q4_k_sub_block(i.w, j, v, s));
}

// Never called: a unit is one sub-block, so rows have no tail.
fn dot_tail(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}
