// sample.wgsl: sampling with temperature, top-k, top-p and min-p on the GPU, so that only the
// chosen token id (4 bytes) is read back. The same choice as the CPU sampler
// (crates/model/src/sampling.rs) for the same random draw r in [0, 1):
//   order the logits best first (ties: lower id first); keep the top_k best; keep the shortest
//   prefix whose probabilities (softmax of the kept logits) sum to at least top_p; keep those with
//   probability at least min_p × the best one's; at least one is kept. Then weigh the kept tokens
//   by exp((l − max) / temperature) and pick, in id order, the first whose running sum passes
//   r × the total.
// Without a sort: the kept tokens are those at or above a threshold T = (key, id) in that order
// (key: the logit's bits made to sort as unsigned integers). Each condition holds for a prefix,
// so the smallest T for which "count above T < top_k, mass above T < top_p × Z, exp(l_T − max)
// ≥ min_p" holds is found by a 16-way search: every pass evaluates 16 candidates, 4 bits of the
// key at a time (8 passes), then 4 bits of the id (5 passes, ids below 2^20); a step after each
// pass keeps the outcome and sets the next candidates (step_logic). The top-k cutoff, needed for
// Z (the mass of the top k), is found first by the same search. Without top-p and min-p the final
// threshold is the top-k cutoff (the lowest token without top-k: the app's default, temperature
// alone), set by step code SEARCH_CUTOFF instead of the Z pass and final search. Then the kept
// weights are summed in PARTIALS chunks of ids, and the draw finds the chunk, then the id, where
// the running sum passes r × total. The penalty has been applied by argmax.wgsl phase 0, and
// argmax.wgsl (or argmax_rows.wgsl) has put the best id in out[0].
//
// This file holds the state, the search's logic and what both forms share; one of two forms of the
// phases ({{phase}}) follows it (crates/gpu/src/ops.rs appends it), each phase its own dispatch:
//   sample/serial.wgsl (the CPU-adapter family: no barriers, which cost seconds on SwiftShader):
//     0 init, 1 eval (PARTIALS invocations), 2 step (one invocation sums the partials), 3 chunk
//     (PARTIALS invocations), 4 draw (one invocation);
//   sample/wide.wgsl (the GPU family): 0 init, 1 eval, 3 chunk, 4 draw, each workgroup first
//     applying the step the previous pass left pending (its sums reduced in workgroup memory), so
//     a pass is one dispatch, not two; the draw by a workgroup with prefix scans.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  logits: array<f32>  one row, [n], penalized
//   1  step:   array<u32>  the step's tokens (StepTokens): the bits of r (f32) at p(4)
//   2  part:   array<u32>  the passes' partial sums (count, bits of the mass as f32, per
//                          candidate), then the chunks' kept weights; laid out by the form
//   3  the searches' state (ST_* below): `st` (serial), `state` in two slots (wide)
//   4  out:    array<u32>  [1]: in: the best id; out: the chosen id
//   5  p:      uniform     [n, top_k (0: off), bits of top_p, bits of min_p, offset of r in step,
//                           step code, bits of the temperature, and for the wide form the
//                           slot the previous pass wrote and a second step code]
// Workgroup: WORKGROUP_SIZE invocations; the dispatches are the form's (crates/gpu/src/ops.rs).
// Tested against the CPU sampler on random logits with every filter, both forms
// (crates/model/tests/choose.rs).

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> step: array<u32>;
@group(0) @binding(2) var<storage, read_write> part: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;
@group(0) @binding(5) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const PHASE: u32 = {{phase}}u;
const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const PARTIALS: u32 = {{partials}}u;
const CANDIDATES: u32 = {{candidates}}u;

// Keys of −∞ and +∞: the search runs between them (NaN logits are never kept).
const KEY_LOW: u32 = 0x007fffffu;
const KEY_HIGH: u32 = 0xff800000u;
// Ids are below 2^ID_BITS.
const ID_BITS: u32 = {{id_bits}}u;

// State words.
const ST_MAX: u32 = 0u;      // bits of the best logit
const ST_KK: u32 = 1u;       // top-k cutoff: key,
const ST_KC: u32 = 2u;       //   and id (kept: at or above (key, id))
const ST_Z: u32 = 3u;        // bits of Z, the top k's mass
const ST_DIGITS: u32 = 4u;   // the search's digits so far (key offset, then id)
const ST_FOUND: u32 = 5u;    // key search: whether a candidate failed yet
const ST_KEY: u32 = 6u;      // key the id search runs in; 0: none (nothing holds)
const ST_TK: u32 = 7u;       // the final threshold: key,
const ST_TC: u32 = 8u;       //   and id; ST_TK = 0: nothing passed (keep the best token only)
const ST_CAND: u32 = {{state_cand}}u;    // [CANDIDATES, 2]: the candidates' key and id
const ST_LEN: u32 = ST_CAND + 2u * CANDIDATES;

