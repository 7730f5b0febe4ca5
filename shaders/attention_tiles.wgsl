// attention_tiles.wgsl (GPU family): causal multi-head attention for prefill (several query
// rows) over the f16 KV cache, flash-attention style: out[t, h, :] = Σ_j softmax_j(s_tj) · v[g, j, :]
// with s_tj = softcap(q[t, h, :] · k[g, j, :] · scale) over the keys query t (at position start + t)
// may see (j <= start + t; with a sliding window w > 0, start + t - j < w), g = h / group.
// A workgroup takes WORKGROUP_SIZE query rows of one KV head g: the rows (t, h) with h in g's
// group, in the order t · group + (h mod group), so every lane shares the group's keys. It walks
// the positions its rows see in tiles of TILE: the lanes copy the tile's K and V rows (f16 pairs,
// consecutive words: coalesced) into workgroup memory, then each lane runs the running-maximum
// softmax of online_softmax.wgsl over the tile's positions its row sees, every lane reading the
// same K and V words at once (a broadcast). So K and V are read from memory once per workgroup,
// not once per query row, and q and the output row stay in registers (HD4 vec4s each).
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  q:   array<vec4<f32>>  queries, row-major [T, heads, head_dim] (head_dim a multiple of 4)
//   1  k:   array<vec2<u32>>  the key cache, [kv_heads, n_ctx, head_dim] as f16 pairs (kv/f16.wgsl)
//   2  v:   as k             the value cache
//   3  out: array<f32>       row-major [T, heads, head_dim]
//   4  step: array<u32>      the step's tokens: [start position, token ids …]
//   5  p:   uniform          [T, heads, kv_heads, head_dim, n_ctx, window (0: none),
//                            bits of scale as f32, bits of softcap as f32 (0: none)]
// Workgroup: WORKGROUP_SIZE (64) lanes; TILE positions of K and V in workgroup memory
// (TILE · head_dim · 4 bytes, within WebGPU's default 16 KiB: crates/gpu/src/ops.rs picks TILE).
// Dispatch: x = ⌈T · group / WORKGROUP_SIZE⌉, y = kv_heads. The loop over tiles is the same for
// every lane (uniform: it holds the barriers; its bounds come from the uniform parameters and the
// start position as workgroupUniformLoad returns it); lanes past the last row only help load.
// Tested against the f64 formula on the CPU (crates/gpu/tests/ops.rs), with the window, the
// soft-cap, GQA groups and prompts longer than a tile.

@group(0) @binding(0) var<storage, read_write> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> k: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> v: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> step: array<u32>;
@group(0) @binding(5) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const HD4: u32 = {{head_dim}}u / 4u;
const TILE: u32 = {{tile}}u;
// Below every score (a finite −∞, so that e^(m − M) never sees ∞ − ∞).
const LOWEST: f32 = -3.4e38;

var<workgroup> k_tile: array<vec2<u32>, TILE * HD4>;
var<workgroup> v_tile: array<vec2<u32>, TILE * HD4>;
// The step's start position, passed through workgroup memory so that the tile loop's bounds are
// uniform (a value read from a read_write buffer is not, to WGSL's uniformity analysis).
var<workgroup> start_shared: u32;

// online_softmax.wgsl's readers, over the tiles: index (j − p0) · HD4 + d.
fn k4(i: u32) -> vec4<f32> {
    let w = k_tile[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

fn v4(i: u32) -> vec4<f32> {
    let w = v_tile[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

// The first position query position `pos` sees.
fn first_seen(pos: u32, window: u32) -> u32 {
    if (window > 0u && pos + 1u > window) {
        return pos + 1u - window;
    }
    return 0u;
}

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let tokens = p(0);
    let heads = p(1);
    let kv_heads = p(2);
    let n_ctx = p(4);
    let window = p(5);
    let scale = bitcast<f32>(p(6));
    let softcap = bitcast<f32>(p(7));
    if (lid == 0u) {
        start_shared = step[0];
    }
    let start = workgroupUniformLoad(&start_shared);
    let group = heads / kv_heads;
    let g = wg.y;
    let rows = tokens * group;
    let first_row = wg.x * WORKGROUP_SIZE;
    let row = first_row + lid;
    let live = row < rows;
    let r = min(row, rows - 1u);
    let t = r / group;
    let h = g * group + r % group;
    let pos = start + t;

    // The positions any row of the workgroup sees.
    let wg_lo = first_seen(start + first_row / group, window);
    let last_row = min(first_row + WORKGROUP_SIZE, rows) - 1u;
    let wg_hi = start + last_row / group + 1u;
    let hd4 = HD4;
    let qb = (t * heads + h) * HD4;
    var qv: array<vec4<f32>, HD4>;
    for (var d = 0u; d < HD4; d++) {
        qv[d] = q[qb + d];
    }
    var m = LOWEST;
    var l = 0.0;
    var acc: array<vec4<f32>, HD4>;
    let lane_lo = first_seen(pos, window);
    let cache = g * n_ctx * HD4;

    for (var p0 = wg_lo; p0 < wg_hi; p0 += TILE) {
        let n = min(TILE, wg_hi - p0) * HD4;
        workgroupBarrier();
        for (var i = lid; i < n; i += WORKGROUP_SIZE) {
            k_tile[i] = k[cache + p0 * HD4 + i];
            v_tile[i] = v[cache + p0 * HD4 + i];
        }
        workgroupBarrier();
        // This lane's positions in the tile, read through k4 / v4 at (j − p0) · HD4 + d.
        let lo = max(lane_lo, p0);
        var hi = min(pos + 1u, p0 + TILE);
        if (!live) {
            hi = lo;
        }
        let kb = 0u - p0 * HD4;
{{online_softmax}}
    }
    if (live) {
        for (var d = 0u; d < HD4; d++) {
            let o = acc[d] / l;
            let b = 4u * (qb + d);
            out[b] = o.x;
            out[b + 1u] = o.y;
            out[b + 2u] = o.z;
            out[b + 3u] = o.w;
        }
    }
}
