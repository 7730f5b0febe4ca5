// codes/q4_1.wgsl: a Q4_1 chunk as 8-bit codes for matmul_tiles_dp4a.wgsl. Block (20 bytes): f16
// d, f16 m, 16 bytes of nibbles laid out as Q4_0's; weight = d · q + m, so the codes are q (0 ..
// 15), the scale d and the offset m. Interface: codes/q8_0.wgsl.
// Tested through matmul_tiles_dp4a.wgsl (crates/gpu/tests/qmatmul.rs).
const Q4_1_BYTES: u32 = 20u;

fn codes32(row: u32, c: u32) -> Codes {
    let b = row + c * Q4_1_BYTES;
    var r: Codes;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 4u + 4u * i);
        r.q[i] = pack4xI8(vec4<i32>(nibbles(q, 0u)));
        r.q[i + 4u] = pack4xI8(vec4<i32>(nibbles(q, 4u)));
    }
    r.d = w_f16(b);
    r.m = w_f16(b + 2u);
    return r;
}
