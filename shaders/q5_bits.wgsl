// q5_bits.wgsl: the 5th bits of Q5_0 and Q5_1 blocks (a u32 qh, bit j for weight j), shared by
// both kernel families (dequant/q5_*.wgsl, slices/q5_*.wgsl).
// Tested through them (crates/gpu/tests/qmatmul.rs).

// Bits `first` .. `first` + 4 of qh, each as 16 or 0.
fn fifth_bits(qh: u32, first: u32) -> vec4<u32> {
    return ((vec4<u32>(qh) >> (vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(first))) & vec4<u32>(1u)) << vec4<u32>(4u);
}
