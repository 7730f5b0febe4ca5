// qmatvec_unrolled.wgsl: y[out] = W · x for one token (decode), as qmatvec.wgsl computes it, with
// the whole row (or a segment of up to 1024 values) written out for one `in`: the kernel for CPU
// Vulkan drivers (Mesa's lavapipe).
//
// Why: llvmpipe runs the invocations of a workgroup as SIMD lanes. A storage load whose address
// is a compile-time constant, outside any branch, is one scalar load broadcast to the lanes; any
// other address (a loop counter, a parameter, the row) becomes a loop over the lanes with one
// scalar load each. qmatvec.wgsl reads x in a loop, so every x load is such a loop; here every x
// load has a constant address, and each lane reads its row in 16-byte loads (a lane loop per 16
// bytes, not per 4). On lavapipe (Q4_1, 24576 x 576) this ran 3.5x faster than qmatvec.wgsl.
// For the same reason there is no early return: invocations past the last row recompute the last
// row (the branch around the store comes after every load).
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  w: array<vec4<u32>>  GGUF rows, each padded to row_stride bytes (16n), from byte base (16n)
//   1  x: array<vec4<f32>>  the input, [in] f32 (bound at the segment's first value)
//   2  y: array<f32>        the output, [out] f32
//   3  p: uniform           [in, out, 1, row_stride, base, add]: `in` values of each row from
//                           byte base (a segment of longer rows: add = 1 adds to y)
// Workgroup: WORKGROUP_SIZE invocations, one output row each; no workgroup memory, no barriers.
// Dispatch: x = row groups, one dispatch per segment. Prefill runs qmatvec.wgsl instead, which
// beat this kernel run once per token (crates/gpu/src/lib.rs).
// The row (the `row` template value) is generated for the type and `in` (crates/gpu/src/kernel.rs, `unrolled_row`): for each
// 16 bytes i of the row, `let vi = w[r + i];` before its first use; for each block c, one
// `acc += dotw(array<u32, N>(..), xb);` (dot_words/<type>.wgsl) whose words are components of
// the vi (or funnel16 of two, for a block that starts 2 bytes into a word) and whose x starts at
// the constant vec4 index xb.
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).

@group(0) @binding(0) var<storage, read_write> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = min(gid.x, p(1) - 1u);
    let r = (p(4) + row * p(3)) / 16u;
    var acc = 0.0;
{{row}}
    // Only the row's own invocation stores: the duplicates would add a segment twice.
    if (gid.x < p(1)) {
        y[row] = acc + select(0.0, y[row], p(5) != 0u);
    }
}
