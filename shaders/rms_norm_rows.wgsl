// rms_norm_rows.wgsl (GPU family): RMSNorm with one workgroup per row, its lanes striding over
// the row's vec4s (coalesced) and summing x² in workgroup memory or subgroups (reduce/*.wgsl).
// MODE ({{mode}}) says what surrounds the norm, n(v) = v / sqrt(mean(v²) + eps) · w:
//   0  y = n(x)
//   1  s = x + a, y = n(s)          (the residual add, then the next sub-layer's norm)
//   2  y = a + n(x)                 (a sub-layer's output norm, then the residual add: Gemma)
//
// Bindings (group 0), all read_write (cubecl binds every buffer so):
//   0  x: array<vec4<f32>>  row-major [rows, n] (n a multiple of 4)
//   1  w: array<vec4<f32>>  the weight, [n]
//   2  y: array<vec4<f32>>  row-major [rows, n]
//   3  a: array<vec4<f32>>  (modes 1 and 2) row-major [rows, n]
//   4  s: array<vec4<f32>>  (mode 1) x + a, row-major [rows, n]
//   then p: uniform          [rows, n, bits of eps as f32, workgroups along x]
// Workgroup: WORKGROUP_SIZE lanes, one row. Dispatch: rows folded into x · y.
// Tested against the f64 formula on the CPU (crates/gpu/tests/ops.rs).
@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
{{bindings}}

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const LANES: u32 = WORKGROUP_SIZE;
const NV: u32 = 1u;
const MODE: u32 = {{mode}}u;

var<workgroup> red: array<f32, NV * WORKGROUP_SIZE>;

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
{{subgroup_builtins}}
) {
    let row = wg.y * p(3) + wg.x;
    if (row >= p(0)) {
        return;
    }
    let group = 0u;
    let lane = lid;
    let n4 = p(1) / 4u;
    let base = row * n4;
    var vals: array<f32, NV>;
    for (var i = lane; i < n4; i += LANES) {
        var v = x[base + i];
        if (MODE == 1u) {
            v += a_at(base + i);
            s_set(base + i, v);
        }
        vals[0] += dot(v, v);
    }
{{reduce}}
    let inv = 1.0 / sqrt(red[0] / f32(p(1)) + bitcast<f32>(p(2)));
    for (var i = lane; i < n4; i += LANES) {
        var v = x[base + i];
        if (MODE == 1u) {
            v += a_at(base + i);
        }
        var o = v * inv * w[i];
        if (MODE == 2u) {
            o += a_at(base + i);
        }
        y[base + i] = o;
    }
}
