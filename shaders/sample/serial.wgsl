// sample/serial.wgsl: sample.wgsl's phases for the CPU-adapter family, no barriers (they cost
// seconds a dispatch on SwiftShader): a pass is an eval dispatch and a step dispatch.
//   0 init (1 invocation): reads the best logit, sets up the first search;
//   1 eval (PARTIALS invocations): invocation j sums, over logits j, j + PARTIALS, …, the count and
//     mass above each candidate in st, into part[j, c, 0..2];
//   2 step (1 invocation): adds up part and applies step code p(5) (step_logic);
//   3 chunk (PARTIALS invocations): invocation j sums the kept weights of chunk j into part[j];
//   4 draw (1 invocation): finds the chunk, then the id, where the running sum passes r × total
//     (rounding may leave it short: then the last chunk with weight, whose last kept token is
//     chosen, as the CPU picks the last one), and writes it to out[0].
// Appended to sample.wgsl. Dispatch: eval and chunk PARTIALS / WORKGROUP_SIZE
// groups, the others one.
// Tested through sample.wgsl (crates/model/tests/choose.rs).

@group(0) @binding(3) var<storage, read_write> st: array<u32>;

fn eval_phase(j: u32, n: u32) {
    if (j >= PARTIALS) {
        return;
    }
    var count: array<u32, CANDIDATES>;
    var mass: array<f32, CANDIDATES>;
    eval_strided(j, PARTIALS, n, &count, &mass);
    for (var c = 0u; c < CANDIDATES; c++) {
        part[(j * CANDIDATES + c) * 2u] = count[c];
        part[(j * CANDIDATES + c) * 2u + 1u] = bitcast<u32>(mass[c]);
    }
}

fn step_phase() {
    var count: array<u32, CANDIDATES>;
    var mass: array<f32, CANDIDATES>;
    if ((p(5) >> 8u) != SEARCH_CUTOFF) {
        for (var c = 0u; c < CANDIDATES; c++) {
            for (var j = 0u; j < PARTIALS; j++) {
                count[c] += part[(j * CANDIDATES + c) * 2u];
                mass[c] += bitcast<f32>(part[(j * CANDIDATES + c) * 2u + 1u]);
            }
        }
    }
    step_logic(p(5), count, mass);
}

fn draw_phase(n: u32) {
    let chunk = (n + PARTIALS - 1u) / PARTIALS;
    let temperature = bitcast<f32>(p(6));
    let top = best();
    if (st[ST_TK] == 0u || top != top) {
        // Nothing kept but the best token (or no logit is a number): out[0] already holds it.
        return;
    }
    var total = 0.0;
    for (var j = 0u; j < PARTIALS; j++) {
        total += bitcast<f32>(part[j]);
    }
    let goal = bitcast<f32>(step[p(4)]) * total;
    var acc = 0.0;
    var before = 0.0;
    var last = 0u;
    for (var j = 0u; j < PARTIALS; j++) {
        let s = bitcast<f32>(part[j]);
        if (s <= 0.0) {
            continue;
        }
        last = j;
        before = acc;
        if (acc + s > goal) {
            break;
        }
        acc += s;
    }
    acc = before;
    var chosen = out[0];
    for (var i = last * chunk; i < min(n, (last + 1u) * chunk); i++) {
        let l = logits[i];
        if (l == l && kept(l, i)) {
            let w = exp((l - top) / temperature);
            if (w <= 0.0) {
                continue;
            }
            chosen = i;
            acc += w;
            if (acc > goal) {
                break;
            }
        }
    }
    out[0] = chosen;
}

@compute @workgroup_size({{workgroup_size}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = p(0);
    if (PHASE == 1u) {
        eval_phase(gid.x, n);
    } else if (PHASE == 3u) {
        if (gid.x < PARTIALS) {
            part[gid.x] = bitcast<u32>(chunk_sum(gid.x, n));
        }
    } else if (gid.x == 0u) {
        if (PHASE == 0u) {
            init_state(n);
        } else if (PHASE == 2u) {
            step_phase();
        } else {
            draw_phase(n);
        }
    }
}
