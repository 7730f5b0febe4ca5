// rope_heads.wgsl (GPU family): one step's queries, keys and values from the fused QKV output to
// where attention reads them, one workgroup per (head slot, token): query heads are RMS-normalized
// per head if the model says so (Qwen3, Gemma 3), rotated (RoPE) and written to q_out as f32; key
// heads likewise, written to the KV cache as f16 pairs (pack2x16float: no shader-f16); value
// heads written to the cache as they are. Token t goes to cache slot pos = start + t and reads
// table row r = pos − shift (its rotary position trails its slot after an image in an M-RoPE
// model; shift 0 otherwise), or r = t when the table is the step's own (per_token: M-RoPE image
// rows). For rotated pair i < n_rot / 2 with (cos, sin) = rope[r, i]: (a, b) -> (a·cos − b·sin, a·sin + b·cos), where (a, b) are dimensions
// (2i, 2i + 1) (the "norm" style, Llama) or (i, i + n_rot / 2) ("neox": Qwen, Gemma …); dimensions
// n_rot .. head_dim pass through (partial rotary, GLM-4). A lane writes one word (two dimensions)
// of the head at a time, so the f16 pairs are written whole.
//
// Bindings (group 0), all read_write (cubecl binds every buffer so):
//   0  rope:    array<f32>  cos and sin interleaved, [rows, n_rot / 2, 2]
//   1  k_cache: array<u32>  [kv_heads, n_ctx, head_dim / 2] f16 pairs
//   2  v_cache: array<u32>  same layout
//   3  q_out:   array<f32>  the rotated queries, [T, heads, head_dim]
//   4  step:    array<u32>  the step's tokens: [start position, token ids …]
//   5  src:     array<f32>  the projections, row-major [T, width]: token t's queries at
//                           t · width + q_start, its keys at t · width + k_start, values at v_start
//   then, as the `bindings` template value declares them: norms (QK_NORM: [2, head_dim], the query norm's weight then
//   the key norm's), and p: uniform [heads, kv_heads, head_dim, n_rot, n_ctx, neox (0 or 1),
//   q_start, k_start, v_start, width, bits of eps as f32, shift, per_token (0 or 1)]
// Workgroup: WORKGROUP_SIZE lanes over the words of one head. Dispatch: x = heads + 2 · kv_heads
// slots (queries, keys, values), y = T tokens.
// Tested against the f64 formula on the CPU for both pair styles, partial rotary, the norms, a
// shift and a per-token table (crates/gpu/tests/ops.rs), and end to end by the fixtures on
// --kernels gpu (the Qwen2.5-VL ones for M-RoPE).

@group(0) @binding(0) var<storage, read_write> rope: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> src: array<f32>;
{{bindings}}

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const LANES: u32 = WORKGROUP_SIZE;
const NV: u32 = 1u;
const QK_NORM: bool = {{qk_norm}};

var<workgroup> red: array<f32, NV * WORKGROUP_SIZE>;

// What the slot's dimension d is before rotation: the source, normalized for q and k heads with
// a norm.
var<private> base: u32;
var<private> inv: f32;
var<private> norm_at: u32;

fn value(d: u32) -> f32 {
    var x = src[base + d];
    if (QK_NORM && norm_at != 0xffffffffu) {
        x *= inv * norm_weight(norm_at + d);
    }
    return x;
}

// Dimension d after RoPE at table row `row` (r · n_rot / 2).
fn rotated(d: u32, row: u32) -> f32 {
    let n_rot = p(3);
    if (d >= n_rot) {
        return value(d);
    }
    let half = n_rot / 2u;
    if (p(5) != 0u) {
        let i = d % half;
        let c = rope[(row + i) * 2u];
        let s = rope[(row + i) * 2u + 1u];
        if (d < half) {
            return value(d) * c - value(d + half) * s;
        }
        return value(d - half) * s + value(d) * c;
    }
    let i = d / 2u;
    let c = rope[(row + i) * 2u];
    let s = rope[(row + i) * 2u + 1u];
    if (d % 2u == 0u) {
        return value(d) * c - value(d + 1u) * s;
    }
    return value(d - 1u) * s + value(d) * c;
}

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
{{subgroup_builtins}}
) {
    let heads = p(0);
    let kv_heads = p(1);
    let hd = p(2);
    let n_ctx = p(4);
    let slot = wg.x;
    let t = wg.y;
    let group = 0u;
    let lane = lid;
    let row = t * p(9);
    // 0: a query head, 1: a key head, 2: a value head.
    var kind = 0u;
    var head = slot;
    if (slot >= heads + kv_heads) {
        kind = 2u;
        head = slot - heads - kv_heads;
        base = row + p(8) + head * hd;
    } else if (slot >= heads) {
        kind = 1u;
        head = slot - heads;
        base = row + p(7) + head * hd;
    } else {
        base = row + p(6) + head * hd;
    }
    norm_at = 0xffffffffu;
    inv = 1.0;
    if (QK_NORM && kind != 2u) {
        var vals: array<f32, NV>;
        for (var d = lane; d < hd; d += LANES) {
            let x = src[base + d];
            vals[0] += x * x;
        }
{{reduce}}
        inv = 1.0 / sqrt(red[0] / f32(hd) + bitcast<f32>(p(10)));
        norm_at = kind * hd;
    }
    let pos = step[0] + t;
    var r = pos - p(11);
    if (p(12) != 0u) {
        r = t;
    }
    let table = r * (p(3) / 2u);
    for (var w = lane; w < hd / 2u; w += LANES) {
        let d = 2u * w;
        if (kind == 0u) {
            let o = (t * heads + head) * hd + d;
            q_out[o] = rotated(d, table);
            q_out[o + 1u] = rotated(d + 1u, table);
        } else if (kind == 1u) {
            k_cache[(head * n_ctx + pos) * (hd / 2u) + w] = pack2x16float(vec2<f32>(rotated(d, table), rotated(d + 1u, table)));
        } else {
            v_cache[(head * n_ctx + pos) * (hd / 2u) + w] = pack2x16float(vec2<f32>(value(d), value(d + 1u)));
        }
    }
}
