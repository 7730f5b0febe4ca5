// sample/draw_serial.wgsl: sample.wgsl's phase 4 (draw) in one invocation, for the CPU-adapter
// family (no barriers): the chunk, then the id, where the running sum passes r × total. A
// statement block substituted for sample.wgsl's `draw` template key.
// Tested through sample.wgsl (crates/model/tests/choose.rs).
    if (id != 0u) {
        return;
    }
    if (st[ST_TK] == 0u || top != top) {
        // Nothing kept but the best token (or no logit is a number): out[0] already holds it.
        return;
    }
    var total = 0.0;
    for (var j = 0u; j < PARTIALS; j++) {
        total += bitcast<f32>(part[j]);
    }
    let goal = bitcast<f32>(step[p(4)]) * total;
    // The chunk where the running sum passes the goal (rounding may leave it short: then the
    // last chunk with weight, whose last kept token is chosen, as the CPU picks the last one).
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
