// iq4.wgsl: the 16 non-uniform levels IQ4_NL and IQ4_XS nibbles index (ggml's kvalues_iq4nl:
// -127 -104 -83 -65 -49 -35 -22 -10 1 13 25 38 53 69 89 113), as i8 bytes packed in four words
// and picked with selects and shifts: no array, so nothing is indexed dynamically (which not
// every WGSL compiler lowers well), and four lookups are one vector operation.
// Appended to the dequant/iq4_*.wgsl and slices/iq4_*.wgsl kernels; tested through them
// (crates/gpu/tests/qmatmul.rs), against burrow_gguf's table.
const IQ4_W0: u32 = 0xbfad9881u;
const IQ4_W1: u32 = 0xf6eaddcfu;
const IQ4_W2: u32 = 0x26190d01u;
const IQ4_W3: u32 = 0x71594535u;

// The levels of four nibbles.
fn iq4_levels(n: vec4<u32>) -> vec4<f32> {
    let lo = select(vec4<u32>(IQ4_W0), vec4<u32>(IQ4_W1), n >= vec4<u32>(4u));
    let hi = select(vec4<u32>(IQ4_W2), vec4<u32>(IQ4_W3), n >= vec4<u32>(12u));
    let word = select(lo, hi, n >= vec4<u32>(8u));
    let s = bitcast<vec4<i32>>(word) << (vec4<u32>(24u) - 8u * (n % vec4<u32>(4u)));
    return vec4<f32>(s >> vec4<u32>(24u));
}
