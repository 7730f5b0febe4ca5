// sample/wide.wgsl: sample.wgsl's phases for the GPU family. The searches' state lives in `state`
// in two slots, and each dispatch works on a workgroup-memory copy of it (`st`): it reads the slot
// p(7) the previous dispatch wrote, applies the step that dispatch left pending (code p(5), then
// p(8) if not 0: the candidates' sums over its partials reduced in workgroup memory, then one
// lane's step_logic), does its own work, and workgroup 0 writes the state to the other slot. So a
// search pass is one dispatch, and nothing waits for a step of its own.
//   0 init (1 workgroup): sets up the first search, writes slot 0;
//   1 eval (EVAL_GROUPS workgroups): the count and mass above each candidate over logits
//     g, g + EVAL_GROUPS · WORKGROUP_SIZE, … (g the lane's global index), reduced per workgroup
//     into part[next slot][workgroup, c, 0..2];
//   3 chunk (PARTIALS / WORKGROUP_SIZE workgroups): lane j sums the kept weights of chunk j into
//     part[next slot][j];
//   4 draw (1 workgroup): the chunk where the running sum of the kept weights passes r × total (the
//     first chunk with weight whose end passes it; rounding may leave every one short: then the
//     last chunk with weight), then the token in it (the first whose running sum passes, else the
//     chunk's last token with weight), as sample/serial.wgsl finds them in one invocation, with
//     prefix scans: lanes take CHUNKS_PER_LANE consecutive chunks, then runs of the chunk's tokens.
// Appended to sample.wgsl, with reduce/shared.wgsl substituted for its `reduce` key.
// Every barrier is reached by every lane: the phases are functions, and their early returns
// depend on parameters or values read through workgroupUniformLoad only.
// Tested through sample.wgsl (crates/model/tests/choose.rs).

@group(0) @binding(3) var<storage, read_write> state: array<u32>;

const LANES: u32 = WORKGROUP_SIZE;
// Values a workgroup reduces: each candidate's count and mass.
const NV: u32 = 2u * CANDIDATES;
const EVAL_GROUPS: u32 = {{eval_groups}}u;
// Words of one slot of part: a pass's partials or the chunks' weights.
const SLOT: u32 = {{part_slot}}u;
// Chunks of the draw each lane takes.
const CHUNKS_PER_LANE: u32 = PARTIALS / WORKGROUP_SIZE;
const NONE: u32 = 0xffffffffu;

var<workgroup> st: array<u32, ST_LEN>;
var<workgroup> red: array<f32, NV * WORKGROUP_SIZE>;
var<workgroup> scan_buf: array<f32, WORKGROUP_SIZE>;
var<workgroup> first_at: atomic<u32>;
var<workgroup> last_at: atomic<u32>;
var<workgroup> shared_word: u32;
var<workgroup> shared_sum: f32;

fn load_state(lid: u32, slot: u32) {
    for (var i = lid; i < ST_LEN; i += WORKGROUP_SIZE) {
        st[i] = state[slot * ST_LEN + i];
    }
    workgroupBarrier();
}

fn save_state(lid: u32, slot: u32) {
    workgroupBarrier();
    for (var i = lid; i < ST_LEN; i += WORKGROUP_SIZE) {
        state[slot * ST_LEN + i] = st[i];
    }
}

// The step `code` (0: none) left pending by the pass whose partials are in slot `prev`.
fn apply_step(lid: u32, prev: u32, code: u32) {
    if (code == 0u) {
        return;
    }
    var count: array<u32, CANDIDATES>;
    var mass: array<f32, CANDIDATES>;
    if ((code >> 8u) != SEARCH_CUTOFF) {
        let group = 0u;
        let lane = lid;
        var vals: array<f32, NV>;
        for (var j = lid; j < EVAL_GROUPS; j += WORKGROUP_SIZE) {
            for (var c = 0u; c < CANDIDATES; c++) {
                vals[2u * c] += f32(part[prev * SLOT + (j * CANDIDATES + c) * 2u]);
                vals[2u * c + 1u] += bitcast<f32>(part[prev * SLOT + (j * CANDIDATES + c) * 2u + 1u]);
            }
        }
{{reduce}}
        for (var c = 0u; c < CANDIDATES; c++) {
            count[c] = u32(red[2u * c * WORKGROUP_SIZE]);
            mass[c] = red[(2u * c + 1u) * WORKGROUP_SIZE];
        }
    }
    if (lid == 0u) {
        step_logic(code, count, mass);
    }
    workgroupBarrier();
}

fn eval_phase(wg: u32, lid: u32, n: u32) {
    let prev = p(7);
    load_state(lid, prev);
    apply_step(lid, prev, p(5));
    var count: array<u32, CANDIDATES>;
    var mass: array<f32, CANDIDATES>;
    eval_strided(wg * WORKGROUP_SIZE + lid, EVAL_GROUPS * WORKGROUP_SIZE, n, &count, &mass);
    let group = 0u;
    let lane = lid;
    var vals: array<f32, NV>;
    for (var c = 0u; c < CANDIDATES; c++) {
        vals[2u * c] = f32(count[c]);
        vals[2u * c + 1u] = mass[c];
    }
{{reduce}}
    let next = 1u - prev;
    if (lid == 0u) {
        for (var c = 0u; c < CANDIDATES; c++) {
            part[next * SLOT + (wg * CANDIDATES + c) * 2u] = u32(red[2u * c * WORKGROUP_SIZE]);
            part[next * SLOT + (wg * CANDIDATES + c) * 2u + 1u] = bitcast<u32>(red[(2u * c + 1u) * WORKGROUP_SIZE]);
        }
    }
    if (wg == 0u) {
        save_state(lid, next);
    }
}