// Step codes (p(5)): search * 256 + level * 64 + shift. Search 1: the top-k cutoff; 2: the final
// threshold; 3: Z (one evaluation); 4: the final threshold is the top-k cutoff (no search).
// Level 0: key digits, 1: id digits.
const SEARCH_TOPK: u32 = 1u;
const SEARCH_FINAL: u32 = 2u;
const SEARCH_Z: u32 = 3u;
const SEARCH_CUTOFF: u32 = {{search_cutoff}}u;

// The logit's bits as an unsigned key that sorts like the logit.
fn key_of(l: f32) -> u32 {
    let b = bitcast<u32>(l);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn logit_of(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// Whether the token (k, id) is above the threshold (tk, tc): a larger key, or the same key and a
// lower id.
fn above(k: u32, id: u32, tk: u32, tc: u32) -> bool {
    return k > tk || (k == tk && id < tc);
}

// Whether the token (l, id) is at or above the final threshold.
fn kept(l: f32, id: u32) -> bool {
    return above(key_of(l), id, st[ST_TK], st[ST_TC] + 1u);
}

fn best() -> f32 {
    return bitcast<f32>(st[ST_MAX]);
}

// The candidates of a key pass (shift s): KEY_LOW + digits + j·2^s, at the top of their key.
fn key_candidates(digits: u32, s: u32) {
    for (var j = 0u; j < CANDIDATES; j++) {
        let offset = min(add_sat(digits, j << s), KEY_HIGH - KEY_LOW);
        st[ST_CAND + 2u * j] = KEY_LOW + offset;
        st[ST_CAND + 2u * j + 1u] = 0u;
    }
}

// a + b, at most 0xffffffff.
fn add_sat(a: u32, b: u32) -> u32 {
    return select(a + b, 0xffffffffu, a + b < a);
}

// The candidates of an id pass (shift s) in key k: ids digits + j·2^s.
fn id_candidates(k: u32, digits: u32, s: u32) {
    for (var j = 0u; j < CANDIDATES; j++) {
        st[ST_CAND + 2u * j] = k;
        st[ST_CAND + 2u * j + 1u] = digits + (j << s);
    }
}

// One candidate for Z: the top-k cutoff itself (above (kk, kc + 1) = at or above (kk, kc)).
fn z_candidate() {
    for (var j = 0u; j < CANDIDATES; j++) {
        st[ST_CAND + 2u * j] = st[ST_KK];
        st[ST_CAND + 2u * j + 1u] = st[ST_KC] + 1u;
    }
}

// Whether the final search's condition holds at candidate j (count and mass above it).
fn final_holds(j: u32, count: u32, mass: f32) -> bool {
    let tk = st[ST_CAND + 2u * j];
    let tc = st[ST_CAND + 2u * j + 1u];
    // At or above the top-k cutoff.
    let in_top_k = tk > st[ST_KK] || (tk == st[ST_KK] && tc <= st[ST_KC]);
    let top_p = bitcast<f32>(p(2));
    let min_p = bitcast<f32>(p(3));
    let by_p = top_p >= 1.0 || mass < top_p * bitcast<f32>(st[ST_Z]);
    let by_min_p = min_p <= 0.0 || exp(logit_of(tk) - best()) >= min_p;
    return in_top_k && by_p && by_min_p;
}

fn holds(search: u32, j: u32, count: u32, mass: f32) -> bool {
    if (search == SEARCH_TOPK) {
        return count < p(1);
    }
    return final_holds(j, count, mass);
}

// After a search's last pass: start the next one.
fn next_search(search: u32) {
    if (search == SEARCH_TOPK) {
        z_candidate();
    } else if (search == SEARCH_Z) {
        st[ST_DIGITS] = 0u;
        st[ST_FOUND] = 0u;
        key_candidates(0u, 28u);
    }
}

// Sets up the first search (one invocation).
fn init_state(n: u32) {
    st[ST_MAX] = bitcast<u32>(logits[out[0]]);
    // Top-k off or at least n: the cutoff is the lowest token.
    st[ST_KK] = KEY_LOW;
    st[ST_KC] = 1u << ID_BITS;
    st[ST_DIGITS] = 0u;
    st[ST_FOUND] = 0u;
    st[ST_TK] = 0u;
    if (p(1) != 0u && p(1) < n) {
        key_candidates(0u, 28u);
    } else {
        z_candidate();
    }
}

// Adds to `count` and `mass` the count and mass above each candidate in the state of the logits
// first, first + stride, … (one lane's share of a pass).
fn eval_strided(first: u32, stride: u32, n: u32, count: ptr<function, array<u32, CANDIDATES>>,
    mass: ptr<function, array<f32, CANDIDATES>>) {
    var tk: array<u32, CANDIDATES>;
    var tc: array<u32, CANDIDATES>;
    for (var c = 0u; c < CANDIDATES; c++) {
        tk[c] = st[ST_CAND + 2u * c];
        tc[c] = st[ST_CAND + 2u * c + 1u];
    }
    let top = best();
    for (var i = first; i < n; i += stride) {
        let l = logits[i];
        if (l != l) {
            continue;
        }
        let k = key_of(l);
        let w = exp(l - top);
        for (var c = 0u; c < CANDIDATES; c++) {
            if (above(k, i, tk[c], tc[c])) {
                (*count)[c] += 1u;
                (*mass)[c] += w;
            }
        }
    }
}

// The kept weights of chunk j of the ids.
fn chunk_sum(j: u32, n: u32) -> f32 {
    let chunk = (n + PARTIALS - 1u) / PARTIALS;
    let temperature = bitcast<f32>(p(6));
    let top = best();
    var sum = 0.0;
    if (st[ST_TK] != 0u) {
        for (var i = j * chunk; i < min(n, (j + 1u) * chunk); i++) {
            let l = logits[i];
            if (l == l && kept(l, i)) {
                sum += exp((l - top) / temperature);
            }
        }
    }
    return sum;
}

// One step of a search (one invocation): keeps the outcome of the pass that evaluated the
// candidates (`count` and `mass` above each), sets the next candidates; `code` says which search
// and digit: search · 256 + level · 64 + shift.
fn step_logic(code: u32, count: array<u32, CANDIDATES>, mass: array<f32, CANDIDATES>) {
    let search = code >> 8u;
    let level = (code >> 6u) & 3u;
    let s = code & 63u;
    if (search == SEARCH_CUTOFF) {
        // Kept: at or above the cutoff, as the final search would find with no other filter.
        st[ST_TK] = st[ST_KK];
        st[ST_TC] = st[ST_KC];
        return;
    }
    if (search == SEARCH_Z) {
        st[ST_Z] = bitcast<u32>(mass[0]);
        next_search(search);
        return;
    }
    var ok: array<bool, CANDIDATES>;
    for (var c = 0u; c < CANDIDATES; c++) {
        ok[c] = holds(search, c, count[c], mass[c]);
    }
    var digits = st[ST_DIGITS];
    if (level == 0u) {
        // The largest candidate key that fails; the answer is the next key up.
        var failed = CANDIDATES;
        for (var c = 0u; c < CANDIDATES; c++) {
            if (!ok[c]) {
                failed = c;
            }
        }
        if (failed != CANDIDATES) {
            digits = add_sat(digits, failed << s);
            st[ST_FOUND] = 1u;
        }
        if (s != 0u) {
            st[ST_DIGITS] = digits;
            key_candidates(digits, s - 4u);
            return;
        }
        // The smallest key whose top threshold holds, if any does (digits past the range: the
        // candidates were clamped to KEY_HIGH, and it failed).
        let found = st[ST_FOUND] != 0u;
        let offset = select(0u, digits + 1u, found);
        if (found && digits >= KEY_HIGH - KEY_LOW) {
            // Nothing holds (top_p ≤ 0 or min_p > 1): keep the best token only, and let the
            // id passes pass.
            st[ST_TK] = 0u;
            st[ST_KEY] = 0u;
            if (search == SEARCH_TOPK) {
                next_search(search);
            }
            return;
        }
        st[ST_KEY] = KEY_LOW + offset;
        st[ST_DIGITS] = 0u;
        id_candidates(KEY_LOW + offset, 0u, ID_BITS - 4u);
        return;
    }
    // Id passes: the largest candidate id that holds (candidate 0, the digits so far, does).
    if (st[ST_KEY] == 0u) {
        return;
    }
    for (var c = 0u; c < CANDIDATES; c++) {
        if (ok[c]) {
            digits = st[ST_CAND + 2u * c + 1u];
        }
    }
    if (s != 0u) {
        st[ST_DIGITS] = digits;
        id_candidates(st[ST_KEY], digits, s - 4u);
        return;
    }
    if (search == SEARCH_TOPK) {
        st[ST_KK] = st[ST_KEY];
        st[ST_KC] = digits;
    } else {
        st[ST_TK] = st[ST_KEY];
        st[ST_TC] = digits;
    }
    st[ST_DIGITS] = 0u;
    next_search(search);
    return;
}

