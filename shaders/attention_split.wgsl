// attention_split.wgsl (GPU family): attention of one query row (decode) over an f16 KV cache,
// split over the positions (flash-decoding). Two phases ({{phase}}), each its own dispatch:
//   0 partial: workgroup (c, g) takes chunk c of the positions the query sees (0 ..= pos, within
//     the window; CHUNKS chunks, sized from the step's position so the parameters stay the same
//     from token to token) for every query head of KV group g at once, so each K/V row is read once
//     for the group. Per tile of TILE positions: the K rows are copied to workgroup memory (lanes
//     read consecutive words: coalesced); each lane scores (head, position) pairs; the tile's
//     maximum and weights e^(s − m) per head follow; then lanes, each owning (head, word of
//     head_dim) pairs, rescale their running sums and add the weighted V words, read straight
//     from the cache (consecutive lanes, consecutive words). The chunk's running maximum m, sum l
//     and unnormalized output go to part;
//   1 combine: workgroup h merges head h's chunks, a lane per output value: out[h, d] =
//     Σ_c acc_c[d] · e^(m_c − M) / Σ_c l_c · e^(m_c − M), M = max_c m_c (empty chunks have l = 0).
// Scores: s_j = softcap(q[h, :] · k[g, j, :] · scale), g = h / (heads / kv_heads), as attention.wgsl.
//
// Bindings (group 0), all read_write (cubecl binds every buffer so):
//   0  q:    array<f32>  the rotated query, [heads, head_dim]
//   1  k:    array<u32>  the key cache, [kv_heads, n_ctx, head_dim / 2] f16 pairs (pack2x16float)
//   2  v:    array<u32>  the value cache, same layout
//   3  out:  array<f32>  [heads, head_dim]
//   4  step: array<u32>  the step's tokens: [start position, token id, …]
//   5  part: array<f32>  [heads, CHUNKS, 2 + head_dim]: m, l, then acc
//   then (the coalescing test's build only) trace, and p: uniform [1, heads, kv_heads, head_dim,
//   n_ctx, window (0: none), bits of scale as f32, bits of softcap as f32 (0: none)]
// Workgroup: WORKGROUP_SIZE lanes. Dispatch: phase 0 CHUNKS × kv_heads groups, phase 1 heads.
// Workgroup memory: TILE · (head_dim / 2 + 1) words of K (a padded row per position, so lanes
// scoring consecutive positions hit different banks) and 2 · GROUP · TILE scores, under the
// 16 KiB every adapter allows.
// Tested against the f64 formula on the CPU with f16-rounded K and V (crates/gpu/tests/ops.rs),
// and its K/V loads against the coalescing bound (crates/gpu/tests/coalescing.rs).

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<u32>;
@group(0) @binding(2) var<storage, read_write> v: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> step: array<u32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
{{bindings}}

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const PHASE: u32 = {{phase}}u;
const CHUNKS: u32 = {{chunks}}u;
// Words (f16 pairs) of a head.
const HW: u32 = {{head_dim}}u / 2u;
// Query heads per KV head.
const GROUP: u32 = {{group}}u;
const TILE: u32 = {{tile}}u;
// (head, word) pairs of the group each lane owns.
const PAIRS: u32 = (GROUP * HW + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
// Below every score (a finite −∞, so that e^(m − M) never sees ∞ − ∞).
const LOWEST: f32 = -3.4e38;

var<workgroup> kt: array<u32, TILE * (HW + 1u)>;
var<workgroup> sc: array<f32, GROUP * TILE>;
var<workgroup> ew: array<f32, GROUP * TILE>;
var<workgroup> m_tile: array<f32, GROUP>;
var<workgroup> m_run: array<f32, GROUP>;
var<workgroup> pos_shared: u32;

// Cache loads (the instrumented build records them).
fn ldk(i: u32) -> u32 {
{{record_k}}
    return k[i];
}

fn ldv(i: u32) -> u32 {
{{record_v}}
    return v[i];
}

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let heads = p(1);
    let hd = p(3);
    let n_ctx = p(4);
    let record = 2u + hd;
    if (PHASE == 1u) {
        let h = wg.x;
        var m = LOWEST;
        for (var c = 0u; c < CHUNKS; c++) {
            m = max(m, part[(h * CHUNKS + c) * record]);
        }
        var l = 0.0;
        for (var c = 0u; c < CHUNKS; c++) {
            let b = (h * CHUNKS + c) * record;
            l += part[b + 1u] * exp(part[b] - m);
        }
        for (var d = lid; d < hd; d += WORKGROUP_SIZE) {
            var o = 0.0;
            for (var c = 0u; c < CHUNKS; c++) {
                let b = (h * CHUNKS + c) * record;
                o += part[b + 2u + d] * exp(part[b] - m);
            }
            out[h * hd + d] = o / l;
        }
        return;
    }
{{trace_init}}
    let c = wg.x;
    let g = wg.y;
    // The position bounds the tile loop, whose barriers every lane must reach: a uniform copy.
    if (lid == 0u) {
        pos_shared = step[0];
    }
    let pos = workgroupUniformLoad(&pos_shared);
    let window = p(5);
    let scale = bitcast<f32>(p(6));
    let softcap = bitcast<f32>(p(7));
    var first = 0u;
    if (window > 0u && pos + 1u > window) {
        first = pos + 1u - window;
    }
    let size = (pos + 1u - first + CHUNKS - 1u) / CHUNKS;
    let lo = first + c * size;
    let hi = min(pos + 1u, lo + size);
    let rows = g * n_ctx;
    let q0 = g * GROUP * hd;

    var m: array<f32, PAIRS>;
    var l: array<f32, PAIRS>;
    var acc: array<vec2<f32>, PAIRS>;
    for (var j = 0u; j < PAIRS; j++) {
        m[j] = LOWEST;
    }
    if (lid < GROUP) {
        m_run[lid] = LOWEST;
    }
    for (var tile = lo; tile < hi; tile += TILE) {
        let n = min(TILE, hi - tile);
        for (var i = lid; i < n * HW; i += WORKGROUP_SIZE) {
            kt[(i / HW) * (HW + 1u) + i % HW] = ldk((rows + tile) * HW + i);
        }
        workgroupBarrier();
        for (var i = lid; i < GROUP * TILE; i += WORKGROUP_SIZE) {
            let h = i / TILE;
            let j = i % TILE;
            var s = LOWEST;
            if (j < n) {
                var d2 = vec2<f32>(0.0);
                let qh = q0 + h * hd;
                for (var w = 0u; w < HW; w++) {
                    d2 += vec2<f32>(q[qh + 2u * w], q[qh + 2u * w + 1u]) * unpack2x16float(kt[j * (HW + 1u) + w]);
                }
                s = (d2.x + d2.y) * scale;
                if (softcap > 0.0) {
                    s = tanh(s / softcap) * softcap;
                }
            }
            sc[i] = s;
        }
        workgroupBarrier();
        for (var i = lid; i < GROUP * TILE; i += WORKGROUP_SIZE) {
            let h = i / TILE;
            var top = m_run[h];
            for (var j = 0u; j < n; j++) {
                top = max(top, sc[h * TILE + j]);
            }
            ew[i] = select(0.0, exp(sc[i] - top), i % TILE < n);
            if (i % TILE == 0u) {
                m_tile[h] = top;
            }
        }
        workgroupBarrier();
        for (var j = 0u; j < PAIRS; j++) {
            let pair = lid + j * WORKGROUP_SIZE;
            if (pair < GROUP * HW) {
                let h = pair / HW;
                let w = pair % HW;
                let top = m_tile[h];
                let r = exp(m[j] - top);
                var sum = 0.0;
                var o = vec2<f32>(0.0);
                for (var t = 0u; t < n; t++) {
                    let e = ew[h * TILE + t];
                    sum += e;
                    o += e * unpack2x16float(ldv((rows + tile + t) * HW + w));
                }
                l[j] = l[j] * r + sum;
                acc[j] = acc[j] * r + o;
                m[j] = top;
            }
        }
        if (lid < GROUP) {
            m_run[lid] = m_tile[lid];
        }
    }
    for (var j = 0u; j < PAIRS; j++) {
        let pair = lid + j * WORKGROUP_SIZE;
        if (pair < GROUP * HW) {
            let h = g * GROUP + pair / HW;
            let w = pair % HW;
            let b = (h * CHUNKS + c) * record;
            if (w == 0u) {
                part[b] = m[j];
                part[b + 1u] = l[j];
            }
            part[b + 2u + 2u * w] = acc[j].x;
            part[b + 3u + 2u * w] = acc[j].y;
        }
    }
}
