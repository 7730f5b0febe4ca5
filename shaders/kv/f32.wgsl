// kv/f32.wgsl: the KV cache's readers for attention.wgsl and attention_decode.wgsl when the
// cache holds f32 (the CPU-adapter family): k and v are `array<vec4<f32>>`, and k4(i) / v4(i) the
// vec4 at index i (row · head_dim / 4 + d).
// Tested through the attention kernels (crates/gpu/tests/ops.rs).
fn k4(i: u32) -> vec4<f32> {
    return k[i];
}

fn v4(i: u32) -> vec4<f32> {
    return v[i];
}
