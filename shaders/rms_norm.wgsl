// rms_norm.wgsl: y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · w[:], for every row r.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  x: array<f32>  the input, row-major [rows, n]
//   1  w: array<f32>  the weight, [n]
//   2  y: array<f32>  the output, row-major [rows, n]
//   3  p: uniform     [rows, n, bits of eps as f32]
// Workgroup: WORKGROUP_SIZE invocations, one row each, summed serially in f32: no workgroup
// memory and no barriers (Burn's reductions use them, and barriers cost seconds per dispatch on
// SwiftShader). Dispatch: x = row groups.
// Tested against the f64 formula on the CPU (crates/gpu/tests/ops.rs).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

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
        let v = x[base + i];
        ss += v * v;
    }
    let inv = 1.0 / sqrt(ss / f32(n) + bitcast<f32>(p(2)));
    for (var i = 0u; i < n; i++) {
        y[base + i] = x[base + i] * inv * w[i];
    }
}
