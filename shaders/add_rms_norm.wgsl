// add_rms_norm.wgsl: the residual add fused with the next RMSNorm, for every row r:
//   s[r, :] = x[r, :] + a[r, :]
//   y[r, :] = s[r, :] / sqrt(mean(s[r, :]²) + eps) · w[:]
// s is the new residual stream, y the normalized input of the next sub-layer: one dispatch
// instead of an add and a norm.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  x: array<vec4<f32>>  the residual stream, row-major [rows, n] (n a multiple of 4)
//   1  a: array<vec4<f32>>  what the sub-layer adds to it, row-major [rows, n]
//   2  w: array<vec4<f32>>  the norm's weight, [n]
//   3  s: array<vec4<f32>>  x + a, row-major [rows, n]
//   4  y: array<vec4<f32>>  the normalized sum, row-major [rows, n]
//   5  p: uniform     [rows, n, bits of eps as f32]
// Workgroup: WORKGROUP_SIZE invocations, one row each, summed serially in vec4s (no workgroup
// memory and no barriers, as in rms_norm.wgsl). Dispatch: x = row groups.
// Tested against the f64 formula on the CPU (crates/gpu/tests/ops.rs).

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> s: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let n4 = p(1) / 4u;
    if (row >= p(0)) {
        return;
    }
    let base = row * n4;
    var ss = vec4<f32>(0.0);
    for (var i = 0u; i < n4; i++) {
        let v = x[base + i] + a[base + i];
        s[base + i] = v;
        ss += v * v;
    }
    let inv = 1.0 / sqrt((ss.x + ss.y + ss.z + ss.w) / f32(p(1)) + bitcast<f32>(p(2)));
    for (var i = 0u; i < n4; i++) {
        y[base + i] = s[base + i] * inv * w[i];
    }
}
