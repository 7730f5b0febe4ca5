// sample/sums_serial.wgsl: sample.wgsl's phase 2 sums (each candidate's count and mass over the
// PARTIALS partials) in one invocation, for the CPU-adapter family (no barriers). A statement block
// substituted for sample.wgsl's `candidate_sums` template key; it fills count and mass.
// Tested through sample.wgsl (crates/model/tests/choose.rs).
            if (id == 0u) {
                for (var c = 0u; c < CANDIDATES; c++) {
                    for (var j = 0u; j < PARTIALS; j++) {
                        count[c] += part[(j * CANDIDATES + c) * 2u];
                        mass[c] += bitcast<f32>(part[(j * CANDIDATES + c) * 2u + 1u]);
                    }
                }
            }
