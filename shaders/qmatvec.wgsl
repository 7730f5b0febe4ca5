// qmatvec.wgsl: y[t, out] = W · x[t] for each token t, W in a GGUF block format: every block's
// dot product with x is computed straight from its bytes, without a dequantized copy. Each
// invocation computes ROWS consecutive rows of one token, so every x value it loads serves ROWS
// rows. Decode (one token) everywhere but on llvmpipe; prefill on CPU adapters.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  w: array<u32>        GGUF rows, each padded to row_stride bytes (16n), from byte base (16n)
//   1  x: array<vec4<f32>>  the input, row-major [T, in] f32 (in is a multiple of 32)
//   2  y: array<f32>        the output, row-major [T, out] f32
//   3  p: uniform           [in, out, T, row_stride, base]: rows start at byte `base` of w
// Workgroup: WORKGROUP_SIZE invocations of ROWS rows each; no workgroup memory, no barriers.
// Dispatch: x = ceil(out / (ROWS · WORKGROUP_SIZE)), y = T.
// The type's dot_unit and dot_tail come from dot4/<type>.wgsl: a unit is the stretch of a row
// the type reads as whole u32 words (a block, or two 18- or 34-byte blocks: 36 and 68 bytes).
// Why this shape (measured on SwiftShader, Chromium's CPU adapter, where a matvec costs its load
// instructions): 4 rows sharing each x load and whole-word block reads made a decode token 2.2x
// faster than one row per invocation reading blocks at any even byte; SwiftShader runs a
// workgroup on one thread, so 16 invocations per workgroup keep small matrices on every core.
// Not measured on a real GPU (none here): there a workgroup per row reducing through workgroup
// memory or subgroups would likely serve better, which needs telling the adapters apart (in the
// browser wgpu reports no adapter name) and a GPU to measure on.
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const ROWS: u32 = {{rows}}u;

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let first = (wg.x * WORKGROUP_SIZE + lid) * ROWS;
    let out = p(1);
    let t = wg.y;
    let xt = t * (p(0) / 4u);
    if (first >= out) {
        return;
    }
    // Rows past the last are read as the last one and not stored: the loop has no branch.
    let rows = min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(out - 1u));
    let r = (vec4<u32>(p(4)) + rows * p(3)) / 4u;
    let units = p(0) / UNIT_VALUES;
    var acc = vec4<f32>(0.0);
    for (var u = 0u; u < units; u++) {
        acc += dot_unit(r, u, xt);
    }
    if (units * UNIT_VALUES < p(0)) {
        acc += dot_tail(r, units, xt);
    }
    let yt = t * out + first;
    y[yt] = acc.x;
    if (first + 1u < out) {
        y[yt + 1u] = acc.y;
    }
    if (first + 2u < out) {
        y[yt + 2u] = acc.z;
    }
    if (first + 3u < out) {
        y[yt + 3u] = acc.w;
    }
}

// Values 32c .. 32c + 32 of the token whose x starts at vec4 xt, as 8 vec4s.
fn x_block(xt: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = xt + 8u * c;
    return array<vec4<f32>, 8>(x[b], x[b + 1u], x[b + 2u], x[b + 3u], x[b + 4u], x[b + 5u], x[b + 6u], x[b + 7u]);
}

// The sum of the 32 values of a block of x.
fn x_sum(v: array<vec4<f32>, 8>) -> f32 {
    let s = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    return s.x + s.y + s.z + s.w;
}
