// kv/f16.wgsl: kv/f32.wgsl for a cache of f16 pairs (the GPU family, written by rope_heads.wgsl
// with pack2x16float): k and v are `array<vec2<u32>>`, each element four values, so k4(i) / v4(i)
// take the same index as in an f32 cache. No shader-f16: unpack2x16float widens them.
// Tested through the attention kernels (crates/gpu/tests/ops.rs).
fn k4(i: u32) -> vec4<f32> {
    let w = k[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

fn v4(i: u32) -> vec4<f32> {
    let w = v[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
