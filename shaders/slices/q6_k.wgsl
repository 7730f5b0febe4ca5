// slices/q6_k.wgsl: matvec.wgsl's slice of a Q6_K row (super-block of 210 bytes, so it starts on
// any even byte, 256 weights: 128 bytes ql, 64 bytes qh, 16 i8 scales, f16 d): word k of ql, so
// 32 lanes read one super-block's ql. In half h = k / 16, with L = 4 · (k % 16): the low nibbles
// are weights 128h + L .. + 4 (qh bits 0-1 for L < 32, else 2-3), the high nibbles weights
// 128h + 64 + L .. (bits 4-5, else 6-7), each with the 2 bits of qh[32h + L % 32 ..] and the scale
// sc[8h + (L % 32) / 16 + c], c = 0 / 4 (L < 32) or 2 / 6; weight = d · scale · (q − 32).
// Interface: slices/f32.wgsl.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).
const BLOCK_VALUES: u32 = 256u;
const BLOCK_SLICES: u32 = 32u;
const XV: u32 = 2u;
const Q6_K_BYTES: u32 = 210u;

fn x_index(s: u32, i: u32) -> u32 {
    let k = s % 32u;
    return (s / 32u) * 64u + 32u * (k / 16u) + k % 16u + 16u * i;
}

// The i8 at byte offset `off`.
fn ld_i8(off: u32) -> f32 {
    return f32(extractBits(bitcast<i32>(ld(off >> 2u)), (off & 3u) * 8u, 8u));
}

fn slice_dot(row: u32, s: u32, xv: array<vec4<f32>, XV>) -> f32 {
    let b = row + (s / 32u) * Q6_K_BYTES;
    let k = s % 32u;
    let h = k / 16u;
    let l = 4u * (k % 16u);
    let second = select(0u, 1u, l >= 32u);
    let ql = ld_u32(b + 64u * h + l);
    let qh = ld_u32(b + 128u + 32u * h + l % 32u);
    let sc = b + 192u + 8u * h + (l % 32u) / 16u + 2u * second;
    let shift = 2u * second;
    let bits = vec4<u32>(0u, 8u, 16u, 24u);
    let h_lo = ((vec4<u32>(qh) >> (bits + vec4<u32>(shift))) & vec4<u32>(3u)) << vec4<u32>(4u);
    let h_hi = ((vec4<u32>(qh) >> (bits + vec4<u32>(shift + 4u))) & vec4<u32>(3u)) << vec4<u32>(4u);
    let q_lo = nib4(ql, 0u) + vec4<f32>(h_lo) - 32.0;
    let q_hi = nib4(ql, 4u) + vec4<f32>(h_hi) - 32.0;
    return ld_f16(b + 208u) * (ld_i8(sc) * dot(q_lo, xv[0]) + ld_i8(sc + 4u) * dot(q_hi, xv[1]));
}
