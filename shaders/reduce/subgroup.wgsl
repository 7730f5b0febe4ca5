// reduce/subgroup.wgsl: reduce/shared.wgsl with subgroupAdd, for devices with subgroups (never
// required): each subgroup sums its lanes' values at once, then one lane per value adds up the
// group's subgroups. The subgroup size is read (sg_size, the subgroup_size builtin, as is sg_lane,
// the subgroup_invocation_id), never assumed: when a subgroup is wider than a group of LANES
// lanes, the workgroup-memory tree runs instead. Subgroups are taken to be runs of consecutive
// local_invocation_index, as every implementation lays out a one-dimensional workgroup.
// The kernel declares what reduce/shared.wgsl needs, plus sg_size and sg_lane; the tree is
// reduce/shared.wgsl itself, substituted for `reduce_shared` (crates/gpu/src/shaders.rs).
// Tested through the kernels that use it, on an adapter with subgroups (crates/gpu/tests/qmatmul.rs).
    if (sg_size <= LANES) {
        for (var v = 0u; v < NV; v++) {
            let t = subgroupAdd(vals[v]);
            if (sg_lane == 0u) {
                red[v * WORKGROUP_SIZE + group * LANES + lane / sg_size] = t;
            }
        }
        workgroupBarrier();
        if (lane < NV) {
            var t = 0.0;
            for (var k = 0u; k < LANES / sg_size; k++) {
                t += red[lane * WORKGROUP_SIZE + group * LANES + k];
            }
            red[lane * WORKGROUP_SIZE + group * LANES] = t;
        }
        workgroupBarrier();
    } else {
{{reduce_shared}}
    }
