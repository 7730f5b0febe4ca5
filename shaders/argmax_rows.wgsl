// argmax_rows.wgsl (GPU family): greedy choice of the next token, so that 4 bytes are read back,
// in two dispatches of whole workgroups reducing in workgroup memory (argmax.wgsl phase 0
// applies the repetition penalty before, as in the CPU-adapter family). Phases ({{phase}}):
//   1 partial: workgroup j takes the contiguous chunk j of the logits (PARTIALS chunks), its lanes
//     striding over it (coalesced); the chunk's largest value and its first index go to
//     part[2j], part[2j + 1];
//   2 final: one workgroup reduces the PARTIALS pairs the same way and writes the index to out[0]
//     (0 if no logit is larger than −∞, as the CPU's argmax returns the first element then).
// Ties go to the lowest index (the first maximum, as the CPU sampler); NaN is never chosen.
//
// Bindings (group 0), all read_write (cubecl binds every buffer so):
//   0  logits: array<f32>  one row, [n]
//   1  part:   array<u32>  [PARTIALS, 2]: bits of a value as f32, its index
//   2  out:    array<u32>  [1]: the chosen id
//   3  p:      uniform     [n]
// Workgroup: WORKGROUP_SIZE lanes. Dispatch: phase 1 PARTIALS groups, phase 2 one.
// Tested against the CPU sampler's argmax, with ties (crates/gpu/tests/ops.rs).

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> part: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const PHASE: u32 = {{phase}}u;
const PARTIALS: u32 = {{partials}}u;
const NONE: u32 = 0xffffffffu;
// −f32::MAX: every finite logit is at least this, −∞ and NaN never are.
const LOWEST_BITS: u32 = 0xff7fffffu;

var<workgroup> best_v: array<f32, WORKGROUP_SIZE>;
var<workgroup> best_i: array<u32, WORKGROUP_SIZE>;

// Whether (v, i) beats (bv, bi): larger, or as large at a lower index; anything beats NONE
// if it is at least LOWEST.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    if (i == NONE) {
        return false;
    }
    if (bi == NONE) {
        return v >= bitcast<f32>(LOWEST_BITS);
    }
    return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = p(0);
    var bv = bitcast<f32>(LOWEST_BITS);
    var bi = NONE;
    if (PHASE == 1u) {
        let chunk = (n + PARTIALS - 1u) / PARTIALS;
        let lo = wg.x * chunk;
        let hi = min(n, lo + chunk);
        for (var i = lo + lid; i < hi; i += WORKGROUP_SIZE) {
            let v = logits[i];
            if (beats(v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
    } else {
        for (var j = lid; j < PARTIALS; j += WORKGROUP_SIZE) {
            let v = bitcast<f32>(part[2u * j]);
            let i = part[2u * j + 1u];
            if (beats(v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            let v = best_v[lid + stride];
            let i = best_i[lid + stride];
            if (beats(v, i, best_v[lid], best_i[lid])) {
                best_v[lid] = v;
                best_i[lid] = i;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        if (PHASE == 1u) {
            part[2u * wg.x] = bitcast<u32>(best_v[0]);
            part[2u * wg.x + 1u] = best_i[0];
        } else {
            out[0] = select(best_i[0], 0u, best_i[0] == NONE);
        }
    }
}
