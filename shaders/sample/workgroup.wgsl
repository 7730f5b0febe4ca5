// sample/workgroup.wgsl: the declarations of sample.wgsl's GPU-family forms
// (sample/sums_workgroup.wgsl, sample/draw_workgroup.wgsl): workgroup memory for the reductions and
// scans, and the scan itself. Substituted for sample.wgsl's `workgroup_decls` key (empty for the
// CPU-adapter family).
// Tested through sample.wgsl (crates/model/tests/choose.rs).
const LANES: u32 = WORKGROUP_SIZE;
// Values sample/sums_workgroup.wgsl reduces: each candidate's count and mass.
const NV: u32 = 2u * CANDIDATES;
// Chunks of the draw each lane takes.
const CHUNKS_PER_LANE: u32 = PARTIALS / WORKGROUP_SIZE;
const NONE: u32 = 0xffffffffu;
var<workgroup> red: array<f32, NV * WORKGROUP_SIZE>;
var<workgroup> scan_buf: array<f32, WORKGROUP_SIZE>;
var<workgroup> first_at: atomic<u32>;
var<workgroup> last_at: atomic<u32>;
var<workgroup> shared_word: u32;
var<workgroup> shared_sum: f32;

// The sum of `v` over the lanes before this one, and over all of them (Hillis-Steele, a barrier
// per step); every lane must call it.
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

// Clears the first/last markers before a search (every lane calls it).
fn reset_markers(lid: u32) {
    if (lid == 0u) {
        atomicStore(&first_at, NONE);
        atomicStore(&last_at, 0u);
    }
    workgroupBarrier();
}
