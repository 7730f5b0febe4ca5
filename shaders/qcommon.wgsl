// qcommon.wgsl: byte-level reads of GGUF blocks, shared by every quantized matmul kernel that
// reads its weights as `array<u32>` (bits.wgsl has the helpers on words already read).
//
// Appended (SourceTemplate::add_template) to qmatmul.wgsl / qembed.wgsl together with one
// dequant/*.wgsl file, so the helpers are written once. The kernel declares the weight buffer
// `w: array<u32>` (binding 0): the GGUF rows as uploaded, each zero-padded to 16 bytes.
// GGUF blocks are 18, 20, 34, 144, 176 or 210 bytes, so a block may start on any even byte: WGSL
// storage has no byte or f16 loads (and `shader-f16` is not required), so everything is read as
// u32 words and split with shifts; f16 goes through unpack2x16float.
// Every GGUF type size is even, so every offset passed here is even.

// The 4 bytes at byte offset `off` (even) as a little-endian u32.
fn w_u32(off: u32) -> u32 {
    let i = off >> 2u;
    if ((off & 2u) == 0u) {
        return w[i];
    }
    return (w[i] >> 16u) | (w[i + 1u] << 16u);
}

// The f16 at byte offset `off` (even), widened to f32.
fn w_f16(off: u32) -> f32 {
    let v = unpack2x16float(w[off >> 2u]);
    return select(v.x, v.y, (off & 2u) != 0u);
}

// The byte at offset `off`, unsigned.
fn w_u8(off: u32) -> u32 {
    return extractBits(w[off >> 2u], (off & 3u) * 8u, 8u);
}

// The byte at offset `off`, as a signed i8.
fn w_i8(off: u32) -> i32 {
    return extractBits(bitcast<i32>(w[off >> 2u]), (off & 3u) * 8u, 8u);
}

// Scale and minimum (6 bits each) of sub-block `j` (0..8) of the Q4_K/Q5_K block at byte `b`:
// ggml's get_scale_min_k4 over the 12 packed bytes at b + 4.
fn k4_scale_min(b: u32, j: u32) -> vec2<f32> {
    let s = b + 4u;
    if (j < 4u) {
        return vec2<f32>(f32(w_u8(s + j) & 63u), f32(w_u8(s + j + 4u) & 63u));
    }
    let sc = (w_u8(s + j + 4u) & 15u) | ((w_u8(s + j - 4u) >> 6u) << 4u);
    let m = (w_u8(s + j + 4u) >> 4u) | ((w_u8(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Effective scale d·sc and minimum dmin·m of sub-block `j` of the Q4_K/Q5_K block at byte `b`
// (f16 d at b, f16 dmin at b + 2): weight = scale · q − minimum.
fn k4_sub_block(b: u32, j: u32) -> vec2<f32> {
    return vec2<f32>(w_f16(b), w_f16(b + 2u)) * k4_scale_min(b, j);
}
