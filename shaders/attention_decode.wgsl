// attention_decode.wgsl: attention.wgsl for one query row (decode), split over the positions so
// that heads × CHUNKS invocations share the work instead of one per head: the positions the query
// sees (0 ..= pos, within the window) are cut into CHUNKS chunks of ceil((pos + 1) / CHUNKS)
// (computed here from the step's position, so the parameters stay the same from token to token).
// Two phases ({{phase}}), each its own dispatch (no barriers):
//   0 partial: invocation (h, c) runs the online softmax (online_softmax.wgsl) over chunk c of head h
//     and writes its running maximum m, sum l and unnormalized output acc[head_dim] to part;
//   1 combine: invocation (h, d) merges the chunks for 4 values d of the head: out[h, d] =
//     Σ_c acc_c[d] · e^(m_c − M) / Σ_c l_c · e^(m_c − M), M = max_c m_c (empty chunks have
//     l = 0 and add nothing).
// Same scores as attention.wgsl: s_j = softcap(q[h, :] · k[g, j, :] · scale), g = h / (heads /
// kv_heads).
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  q:    array<vec4<f32>>  the query, [heads, head_dim] (head_dim a multiple of 4)
//   1  k:    array<vec4<f32>>  the key cache, row-major [kv_heads, n_ctx, head_dim] (read through
//                              kv/f32.wgsl)
//   2  v:    array<vec4<f32>>  the value cache, same layout
//   3  out:  array<vec4<f32>>  [heads, head_dim]
//   4  step: array<u32>  the step's tokens: [start position, token id, …]
//   5  part: array<vec4<f32>>  [heads, CHUNKS, 1 + head_dim / 4]: (m, l, 0, 0), then acc
//   6  p:    uniform     as attention.wgsl: [1, heads, kv_heads, head_dim, n_ctx, window (0: none),
//                        bits of scale as f32, bits of softcap as f32 (0: none)]
// Workgroup: WORKGROUP_SIZE invocations. Dispatch: phase 0 heads · CHUNKS invocations, phase 1
// heads · head_dim / 4.
// Tested against the f64 formula on the CPU (crates/gpu/tests/ops.rs), with contexts shorter and
// longer than CHUNKS, the window and the soft-cap.

@group(0) @binding(0) var<storage, read_write> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> k: array<{{kv_elem}}>;
@group(0) @binding(2) var<storage, read_write> v: array<{{kv_elem}}>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> part: array<vec4<f32>>;
@group(0) @binding(6) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const PHASE: u32 = {{phase}}u;
const CHUNKS: u32 = {{chunks}}u;
// head_dim / 4 as a constant: loops over a head have constant bounds, so the compilers unroll
// them and keep q and acc in registers (indexed by a variable, a private array lives in memory,
// each access a gather on the CPU adapters).
const HD4: u32 = {{head_dim}}u / 4u;
// Below every score (a finite −∞, so that e^(m − M) never sees ∞ − ∞).
const LOWEST: f32 = -3.4e38;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let heads = p(1);
    let kv_heads = p(2);
    let hd = p(3);
    let n_ctx = p(4);
    let window = p(5);
    let pos = step[0];
    let id = gid.x;
    let hd4 = HD4;
    // vec4s of one chunk's record in part: (m, l, 0, 0), then acc.
    let record = 1u + hd4;
    if (PHASE == 1u) {
        if (id >= heads * hd4) {
            return;
        }
        let h = id / hd4;
        let d = id % hd4;
        var m = LOWEST;
        for (var c = 0u; c < CHUNKS; c++) {
            m = max(m, part[(h * CHUNKS + c) * record].x);
        }
        var l = 0.0;
        var o = vec4<f32>(0.0);
        for (var c = 0u; c < CHUNKS; c++) {
            let b = (h * CHUNKS + c) * record;
            let ml = part[b];
            let r = exp(ml.x - m);
            l += ml.y * r;
            o += part[b + 1u + d] * r;
        }
        out[id] = o / l;
        return;
    }
    if (id >= heads * CHUNKS) {
        return;
    }
    let h = id / CHUNKS;
    let c = id % CHUNKS;
    let g = h / (heads / kv_heads);
    var first = 0u;
    if (window > 0u && pos + 1u > window) {
        first = pos + 1u - window;
    }
    let size = (pos + 1u + CHUNKS - 1u) / CHUNKS;
    let lo = max(first, c * size);
    let hi = min(pos + 1u, (c + 1u) * size);
    let qb = h * hd4;
    let kb = g * n_ctx * hd4;
    let scale = bitcast<f32>(p(6));
    let softcap = bitcast<f32>(p(7));
    var m = LOWEST;
    var l = 0.0;
    var acc: array<vec4<f32>, HD4>;
    var qv: array<vec4<f32>, HD4>;
    for (var d = 0u; d < HD4; d++) {
        qv[d] = q[qb + d];
    }
{{online_softmax}}
    let b = id * record;
    part[b] = vec4<f32>(m, l, 0.0, 0.0);
    for (var d = 0u; d < hd4; d++) {
        part[b + 1u + d] = acc[d];
    }
}
