// qembed.wgsl: embedding lookup from a quantized table, y[t, :] = dequant(W[ids[t], :]), for a
// table in a GGUF block format (the token embedding stays quantized on the GPU, like every weight).
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  w:   array<u32>        GGUF rows first_row .. first_row + rows, each padded to row_stride
//                             bytes (16n), from byte base
//   1  ids: array<u32>        the step's tokens: [start position, T token ids]
//   2  y:   array<vec4<f32>>  the output, row-major [T, in] f32 (in is a multiple of 32)
//   3  p:   uniform           [in, rows, T, row_stride, base, first_row]
// A table larger than one storage binding is uploaded in row ranges; one dispatch per range writes
// the tokens whose id falls in it, so every output row is written exactly once.
// Workgroup: WORKGROUP_SIZE invocations, one 32-value chunk of one token each. Dispatch: x = chunk
// groups, y = tokens.
// The type comes from the appended dequant/<type>.wgsl (dequant32) and qcommon.wgsl (byte reads).
// Tested against burrow_gguf::dequantize (crates/gpu/tests/qmatmul.rs).

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
) {
    let chunks = p(0) / 32u;
    let c = gid.x;
    let t = gid.y;
    let id = ids[1u + t];
    if (c >= chunks || id < p(5) || id - p(5) >= p(1)) {
        return;
    }
    var v = dequant32(p(4) + (id - p(5)) * p(3), c);
    let yb = t * chunks * 8u + c * 8u;
    for (var i = 0u; i < 8u; i++) {
        y[yb + i] = v[i];
    }
}
