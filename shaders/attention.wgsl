// attention.wgsl: causal multi-head attention over the KV cache, for decode (one query row) and
// prefill (several): out[t, h, :] = Σ_j softmax_j(s_tj) · v[g, j, :], with
// s_tj = softcap(q[t, h, :] · k[g, j, :] · scale), g = h / (heads / kv_heads) (grouped-query
// attention), over the keys j that query t (at position start + t) may see: j <= start + t and,
// with a sliding window w > 0, start + t - j < w.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  q:   array<vec4<f32>>  queries, row-major [T, heads, head_dim] (head_dim a multiple of 4)
//   1  k:   array<vec4<f32>>  the key cache, row-major [kv_heads, n_ctx, head_dim] (an f16 cache:
//                            array<vec2<u32>>, f16 pairs; read through kv/f32.wgsl or kv/f16.wgsl)
//   2  v:   as k             the value cache, same layout
//   3  out: array<f32>  row-major [T, heads, head_dim]
//   4  step: array<u32> the step's tokens: [start position, token ids …]
//   5  p:   uniform     [T, heads, kv_heads, head_dim, n_ctx, window (0: none),
//                        bits of scale as f32, bits of softcap as f32 (0: none)]
// Workgroup: WORKGROUP_SIZE invocations, one (query row, head) each, in one pass with the online
// (running-maximum) softmax of online_softmax.wgsl; the output row is accumulated in registers
// (head_dim <= MAX_HEAD_DIM in crates/gpu/src/ops.rs; the kernel is built for its HD4). No
// workgroup memory, no barriers.
// Dispatch: x = (T · heads) groups. One query row (decode) runs attention_decode.wgsl instead.
// Tested against the f64 formula on the CPU (crates/gpu/tests/ops.rs), including the window,
// the soft-cap and head counts that do not fill a workgroup.

@group(0) @binding(0) var<storage, read_write> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> k: array<{{kv_elem}}>;
@group(0) @binding(2) var<storage, read_write> v: array<{{kv_elem}}>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> step: array<u32>;
@group(0) @binding(5) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

// head_dim / 4 as a constant: loops over a head have constant bounds, so the compilers unroll
// them and keep q and acc in registers (indexed by a variable, a private array lives in memory,
// each access a gather on the CPU adapters).
const HD4: u32 = {{head_dim}}u / 4u;
// Below every score (a finite −∞, so that e^(m − M) never sees ∞ − ∞).
const LOWEST: f32 = -3.4e38;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tokens = p(0);
    let heads = p(1);
    let kv_heads = p(2);
    let hd = p(3);
    let n_ctx = p(4);
    let start = step[0];
    let window = p(5);
    let scale = bitcast<f32>(p(6));
    let softcap = bitcast<f32>(p(7));
    let id = gid.x;
    if (id >= tokens * heads) {
        return;
    }
    let t = id / heads;
    let h = id % heads;
    let g = h / (heads / kv_heads);
    let pos = start + t;
    var first = 0u;
    if (window > 0u && pos + 1u > window) {
        first = pos + 1u - window;
    }
    let hd4 = HD4;
    let qb = id * hd4;
    let kb = g * n_ctx * hd4;
    let lo = first;
    let hi = pos + 1u;
    var m = LOWEST;
    var l = 0.0;
    var acc: array<vec4<f32>, HD4>;
    var qv: array<vec4<f32>, HD4>;
    for (var d = 0u; d < HD4; d++) {
        qv[d] = q[qb + d];
    }
{{online_softmax}}
    for (var d = 0u; d < hd4; d++) {
        let o = acc[d] / l;
        let b = 4u * (qb + d);
        out[b] = o.x;
        out[b + 1u] = o.y;
        out[b + 2u] = o.z;
        out[b + 3u] = o.w;
    }
}
