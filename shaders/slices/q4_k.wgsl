// slices/q4_k.wgsl: matvec.wgsl's slice of a Q4_K row (super-block of 144 bytes, 256 weights:
// f16 d, f16 dmin, 12 bytes of 6-bit scales and minimums, 128 bytes of nibbles): word k of the
// nibbles, so 32 lanes read one super-block's 128 bytes. Its low nibbles are weights 64m + l ..
// + 4 of sub-block 2m, its high nibbles weights 64m + 32 + l .. of sub-block 2m + 1 (m = k / 8,
// l = 4 · (k % 8)); weight = d · scale · q − dmin · minimum. Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 256u;
const BLOCK_SLICES: u32 = 32u;
const XV: u32 = 2u;
const Q4_K_WORDS: u32 = 36u;

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row / 4u + (s / 32u) * Q4_K_WORDS;
    let k = s % 32u;
    let dm = unpack2x16float(ld(b));
    let s0 = ld(b + 1u);
    let s1 = ld(b + 2u);
    let s2 = ld(b + 3u);
    let q = ld(b + 4u + k);
    let lo = k_scale_min(s0, s1, s2, 2u * (k / 8u));
    let hi = k_scale_min(s0, s1, s2, 2u * (k / 8u) + 1u);
    let one = vec4<f32>(1.0);
    return dm.x * (lo.x * dot(nib4(q, 0u), xv[0]) + hi.x * dot(nib4(q, 4u), xv[1]))
        - dm.y * (lo.y * dot(xv[0], one) + hi.y * dot(xv[1], one));
}
