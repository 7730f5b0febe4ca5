// tiles_store.wgsl: the output of a prefill tile lane (matmul_tiles.wgsl, matmul_tiles_dp4a.wgsl,
// which define ROWS_PER_LANE, TOKENS_PER_LANE and SPAN and bind y): its ROWS_PER_LANE ×
// TOKENS_PER_LANE sums, rows r0 + tr + SPAN · i and tokens t0 + tt + SPAN · j, stored into the
// row-major [T, out] output where they fall inside it.
// Tested through both kernels (crates/gpu/tests/qmatmul.rs).
fn store_tile(acc: array<f32, ROWS_PER_LANE * TOKENS_PER_LANE>, r0: u32, t0: u32, tr: u32, tt: u32, rows: u32, tokens: u32) {
    for (var i = 0u; i < ROWS_PER_LANE; i++) {
        let row = r0 + tr + SPAN * i;
        for (var j = 0u; j < TOKENS_PER_LANE; j++) {
            let t = t0 + tt + SPAN * j;
            if (row < rows && t < tokens) {
                y[t * rows + row] = acc[TOKENS_PER_LANE * i + j];
            }
        }
    }
}
