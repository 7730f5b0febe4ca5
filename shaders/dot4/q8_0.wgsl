// dot4/q8_0.wgsl: qmatvec.wgsl's unit for Q8_0 (f16 d, then 32 i8 codes: see dequant/q8_0.wgsl):
// two 34-byte blocks, 17 words. In rows padded to 16 bytes an even block starts on a word (d in
// its low half, codes 2 bytes in: each code word spans two words) and the odd one 2 bytes into
// its ninth word (d in the high half, codes word-aligned). weight = d·code.
// A row with an odd number of blocks ends in one even block (dot_tail).
// Tested through qmatvec.wgsl (crates/gpu/tests/qmatmul.rs).

const UNIT_VALUES: u32 = 64u;
const Q8_0_PAIR_WORDS: u32 = 17u;

// The even block at word i against the block of x v.
fn q8_0_even(i: u32, v: array<vec4<f32>, 8>) -> f32 {
    let a = vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
    let b = vec4<u32>(w[i + 4u], w[i + 5u], w[i + 6u], w[i + 7u]);
    let e = w[i + 8u];
    let s = dot(bytes_i8(funnel16(a.x, a.y)), v[0]) + dot(bytes_i8(funnel16(a.y, a.z)), v[1])
        + dot(bytes_i8(funnel16(a.z, a.w)), v[2]) + dot(bytes_i8(funnel16(a.w, b.x)), v[3])
        + dot(bytes_i8(funnel16(b.x, b.y)), v[4]) + dot(bytes_i8(funnel16(b.y, b.z)), v[5])
        + dot(bytes_i8(funnel16(b.z, b.w)), v[6]) + dot(bytes_i8(funnel16(b.w, e)), v[7]);
    return unpack2x16float(a.x).x * s;
}

// The odd block of the pair at word i.
fn q8_0_odd(i: u32, v: array<vec4<f32>, 8>) -> f32 {
    let s = dot(bytes_i8(w[i + 9u]), v[0]) + dot(bytes_i8(w[i + 10u]), v[1])
        + dot(bytes_i8(w[i + 11u]), v[2]) + dot(bytes_i8(w[i + 12u]), v[3])
        + dot(bytes_i8(w[i + 13u]), v[4]) + dot(bytes_i8(w[i + 14u]), v[5])
        + dot(bytes_i8(w[i + 15u]), v[6]) + dot(bytes_i8(w[i + 16u]), v[7]);
    return unpack2x16float(w[i + 8u]).y * s;
}

// Blocks 2u and 2u + 1 of the four rows starting at words r, against the token at xt.
fn dot_unit(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    let va = x_block(xt, 2u * u);
    let vb = x_block(xt, 2u * u + 1u);
    let i = r + vec4<u32>(u * Q8_0_PAIR_WORDS);
    return vec4<f32>(
        q8_0_even(i.x, va) + q8_0_odd(i.x, vb),
        q8_0_even(i.y, va) + q8_0_odd(i.y, vb),
        q8_0_even(i.z, va) + q8_0_odd(i.z, vb),
        q8_0_even(i.w, va) + q8_0_odd(i.w, vb),
    );
}

// Block 2u, the last of rows with an odd number of blocks.
fn dot_tail(r: vec4<u32>, u: u32, xt: u32) -> vec4<f32> {
    let v = x_block(xt, 2u * u);
    let i = r + vec4<u32>(u * Q8_0_PAIR_WORDS);
    return vec4<f32>(q8_0_even(i.x, v), q8_0_even(i.y, v), q8_0_even(i.z, v), q8_0_even(i.w, v));
}
