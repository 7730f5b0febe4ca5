// qmatvec.wgsl: decode-time y[1, out] = x[1, in] · Wᵀ with W in a GGUF block format, dequantized in
// registers (never in memory).
//
// Bindings (group 0), all declared read_write although only y is written: cubecl suballocates
// buffers from shared pages, and WebGPU rejects a dispatch that binds one buffer both read-only
// and read_write.
//   0  w: array<u32>        GGUF tensor bytes, padded to u32; the out rows of row_bytes start at base
//   1  x: array<vec4<f32>>  the input row, `in` f32 (in is a multiple of 32)
//   2  y: array<f32>        the output row, `out` f32
//   3  p: array<u32>        [in, out, tokens (= 1), row_bytes, base]: rows start at byte `base` of w
// Workgroup: WORKGROUP_SIZE invocations = ROWS_PER_WORKGROUP rows x LANES lanes. Lane l of a row
// takes the 32-weight chunks l, l + LANES, ... so neighbouring lanes read neighbouring blocks;
// the lanes' partial sums meet in workgroup memory behind a single barrier, and lane 0 adds them
// in lane order (deterministic). One barrier per workgroup: barrier-heavy tree reductions were
// measured far slower on the CPU WebGPU adapters (SwiftShader, llvmpipe). Workgroup g takes rows
// g * ROWS_PER_WORKGROUP ..; the dispatch is 1-D.
// The type comes from the appended dequant/<type>.wgsl (dequant32) and qcommon.wgsl (byte reads).
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> p: array<u32>;

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const LANES: u32 = {{lanes}}u;
const ROWS_PER_WORKGROUP: u32 = WORKGROUP_SIZE / LANES;

var<workgroup> partial: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let chunks = p[0] / 32u;
    let rows = p[1];
    let row_bytes = p[3];
    let lane = lid % LANES;
    let row = wg.x * ROWS_PER_WORKGROUP + lid / LANES;

    var acc = 0.0;
    if (row < rows) {
        let row_off = p[4] + row * row_bytes;
        for (var c = lane; c < chunks; c += LANES) {
            // var, not let: naga may refuse dynamic indices into array values.
            var wv = dequant32(row_off, c);
            let xb = c * 8u;
            var s = 0.0;
            for (var i = 0u; i < 8u; i++) {
                s += dot(wv[i], x[xb + i]);
            }
            acc += s;
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (lane == 0u && row < rows) {
        var sum = 0.0;
        for (var l = 0u; l < LANES; l++) {
            sum += partial[lid + l];
        }
        y[row] = sum;
    }
}
