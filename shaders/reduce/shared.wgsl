// reduce/shared.wgsl: sums, per group of LANES consecutive lanes, each of the NV values in the
// lane's `vals`, through workgroup memory: a tree of log2(LANES) halvings, a barrier after each.
// A statement block substituted for a kernel's `reduce` template key (matvec.wgsl,
// rms_norm_rows.wgsl, argmax_rows.wgsl, attention_split.wgsl …). The kernel declares before it:
// WORKGROUP_SIZE, LANES (a power of two dividing it), NV, `var<workgroup> red: array<f32, NV *
// WORKGROUP_SIZE>`, `lid` (local_invocation_index), `group` = lid / LANES, `lane` = lid % LANES,
// and `vals: array<f32, NV>`. After it, red[v * WORKGROUP_SIZE + group * LANES] holds value v's
// sum over the group, visible to every lane. Control flow is uniform (every lane reaches every
// barrier). reduce/subgroup.wgsl is the same with subgroupAdd.
// Tested through the kernels that use it (crates/gpu/tests/qmatmul.rs, ops.rs).
    for (var v = 0u; v < NV; v++) {
        red[v * WORKGROUP_SIZE + lid] = vals[v];
    }
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            for (var v = 0u; v < NV; v++) {
                red[v * WORKGROUP_SIZE + lid] += red[v * WORKGROUP_SIZE + lid + stride];
            }
        }
        workgroupBarrier();
    }
