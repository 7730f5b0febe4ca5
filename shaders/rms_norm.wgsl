// rms_norm.wgsl: y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · w[:], for every row r.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  x: array<vec4<f32>>  the input, row-major [rows, n] (n a multiple of 4: a quarter of
//                           the load instructions, which the CPU adapters pay for)
//   1  w: array<vec4<f32>>  the weight, [n]
//   2  y: array<vec4<f32>>  the output, row-major [rows, n]
//   3  p: uniform     [rows, n, bits of eps as f32]
// Workgroup: WORKGROUP_SIZE invocations, one row each, summed serially in vec4s: no workgroup
// memory and no barriers (Burn's reductions use them, and barriers cost seconds per dispatch on
// SwiftShader). Dispatch: x = row groups.
// Tested against the f64 formula on the CPU (crates/gpu/tests/ops.rs).

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

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
        let v = x[base + i];
        ss += v * v;
    }
    let inv = 1.0 / sqrt((ss.x + ss.y + ss.z + ss.w) / f32(p(1)) + bitcast<f32>(p(2)));
    for (var i = 0u; i < n4; i++) {
        y[base + i] = x[base + i] * inv * w[i];
    }
}
