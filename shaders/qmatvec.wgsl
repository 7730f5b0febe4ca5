// qmatvec.wgsl: y[out] = W · x for one token (decode), W in a GGUF block format: each 32-weight
// block's dot product with x is computed straight from its bytes (the appended dot/<type>.wgsl,
// dot32), without materializing the dequantized weights.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  w: array<u32>        GGUF rows, each padded to row_stride bytes (16n), from byte base
//   1  x: array<vec4<f32>>  the input, [in] f32 (in is a multiple of 32)
//   2  y: array<f32>        the output, [out] f32
//   3  p: uniform           [in, out, 1, row_stride, base]: rows start at byte `base` of w
// Workgroup: WORKGROUP_SIZE invocations, one output row each; no workgroup memory, no barriers.
// On the CPU WebGPU adapters (SwiftShader, lavapipe) the dot form without a dequantized array ran
// 5x faster than dequantizing into registers (qmatmul.wgsl with a one-token tile), and splitting
// a row across invocations with a workgroup reduction was slower. Dispatch: x = row groups.
// The type comes from dot/<type>.wgsl (or dot/generic.wgsl over dequant/<type>.wgsl) and
// qcommon.wgsl (byte reads).
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let row = wg.x * WORKGROUP_SIZE + lid;
    if (row >= p(1)) {
        return;
    }
    let row_off = p(4) + row * p(3);
    var acc = 0.0;
    for (var c = 0u; c < p(0) / 32u; c++) {
        acc += dot32(row_off, c, c * 8u);
    }
    y[row] = acc;
}
