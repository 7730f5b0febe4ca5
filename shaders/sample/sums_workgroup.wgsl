// sample/sums_workgroup.wgsl: sample.wgsl's phase 2 sums for the GPU family: the workgroup's
// lanes split the partials and reduce each candidate's count and mass in workgroup memory
// (reduce/shared.wgsl, substituted for `reduce`; counts travel as f32, exact below 2^24). A
// statement block substituted for sample.wgsl's `candidate_sums` key; it fills count and mass
// (in every lane). sample/workgroup.wgsl declares what it uses.
// Tested through sample.wgsl (crates/model/tests/choose.rs).
            let group = 0u;
            let lane = lid;
            var vals: array<f32, NV>;
            for (var j = lid; j < PARTIALS; j += WORKGROUP_SIZE) {
                for (var c = 0u; c < CANDIDATES; c++) {
                    vals[2u * c] += f32(part[(j * CANDIDATES + c) * 2u]);
                    vals[2u * c + 1u] += bitcast<f32>(part[(j * CANDIDATES + c) * 2u + 1u]);
                }
            }
{{reduce}}
            for (var c = 0u; c < CANDIDATES; c++) {
                count[c] = u32(red[2u * c * WORKGROUP_SIZE]);
                mass[c] = red[(2u * c + 1u) * WORKGROUP_SIZE];
            }
