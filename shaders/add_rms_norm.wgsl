// add_rms_norm.wgsl: the residual add fused with the next RMSNorm, for every row r:
//   s[r, :] = x[r, :] + a[r, :]
//   y[r, :] = s[r, :] / sqrt(mean(s[r, :]²) + eps) · w[:]
// s is the new residual stream, y the normalized input of the next sub-layer: one dispatch
// instead of an add and a norm.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  x: array<f32>  the residual stream, row-major [rows, n]
//   1  a: array<f32>  what the sub-layer adds to it, row-major [rows, n]
//   2  w: array<f32>  the norm's weight, [n]
//   3  s: array<f32>  x + a, row-major [rows, n]
//   4  y: array<f32>  the normalized sum, row-major [rows, n]
//   5  p: uniform     [rows, n, bits of eps as f32]
// Workgroup: WORKGROUP_SIZE invocations, one row each, summed serially (no workgroup memory and
// no barriers, as in rms_norm.wgsl). Dispatch: x = row groups.
// Tested against the f64 formula on the CPU (crates/gpu/tests/ops.rs).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> s: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let n = p(1);
    if (row >= p(0)) {
        return;
    }
    let base = row * n;
    var ss = 0.0;
    for (var i = 0u; i < n; i++) {
        let v = x[base + i] + a[base + i];
        s[base + i] = v;
        ss += v * v;
    }
    let inv = 1.0 / sqrt(ss / f32(n) + bitcast<f32>(p(2)));
    for (var i = 0u; i < n; i++) {
        y[base + i] = s[base + i] * inv * w[i];
    }
}
