// codes/q8_0.wgsl: a Q8_0 chunk as 8-bit codes for matmul_tiles_dp4a.wgsl. Block (34 bytes): f16
// d, 32 i8 q; weight = d · q. codes32(row, c) returns block c of the row starting at byte `row`:
// its 32 codes packed four to a u32 (element 4i + e in byte e of word i), the scale d and the
// offset 0. Tested through matmul_tiles_dp4a.wgsl (crates/gpu/tests/qmatmul.rs).
const Q8_0_BYTES: u32 = 34u;

fn codes32(row: u32, c: u32) -> Codes {
    let b = row + c * Q8_0_BYTES;
    var r: Codes;
    for (var i = 0u; i < 8u; i++) {
        r.q[i] = w_u32(b + 2u + 4u * i);
    }
    r.d = w_f16(b);
    r.m = 0.0;
    return r;
}
