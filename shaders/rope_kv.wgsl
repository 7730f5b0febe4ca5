// rope_kv.wgsl: rotary position embedding of one step's queries and keys, and the step's keys
// and values stored into the KV cache, in one dispatch. Token t goes to cache slot pos = start + t
// and reads table row r = pos − shift (its rotary position trails its slot after an image in an
// M-RoPE model; shift 0 otherwise), or r = t when the table is the step's own (per_token: M-RoPE
// image rows, each pair's angle from the section it falls in). For every rotated pair
// i < n_rot / 2 with (cos, sin) = rope[r, i]:
//   (a, b) -> (a·cos − b·sin, a·sin + b·cos), where (a, b) are dimensions
//   (2i, 2i + 1) for the "norm" style (Llama) or (i, i + n_rot / 2) for "neox" (Qwen, Gemma …);
// dimensions n_rot .. head_dim are left as they are (partial rotary, GLM-4).
// Rotated queries go to q_out; rotated keys go to k_cache[g, pos, :] and values, unchanged, to
// v_cache[g, pos, :].
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  rope:    array<f32>  cos and sin interleaved, row-major [rows, n_rot / 2, 2]
//   1  k_cache: array<f32>  row-major [kv_heads, n_ctx, head_dim]
//   2  v_cache: array<f32>  same layout
//   3  q_out:   array<f32>  the rotated queries, row-major [T, heads, head_dim]
//   4  step:    array<u32>  the step's tokens: [start position, token ids …]
//   5… the sources (the `sources` template value, read through q_at, k_at, v_at): token t's
//      queries [heads, head_dim] at t · q_width + q_start, its keys [kv_heads, head_dim] at
//      t · k_width + k_start, its values likewise; either 5 q, 6 k, 7 v, or 5 alone when the three
//      are columns of one fused QKV matmul's output (WebGPU forbids binding one buffer twice
//      for writing, and cubecl binds every buffer read_write)
//   then p: uniform         [heads, kv_heads, head_dim, n_rot, n_ctx, neox (0 or 1), q_start,
//                           q_width, k_start, k_width, v_start, v_width, shift, per_token (0 or 1)]
// Workgroup: WORKGROUP_SIZE invocations, one (head slot, dimension pair) each, where the slots
// are the query heads then the key heads and the pairs cover head_dim / 2 (rotated pairs first,
// then the unrotated dimensions two at a time). Dispatch: x = slot-pair groups, y = T tokens.
// Tested against the f64 formula on the CPU for both pair styles, partial rotary, several tokens,
// a shift and a per-token table (crates/gpu/tests/ops.rs), and end to end by the golden checks
// and the Qwen2.5-VL fixtures on wgpu.

@group(0) @binding(0) var<storage, read_write> rope: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> step: array<u32>;
{{sources}}

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let heads = p(0);
    let kv_heads = p(1);
    let hd = p(2);
    let n_rot = p(3);
    let n_ctx = p(4);
    let pairs = hd / 2u;
    let slot = gid.x / pairs;
    let i = gid.x % pairs;
    if (slot >= heads + kv_heads) {
        return;
    }
    let t = gid.y;
    let pos = step[0] + t;
    var row = pos - p(12);
    if (p(13) != 0u) {
        row = t;
    }
    let half = n_rot / 2u;

    // The two dimensions this invocation owns.
    var a = n_rot + 2u * (i - half);
    var b = a + 1u;
    if (i < half) {
        if (p(5) != 0u) {
            a = i;
            b = i + half;
        } else {
            a = 2u * i;
            b = a + 1u;
        }
    }
    var c = 1.0;
    var s = 0.0;
    if (i < half) {
        c = rope[(row * half + i) * 2u];
        s = rope[(row * half + i) * 2u + 1u];
    }

    if (slot < heads) {
        let src = t * p(7) + p(6) + slot * hd;
        let base = (t * heads + slot) * hd;
        let xa = q_at(src + a);
        let xb = q_at(src + b);
        q_out[base + a] = xa * c - xb * s;
        q_out[base + b] = xa * s + xb * c;
        return;
    }
    let g = slot - heads;
    let ks = t * p(9) + p(8) + g * hd;
    let vs = t * p(11) + p(10) + g * hd;
    let dst = (g * n_ctx + pos) * hd;
    let xa = k_at(ks + a);
    let xb = k_at(ks + b);
    k_cache[dst + a] = xa * c - xb * s;
    k_cache[dst + b] = xa * s + xb * c;
    v_cache[dst + a] = v_at(vs + a);
    v_cache[dst + b] = v_at(vs + b);
}
