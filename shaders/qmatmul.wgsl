// qmatmul.wgsl: y[T, out] = x[T, in] · Wᵀ with W in a GGUF block format, dequantized in registers
// (never in memory), for prefill (several tokens) of the types without a dot4/ form of their own;
// decode, and prefill of the others, use qmatvec.wgsl (see rows_prefill in crates/gpu/src/kernel.rs).
//
// Bindings (group 0), all declared read_write although only y is written: cubecl suballocates
// buffers from shared pages, and WebGPU rejects a dispatch that binds one buffer both read-only
// and read_write.
//   0  w: array<u32>        GGUF rows, each padded to row_stride bytes (16n), from byte base
//   1  x: array<vec4<f32>>  the input, row-major [T, in] f32 (in is a multiple of 32)
//   2  y: array<f32>        the output, row-major [T, out] f32
//   3  p: uniform           [in, out, T, row_stride, base]: rows start at byte `base` of w
// Workgroup: WORKGROUP_SIZE invocations, one output row each, TOKEN_TILE tokens each (register
// tiling): every 32-weight chunk is dequantized once and used for TOKEN_TILE tokens, so W is read
// ceil(T / TOKEN_TILE) times instead of T times. The invocations of a workgroup read the same x
// values at the same time. No workgroup memory, no barriers (barriers were measured slow on the
// CPU WebGPU adapters). Dispatch: x = row groups, y = token tiles.
// The type comes from the appended dequant/<type>.wgsl (dequant32) and qcommon.wgsl (byte reads).
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const TOKEN_TILE: u32 = {{token_tile}}u;

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let k = p(0);
    let rows = p(1);
    let tokens = p(2);
    let row_stride = p(3);
    let row = wg.x * WORKGROUP_SIZE + lid;
    let t0 = wg.y * TOKEN_TILE;
    if (row >= rows) {
        return;
    }
    let tile = min(TOKEN_TILE, tokens - t0);
    let x_stride = k / 4u;
    let row_off = p(4) + row * row_stride;

    var acc: array<f32, TOKEN_TILE>;
    for (var c = 0u; c < k / 32u; c++) {
        // var, not let: naga may refuse dynamic indices into array values.
        var wv = dequant32(row_off, c);
        // A constant trip count lets the compiler unroll this loop and keep acc in registers; the
        // tokens past the end of the last tile repeat the last token and are not stored.
        for (var t = 0u; t < TOKEN_TILE; t++) {
            let xb = min(t0 + t, tokens - 1u) * x_stride + c * 8u;
            var s = 0.0;
            for (var i = 0u; i < 8u; i++) {
                s += dot(wv[i], x[xb + i]);
            }
            acc[t] += s;
        }
    }
    for (var t = 0u; t < tile; t++) {
        y[(t0 + t) * rows + row] = acc[t];
    }
}
