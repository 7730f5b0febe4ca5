// dot4/q4_0.wgsl: qmatvec.wgsl's unit for Q4_0 (see dequant/q4_0.wgsl for the layout): two
// 18-byte blocks, 9 words. In rows padded to 16 bytes an even block starts on a word (d in its
// low half, codes 2 bytes in) and the odd one 2 bytes into its fifth word (d in the high half,
// codes word-aligned). weight = d·(code − 8), so a block's sum is d·(Σ code·x − 8·Σ x).
// A row with an odd number of blocks ends in one even block (dot_tail).
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

const UNIT_VALUES: u32 = 64u;
const Q4_0_PAIR_WORDS: u32 = 9u;

// The even block at word i against the block of x v, whose sum is s.
fn q4_0_even(i: u32, v: array<vec4<f32>, 8>, s: f32) -> f32 {
    let a = vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
    let e = w[i + 4u];
    let q = vec4<u32>(funnel16(a.x, a.y), funnel16(a.y, a.z), funnel16(a.z, a.w), funnel16(a.w, e));
    return unpack2x16float(a.x).x * (q4_dot(q, v) - 8.0 * s);
}

// The odd block of the pair at word i.
fn q4_0_odd(i: u32, v: array<vec4<f32>, 8>, s: f32) -> f32 {
    let q = vec4<u32>(w[i + 5u], w[i + 6u], w[i + 7u], w[i + 8u]);
    return unpack2x16float(w[i + 4u]).y * (q4_dot(q, v) - 8.0 * s);
}

// Blocks 2u and 2u + 1 of the four rows starting at words r, against the token at xt.
fn dot_unit(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    let va = x_block(xt, 2u * u);
    let sa = x_sum(va);
    let vb = x_block(xt, 2u * u + 1u);
    let sb = x_sum(vb);
    let i = r + vec4<u32>(u * Q4_0_PAIR_WORDS);
    return vec4<f32>(
        q4_0_even(i.x, va, sa) + q4_0_odd(i.x, vb, sb),
        q4_0_even(i.y, va, sa) + q4_0_odd(i.y, vb, sb),
        q4_0_even(i.z, va, sa) + q4_0_odd(i.z, vb, sb),
        q4_0_even(i.w, va, sa) + q4_0_odd(i.w, vb, sb),
    );
}

// Block 2u, the last of rows with an odd number of blocks.
fn dot_tail(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    let v = x_block(xt, 2u * u);
    let s = x_sum(v);
    let i = r + vec4<u32>(u * Q4_0_PAIR_WORDS);
    return vec4<f32>(q4_0_even(i.x, v, s), q4_0_even(i.y, v, s), q4_0_even(i.z, v, s), q4_0_even(i.w, v, s));
}
