// sweep.wgsl: a benchmark's floor, not a model kernel. y[row] = XOR of the row's u32 words, one row
// per invocation, each row read in 16-byte loads as qmatvec_unrolled.wgsl reads its weights, with
// no arithmetic but the XOR. Its time over a model's weight bytes is the least any decode step
// that reads those bytes once can take on the adapter (crates/gpu/tests/bench.rs,
// `weight_sweep_floor`; BENCHMARKS.md says what it shows on lavapipe).
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  w: array<vec4<u32>>  ROWS rows of ROW_VEC4S vec4s each, back to back
//   1  y: array<u32>        [ROWS]
// ROWS and ROW_VEC4S are template constants. Workgroup: WORKGROUP_SIZE invocations, one row each.
// Dispatch: x = ceil(ROWS / WORKGROUP_SIZE).
// Tested by the benchmark itself: every y against the XOR computed on the CPU.

@group(0) @binding(0) var<storage, read_write> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;

const ROWS: u32 = {{rows}}u;
const ROW_VEC4S: u32 = {{row_vec4s}}u;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= ROWS) {
        return;
    }
    let r = gid.x * ROW_VEC4S;
    var acc = vec4<u32>(0u);
    for (var i = 0u; i < ROW_VEC4S; i++) {
        acc ^= w[r + i];
    }
    y[gid.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
