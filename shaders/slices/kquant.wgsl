// slices/kquant.wgsl: shared by slices/q4_k.wgsl and slices/q5_k.wgsl: where a slice's x values
// are (word k of the nibbles holds weights 64 · (k / 8) + 4 · (k % 8) .. + 4, low nibbles, and the
// same 32 further on, high nibbles), and the 6-bit scale and minimum of sub-block j (0 .. 8) from
// the three words of packed scales of a super-block (bytes 4 .. 16, after f16 d and dmin), as
// ggml's get_scale_min_k4.
// Tested through matvec.wgsl (crates/gpu/tests/qmatmul.rs).

fn x_index(s: u32, i: u32) -> u32 {
    let k = s % 32u;
    return (s / 32u) * 64u + 16u * (k / 8u) + k % 8u + 8u * i;
}

fn byte_of(v: u32, i: u32) -> u32 {
    return (v >> (8u * i)) & 255u;
}

// (scale, minimum) of sub-block j, given scale words s0, s1, s2.
fn k_scale_min(s0: u32, s1: u32, s2: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(byte_of(s0, j) & 63u), f32(byte_of(s1, j) & 63u));
    }
    let hi = byte_of(s2, j - 4u);
    let sc = (hi & 15u) | ((byte_of(s0, j - 4u) >> 6u) << 4u);
    let m = (hi >> 4u) | ((byte_of(s1, j - 4u) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}
