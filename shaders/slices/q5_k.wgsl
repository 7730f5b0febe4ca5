// slices/q5_k.wgsl: matvec.wgsl's slice of a Q5_K row (super-block of 176 bytes, 256 weights:
// f16 d, f16 dmin, 12 bytes of scales, 32 bytes qh, 128 bytes of nibbles): as slices/q4_k.wgsl,
// with bit j of qh[l] as the 5th bit of weight l of sub-block j (one word of qh per lane).
// Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 256u;
const BLOCK_SLICES: u32 = 32u;
const XV: u32 = 2u;
const Q5_K_WORDS: u32 = 44u;

// Bit `bit` of each byte of h, as 16 or 0.
fn fifth_bits(h: u32, bit: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(h) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(bit))) & vec4<u32>(1u)) << vec4<u32>(4u));
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row / 4u + (s / 32u) * Q5_K_WORDS;
    let k = s % 32u;
    let j = 2u * (k / 8u);
    let dm = unpack2x16float(ld(b));
    let s0 = ld(b + 1u);
    let s1 = ld(b + 2u);
    let s2 = ld(b + 3u);
    let h = ld(b + 4u + k % 8u);
    let q = ld(b + 12u + k);
    let lo = k_scale_min(s0, s1, s2, j);
    let hi = k_scale_min(s0, s1, s2, j + 1u);
    let one = vec4<f32>(1.0);
    return dm.x * (lo.x * dot(nib4(q, 0u) + fifth_bits(h, j), xv[0])
        + hi.x * dot(nib4(q, 4u) + fifth_bits(h, j + 1u), xv[1]))
        - dm.y * (lo.y * dot(xv[0], one) + hi.y * dot(xv[1], one));
}
