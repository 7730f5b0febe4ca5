// gated.wgsl: the gated MLP's element-wise step, y[r, i] = act(gate[r, i]) · up[r, i] for rows r
// of n values, with act = SiLU (x / (1 + e^−x), SwiGLU) or the tanh approximation of GELU (GeGLU,
// Gemma).
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  y:    array<f32>  row-major [rows, n]
//   1… the sources (the `sources` template value, read through gate_at and up_at): row r's n
//      gate values at r · gate_width + gate_start, its up values at r · up_width + up_start;
//      either 1 gate, 2 up, or 1 alone when both are halves of one fused gate-and-up matmul's
//      output (as in rope_kv.wgsl)
//   then p: uniform      [n, activation (0: SiLU, 1: GELU tanh), groups per dispatch row,
//                        rows · n, gate_start, gate_width, up_start, up_width]
// Workgroup: WORKGROUP_SIZE invocations, one element each. Dispatch: x · y groups covering
// rows · n (y > 1 only past the 65,535 workgroups one dimension may hold).
// Tested against the f64 formulas on the CPU (crates/gpu/tests/ops.rs).

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
{{sources}}

// sqrt(2 / π).
const GELU_C: f32 = 0.7978845608;
// tanh saturates to ±1 in f32 well before this; clamping keeps exp-based tanh from overflowing.
const TANH_CLAMP: f32 = 15.0;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p(2) * {{workgroup_size}}u + gid.x;
    if (i >= p(3)) {
        return;
    }
    let r = i / p(0);
    let c = i % p(0);
    let g = gate_at(r * p(5) + p(4) + c);
    var a: f32;
    if (p(1) == 0u) {
        a = g / (1.0 + exp(-g));
    } else {
        a = 0.5 * g * (1.0 + tanh(clamp(GELU_C * (g + 0.044715 * g * g * g), -TANH_CLAMP, TANH_CLAMP)));
    }
    y[i] = a * up_at(r * p(7) + p(6) + c);
}
