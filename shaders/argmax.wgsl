// argmax.wgsl: greedy sampling on the GPU, so that only the chosen token id (4 bytes) is read
// back instead of the whole row of logits. Three phases of one kernel ({{phase}}):
//   0 penalty: for each listed id, logits[id] = logits[id] / penalty if positive, · penalty
//     otherwise (the repetition penalty; the host lists each recent id once, in the step's
//     buffer, so that it is uploaded with the step and not on its own);
//   1 partial: invocation j of PARTIALS scans logits j, j + PARTIALS, … and writes its largest
//     value and that value's first index to part[2j], part[2j + 1];
//   2 final: one invocation picks the largest partial (the lowest index on ties, so the first
//     maximum wins, as in the CPU sampler) and writes its index to out[0] (0 if none is larger
//     than −∞, as the CPU's argmax returns the first element then).
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  logits: array<f32>  one row, [n]
//   1  step:   array<u32>  the step's tokens (StepTokens): at p(1) the number of ids to
//                          penalize, then the ids
//   2  part:   array<u32>  [PARTIALS, 2]: bits of a value as f32, its index
//   3  out:    array<u32>  [1]: the chosen id
//   4  p:      uniform     [n, offset of the penalized ids in step, bits of the penalty as f32]
// Workgroup: WORKGROUP_SIZE invocations, no workgroup memory and no barriers (two dispatches
// instead). Dispatch: phase 0 over the ids, phase 1 PARTIALS / WORKGROUP_SIZE groups, phase 2
// one group. sample.wgsl continues from here when the choice is not greedy.
// Tested against the CPU sampler's argmax, with and without the penalty and with ties
// (crates/gpu/tests/ops.rs).

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> step: array<u32>;
@group(0) @binding(2) var<storage, read_write> part: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(4) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const PHASE: u32 = {{phase}}u;
const PARTIALS: u32 = {{partials}}u;
const NONE: u32 = 0xffffffffu;
// −f32::MAX: every finite logit is at least this, −∞ and NaN never are.
const LOWEST: u32 = 0xff7fffffu;

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = p(0);
    if (PHASE == 0u) {
        if (gid.x >= step[p(1)]) {
            return;
        }
        let id = step[p(1) + 1u + gid.x];
        if (id < n) {
            let l = logits[id];
            let penalty = bitcast<f32>(p(2));
            logits[id] = select(l * penalty, l / penalty, l > 0.0);
        }
        return;
    }
    if (PHASE == 1u) {
        let j = gid.x;
        if (j >= PARTIALS) {
            return;
        }
        var best = bitcast<f32>(LOWEST);
        var best_i = NONE;
        for (var i = j; i < n; i += PARTIALS) {
            let l = logits[i];
            // Strictly greater: within one invocation indices rise, so the first maximum stays.
            if (l > best || (best_i == NONE && l >= best)) {
                best = l;
                best_i = i;
            }
        }
        part[2u * j] = bitcast<u32>(best);
        part[2u * j + 1u] = best_i;
        return;
    }
    if (gid.x != 0u) {
        return;
    }
    var best = bitcast<f32>(LOWEST);
    var best_i = NONE;
    for (var j = 0u; j < PARTIALS; j++) {
        let i = part[2u * j + 1u];
        if (i == NONE) {
            continue;
        }
        let l = bitcast<f32>(part[2u * j]);
        if (best_i == NONE || l > best || (l == best && i < best_i)) {
            best = l;
            best_i = i;
        }
    }
    out[0] = select(best_i, 0u, best_i == NONE);
}
