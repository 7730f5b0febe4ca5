// bits.wgsl: splitting u32 words of GGUF block bytes into values, shared by every quantized
// matmul kernel (appended after the kernel; qcommon.wgsl reads the words, the unrolled decode
// kernel gets them from 16-byte loads).
// Tested through the kernels that use it (crates/gpu/tests/qmatmul.rs).

// The 4 bytes that start 2 bytes into the little-endian word `a`, `b` being the next word.
fn funnel16(a: u32, b: u32) -> u32 {
    return (a >> 16u) | (b << 16u);
}

// The four bytes of `q` as signed i8, lowest byte first: each byte shifted to the top, then an
// arithmetic shift back down sign-extends it.
fn bytes_i8(q: u32) -> vec4<f32> {
    let s = vec4<i32>(bitcast<i32>(q)) << vec4<u32>(24u, 16u, 8u, 0u);
    return vec4<f32>(s >> vec4<u32>(24u));
}

// One nibble of each of the four bytes of `q` (shift 0: low nibbles, 4: high), lowest byte first.
// Vector shifts rather than four extractBits: one vector operation on the CPU adapters.
fn nibbles(q: u32, shift: u32) -> vec4<u32> {
    return (vec4<u32>(q) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(shift))) & vec4<u32>(15u);
}

// nibbles() as f32, converted as i32: CPUs convert signed integers in one instruction.
fn nibbles_f(q: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(nibbles(q, shift)));
}