fn chunk_phase(wg: u32, lid: u32, n: u32) {
    let prev = p(7);
    load_state(lid, prev);
    apply_step(lid, prev, p(5));
    apply_step(lid, prev, p(8));
    let j = wg * WORKGROUP_SIZE + lid;
    if (j < PARTIALS) {
        part[(1u - prev) * SLOT + j] = bitcast<u32>(chunk_sum(j, n));
    }
    if (wg == 0u) {
        save_state(lid, 1u - prev);
    }
}

// The sum of `v` over the lanes before this one, and over all of them (Hillis-Steele, a barrier
// per step).
fn exclusive_scan(lid: u32, v: f32) -> vec2<f32> {
    scan_buf[lid] = v;
    workgroupBarrier();
    for (var offset = 1u; offset < WORKGROUP_SIZE; offset = offset * 2u) {
        var add = 0.0;
        if (lid >= offset) {
            add = scan_buf[lid - offset];
        }
        workgroupBarrier();
        scan_buf[lid] += add;
        workgroupBarrier();
    }
    let total = scan_buf[WORKGROUP_SIZE - 1u];
    let inclusive = scan_buf[lid];
    workgroupBarrier();
    return vec2<f32>(inclusive - v, total);
}

// Clears the first/last markers before a search.
fn reset_markers(lid: u32) {
    if (lid == 0u) {
        atomicStore(&first_at, NONE);
        atomicStore(&last_at, 0u);
    }
    workgroupBarrier();
}

fn draw_phase(lid: u32, n: u32) {
    load_state(lid, p(7));
    let chunk = (n + PARTIALS - 1u) / PARTIALS;
    let temperature = bitcast<f32>(p(6));
    let top = best();
    // Whether anything besides the best token is kept, as a uniform value (barriers follow).
    if (lid == 0u) {
        shared_word = select(1u, 0u, st[ST_TK] == 0u || top != top);
    }
    if (workgroupUniformLoad(&shared_word) == 0u) {
        // Nothing kept but the best token (or no logit is a number): out[0] already holds it.
        return;
    }
    var sums: array<f32, CHUNKS_PER_LANE>;
    var lane_sum = 0.0;
    for (var k = 0u; k < CHUNKS_PER_LANE; k++) {
        sums[k] = bitcast<f32>(part[p(7) * SLOT + lid * CHUNKS_PER_LANE + k]);
        lane_sum += sums[k];
    }
    let chunk_scan = exclusive_scan(lid, lane_sum);
    let goal = bitcast<f32>(step[p(4)]) * chunk_scan.y;
    reset_markers(lid);
    var acc = chunk_scan.x;
    for (var k = 0u; k < CHUNKS_PER_LANE; k++) {
        let j = lid * CHUNKS_PER_LANE + k;
        if (sums[k] > 0.0) {
            atomicMax(&last_at, j + 1u);
            if (acc + sums[k] > goal) {
                atomicMin(&first_at, j);
                break;
            }
        }
        acc += sums[k];
    }
    workgroupBarrier();
    var picked = atomicLoad(&first_at);
    if (picked == NONE) {
        picked = max(atomicLoad(&last_at), 1u) - 1u;
    }
    // The running sum before the picked chunk, from the lane that holds it.
    if (picked / CHUNKS_PER_LANE == lid) {
        var before = chunk_scan.x;
        for (var k = 0u; k < picked % CHUNKS_PER_LANE; k++) {
            before += sums[k];
        }
        shared_sum = before;
    }
    workgroupBarrier();
    let before = shared_sum;
    // The picked chunk's tokens, a run of consecutive ones per lane.
    let lo = picked * chunk;
    let hi = min(n, lo + chunk);
    let per_lane = (chunk + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
    let my_lo = min(hi, lo + lid * per_lane);
    let my_hi = min(hi, my_lo + per_lane);
    var mine = 0.0;
    for (var i = my_lo; i < my_hi; i++) {
        let l = logits[i];
        if (l == l && kept(l, i)) {
            mine += exp((l - top) / temperature);
        }
    }
    let token_scan = exclusive_scan(lid, mine);
    reset_markers(lid);
    acc = before + token_scan.x;
    for (var i = my_lo; i < my_hi; i++) {
        let l = logits[i];
        if (l == l && kept(l, i)) {
            let w = exp((l - top) / temperature);
            if (w <= 0.0) {
                continue;
            }
            atomicMax(&last_at, i + 1u);
            acc += w;
            if (acc > goal) {
                atomicMin(&first_at, i);
                break;
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        let first = atomicLoad(&first_at);
        let last = atomicLoad(&last_at);
        if (first != NONE) {
            out[0] = first;
        } else if (last != 0u) {
            out[0] = last - 1u;
        }
    }
}

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = p(0);
    if (PHASE == 0u) {
        if (lid == 0u) {
            init_state(n);
        }
        save_state(lid, 0u);
    } else if (PHASE == 1u) {
        eval_phase(wg.x, lid, n);
    } else if (PHASE == 3u) {
        chunk_phase(wg.x, lid, n);
    } else {
        draw_phase(lid, n);
    }
}
