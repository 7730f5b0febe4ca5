// sample/draw_workgroup.wgsl: sample.wgsl's phase 4 (draw) for the GPU family, one workgroup: the
// chunk where the running sum of the kept weights passes r × total (the first chunk with weight
// whose end passes it; rounding may leave every one short: then the last chunk with weight), then
// the token in it (the first whose running sum passes the goal, else the chunk's last token with
// weight), as sample/draw_serial.wgsl finds them in one invocation, with workgroup scans: lanes
// take CHUNKS_PER_LANE consecutive chunks, then consecutive runs of the chunk's tokens. A
// statement block substituted for sample.wgsl's `draw` key.
// Tested through sample.wgsl (crates/model/tests/choose.rs).
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
        sums[k] = bitcast<f32>(part[lid * CHUNKS_PER_LANE + k]);
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
