// codes/q4_0.wgsl: a Q4_0 chunk as 8-bit codes for matmul_tiles_dp4a.wgsl. Block (18 bytes): f16
// d, 16 bytes of nibbles (weight j < 16 the low nibble of byte j, j + 16 its high nibble);
// weight = d · (q − 8), so the codes are q − 8, the scale d and the offset 0. Interface:
// codes/q8_0.wgsl. Tested through matmul_tiles_dp4a.wgsl (crates/gpu/tests/qmatmul.rs).
const Q4_0_BYTES: u32 = 18u;

fn codes32(row: u32, c: u32) -> Codes {
    let b = row + c * Q4_0_BYTES;
    var r: Codes;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 2u + 4u * i);
        r.q[i] = pack4xI8(vec4<i32>(nibbles(q, 0u)) - vec4<i32>(8));
        r.q[i + 4u] = pack4xI8(vec4<i32>(nibbles(q, 4u)) - vec4<i32>(8));
    }
    r.d = w_f16(b);
    r.m = 0.0;
    return r;
}
