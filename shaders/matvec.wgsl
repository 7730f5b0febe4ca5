// matvec.wgsl (GPU family): y = W · x for one token (decode), W in a GGUF block format, read
// straight from its blocks, with what the neighbouring ops fold in:
//   NORM     x is first RMS-normalized: y = W · (x ⊙ g) / sqrt(mean(x²) + eps) (the sub-layer's
//            norm, so it needs no dispatch of its own; every row group sums x² itself)
//   BIAS     + b[row]
//   RESIDUAL + r[row] (the residual add after the attention output and the down projection)
//   GLU      the matrix is [gate; up] (rows 0 .. n and n .. 2n): y[i] = act(gate_i · x) · (up_i · x),
//            act = SiLU or tanh-GELU; a lane's rows are gate rows i, i + 1 and up rows i, i + 1
// Lanes split K: lane l of a row group reads slices l, l + LANES, … of each of its ROWS rows, a
// slice being a few consecutive u32 words of one block (slices/<type>.wgsl), so the 32 lanes of a
// subgroup read consecutive words (coalesced). The x values of a slice are loaded once for the
// ROWS rows. Partial sums are reduced per row group in workgroup memory, or with subgroupAdd
// where the device has subgroups and a subgroup fits in a row group (subgroup_size is read, never
// assumed).
//
// Bindings (group 0), all read_write (cubecl binds every buffer so):
//   0  w: array<u32>        GGUF rows, each padded to row_stride bytes (16n), from byte base
//   1  x: array<vec4<f32>>  the input, [in] f32 (in a multiple of 32)
//   2  y: array<f32>        the output; rows are written from y_offset on
//   then, as the `bindings` template value declares them: g (NORM, [in]), b (BIAS, [rows]), r (RESIDUAL, like y),
//   trace (the coalescing test's instrumented build only), and the parameter uniform:
//   p: [in, rows (GLU: 2n), row_stride, base, y_offset, groups, groups along x, bits of eps,
//       activation (0 SiLU, 1 GELU), rows of this part (outputs: GLU n)]
// Workgroup: WORKGROUP_SIZE = GROUPS row groups of LANES lanes; a row group computes ROWS rows
// (GLU: 2 outputs). Dispatch: groups folded into x · y (x ≤ 65,535); a workgroup past the last
// returns at once (uniformly: no barrier follows a non-uniform return).
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs), and its
// loads against the coalescing bound (crates/gpu/tests/coalescing.rs).
@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
{{bindings}}

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const LANES: u32 = {{lanes}}u;
const GROUPS: u32 = WORKGROUP_SIZE / LANES;
const ROWS: u32 = {{rows}}u;
const NORM: bool = {{norm}};
// Values each row group reduces: ROWS sums, then Σx².
const NV: u32 = ROWS + 1u;
const GLU: bool = {{glu}};
// sqrt(2 / π), and the clamp that keeps an exp-based tanh finite (as gated.wgsl).
const GELU_C: f32 = 0.7978845608;
const TANH_CLAMP: f32 = 15.0;

// Per value and lane: the partial sums (reduce/*.wgsl).
var<workgroup> red: array<f32, NV * WORKGROUP_SIZE>;

// The weight word at index i (every weight load goes through here: the instrumented build
// records it).
fn ld(i: u32) -> u32 {
{{record}}
    return w[i];
}

// The 4 bytes at byte offset `off` (even) as a little-endian u32, without a branch: lanes whose
// blocks start at different word offsets stay together.
fn ld_u32(off: u32) -> u32 {
    let i = off >> 2u;
    let lo = ld(i);
    let hi = ld(i + 1u);
    return select((lo >> 16u) | (hi << 16u), lo, (off & 2u) == 0u);
}

// The f16 at byte offset `off` (even), widened.
fn ld_f16(off: u32) -> f32 {
    let v = unpack2x16float(ld(off >> 2u));
    return select(v.x, v.y, (off & 2u) != 0u);
}

// Low (shift 0) or high (shift 4) nibble of each byte of q, lowest byte first.
fn nib4u(q: u32, shift: u32) -> vec4<u32> {
    return (vec4<u32>(q) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(shift))) & vec4<u32>(15u);
}

// nib4u as f32.
fn nib4(q: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>(nib4u(q, shift));
}

// The bytes of q as signed values, lowest first.
fn sbytes4(q: u32) -> vec4<f32> {
    let s = vec4<i32>(bitcast<i32>(q)) << vec4<u32>(24u, 16u, 8u, 0u);
    return vec4<f32>(s >> vec4<u32>(24u));
}

fn activation(g: f32) -> f32 {
    if (p(8) == 0u) {
        return g / (1.0 + exp(-g));
    }
    return 0.5 * g * (1.0 + tanh(clamp(GELU_C * (g + 0.044715 * g * g * g), -TANH_CLAMP, TANH_CLAMP)));
}

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
{{subgroup_builtins}}
) {
    let cols = p(0);
    let wg_linear = wg.y * p(6) + wg.x;
    if (wg_linear >= p(5)) {
        return;
    }
{{trace_init}}
    let group = lid / LANES;
    let lane = lid % LANES;
    // The row group's first output: a row, or with GLU a gate/up pair.
    let out_rows = p(9);
    let first = (wg_linear * GROUPS + group) * select(ROWS, ROWS / 2u, GLU);
    var row_byte: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        var row = first + r;
        if (GLU) {
            row = first + r % 2u + select(0u, out_rows, r >= 2u);
        }
        // Rows past the last are read as the last one and not stored.
        row_byte[r] = p(3) + min(row, p(1) - 1u) * p(2);
    }

    var acc: array<f32, ROWS>;
    let slices = cols / BLOCK_VALUES * BLOCK_SLICES;
    for (var s = lane; s < slices; s += LANES) {
        var xv: array<vec4<f32>, XV>;
        for (var i = 0u; i < XV; i++) {
            let xi = x_index(s, i);
            xv[i] = x[xi] * gain(xi);
        }
        for (var r = 0u; r < ROWS; r++) {
            acc[r] += slice_dot(row_byte[r], s, xv);
        }
    }
    // What the row group sums: the rows, then x² (NORM).
    var vals: array<f32, NV>;
    for (var r = 0u; r < ROWS; r++) {
        vals[r] = acc[r];
    }
    if (NORM) {
        for (var i = lane; i < cols / 4u; i += LANES) {
            let v = x[i];
            vals[ROWS] += dot(v, v);
        }
    }

    // Sums per row group into red[v * WORKGROUP_SIZE + group * LANES].
{{reduce}}

    // Lanes 0 .. ROWS of the row group finish one row each (GLU: lanes 0 and 1 one output).
    var inv = 1.0;
    if (NORM) {
        inv = 1.0 / sqrt(red[ROWS * WORKGROUP_SIZE + group * LANES] / f32(cols) + bitcast<f32>(p(7)));
    }
    let outputs = select(ROWS, ROWS / 2u, GLU);
    if (lane < outputs && first + lane < out_rows) {
        let o = first + lane;
        var v = red[lane * WORKGROUP_SIZE + group * LANES] * inv + bias_at(o);
        if (GLU) {
            let up = red[(lane + 2u) * WORKGROUP_SIZE + group * LANES] * inv + bias_at(out_rows + o);
            v = activation(v) * up;
        }
        y[p(4) + o] = v + residual_at(p(4) + o);
    }
}
