// dequant/q6_k.wgsl: Q6_K weights for the quantized matmul kernels (qmatmul.wgsl, qembed.wgsl).
// Super-block (210 bytes, 256 weights): 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits),
// 16 i8 scales, f16 d. Sub-block j = 4*hb + k, hb being the 128-weight half: its weight l takes
// the low (k < 2) or high nibble of ql[64*hb + 32*(k%2) + l], bits 2k..2k+2 of qh[32*hb + l] as
// bits 4..6, and scale sc[8*hb + 2k + l/16]; weight = d * scale * (q - 32).
// dequant32(row, c) returns weights 32c .. 32c+32 (sub-block c % 8 of super-block c / 8) of the
// row starting at byte `row`, element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const Q6_K_BYTES: u32 = 210u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c / 8u) * Q6_K_BYTES;
    let j = c % 8u;
    let hb = j / 4u;
    let k = j % 4u;
    let ql = b + 64u * hb + 32u * (k % 2u);
    let shift = 4u * (k / 2u);
    let qh = b + 128u + 32u * hb;
    let sc = b + 192u + 8u * hb + 2u * k;
    let d = w_f16(b + 208u);
    // Same association as ggml: (d * scale) * q.
    let d_lo = d * f32(w_i8(sc));
    let d_hi = d * f32(w_i8(sc + 1u));
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let h = nibbles(w_u32(qh + 4u * i) >> (2u * k), 0u) & vec4<u32>(3u);
        let q = vec4<f32>(nibbles(w_u32(ql + 4u * i), shift) | (h << vec4<u32>(4u))) - 32.0;
        r[i] = select(d_hi, d_lo, i < 4u) * q;
    }
    return r;
}
