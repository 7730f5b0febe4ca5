// dequant/iq4_nl.wgsl: IQ4_NL weights for the quantized matmul kernels (qmatmul.wgsl,
// qembed.wgsl). Block (18 bytes, 32 weights): f16 d, 16 bytes of nibbles laid out as Q4_0's, each
// an index into 16 non-uniform levels (iq4.wgsl); weight = d * level.
// dequant32(row, c) returns weights 32c .. 32c+32 (block c) of the row starting at byte `row`,
// element 4i+e in r[i][e].
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).
const IQ4_NL_BYTES: u32 = 18u;

fn dequant32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * IQ4_NL_BYTES;
    let d = w_f16(b);
    var r: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 2u + 4u * i);
        r[i] = d * iq4_levels(nibbles(q, 0u));
        r[i + 4u] = d * iq4_levels(nibbles(q, 4u));
    }
    return r;
}
