// codes/q4_k.wgsl: a Q4_K chunk (sub-block) as 8-bit codes for matmul_tiles_dp4a.wgsl.
// Super-block (144 bytes, 256 weights): f16 d, f16 dmin, 12 bytes of 6-bit scales and minimums,
// 128 bytes of nibbles; sub-block j's weights are d · scale_j · q − dmin · min_j (see
// dequant/q4_k.wgsl), so the codes are q (0 .. 15), the scale d · scale_j and the offset
// −dmin · min_j. codes32(row, c) returns sub-block c % 8 of super-block c / 8. Interface:
// codes/q8_0.wgsl. Tested through matmul_tiles_dp4a.wgsl (crates/gpu/tests/qmatmul.rs).
const Q4_K_BYTES: u32 = 144u;

fn codes32(row: u32, c: u32) -> Codes {
    let b = row + (c / 8u) * Q4_K_BYTES;
    let j = c % 8u;
    let qs = b + 16u + 32u * (j / 2u);
    let shift = 4u * (j % 2u);
    var r: Codes;
    for (var i = 0u; i < 8u; i++) {
        r.q[i] = pack4xI8(vec4<i32>(nibbles(w_u32(qs + 4u * i), shift)));
    }
    let dm = k4_sub_block(b, j);
    r.d = dm.x;
    r.m = -dm.y;
    return r;
}
