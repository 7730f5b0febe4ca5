// matmul_tiles.wgsl (GPU family): y[T, out] = x[T, in] · Wᵀ for prefill (several tokens), W in a
// GGUF block format, dequantized once per tile into workgroup memory (never into a buffer).
// A workgroup computes a tile of TILE_ROWS (64) rows × TILE_TOKENS tokens: each step along K, its
// lanes dequantize the rows' 32-weight chunks (dequant32, appended from dequant/<type>.wgsl), four
// lanes a row, each keeping a quarter (so a subgroup's loads touch 8 rows' blocks, not 32, and
// every lane has the same work), and load the tokens' 32 x values, both into workgroup memory
// laid out [k][row] / [k][token]; then every lane multiplies 4 rows by TILE_TOKENS / 16 tokens
// from there, accumulating in f32. So W is read ⌈T / TILE_TOKENS⌉ times (once per token tile) and
// x ⌈out / TILE_ROWS⌉ times, and the tile's multiply-adds run from workgroup memory.
// The tiles hold TILE_T values: f32 (64 tokens, 16 KiB), or with `shader-f16` f16 (128 tokens in
// 12 KiB: the weights are read half as often; weights and activations rounded to f16 on the way,
// as llama.cpp's GPU backends do).
// A lane's rows are tr + 16i and tokens tt + 16j (tr = lane % 16, tt = lane / 16): 16 consecutive
// lanes read 16 consecutive values of the row tile (no bank conflicts) and the same value of the
// token tile (a broadcast), and store 16 consecutive outputs of a token.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  w: array<u32>        GGUF rows, each padded to row_stride bytes (16n), from byte base
//   1  x: array<vec4<f32>>  the input, row-major [T, in] f32 (in a multiple of 32)
//   2  y: array<f32>        the output, row-major [T, out] f32
//   3  p: uniform           [in, out, T, row_stride, base]
// Workgroup: WORKGROUP_SIZE = 256 lanes, at most 16 KiB of workgroup memory (WebGPU's default).
// Dispatch: x = row tiles, y = token tiles. Rows and tokens past the last are read as the last
// one and not stored.
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs), with f16
// tiles where the adapter has shader-f16 (lavapipe does) and without.
{{enables}}

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

alias TILE_T = {{tile_type}};
const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const TILE_ROWS: u32 = {{tile_rows}}u;
const TILE_TOKENS: u32 = {{token_tile}}u;
// K values per step: one dequant32 chunk.
const KC: u32 = 32u;
// Lanes along the rows and along the tokens of the tile.
const SPAN: u32 = {{span}}u;
const ROWS_PER_LANE: u32 = TILE_ROWS / SPAN;
const TOKENS_PER_LANE: u32 = TILE_TOKENS / SPAN;

var<workgroup> w_tile: array<TILE_T, KC * TILE_ROWS>;
var<workgroup> x_tile: array<TILE_T, KC * TILE_TOKENS>;

@compute @workgroup_size({{workgroup_size}})
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let k = p(0);
    let rows = p(1);
    let tokens = p(2);
    let row_stride = p(3);
    let r0 = wg.x * TILE_ROWS;
    let t0 = wg.y * TILE_TOKENS;
    let tr = lid % SPAN;
    let tt = lid / SPAN;
    let x_stride = k / 4u;
    // This lane's row of the tile, and which quarter of its chunks it keeps.
    let my_row = p(4) + min(r0 + lid / 4u, rows - 1u) * row_stride;
    let quarter = lid % 4u;

    var acc: array<f32, ROWS_PER_LANE * TOKENS_PER_LANE>;
    for (var c = 0u; c < k / KC; c++) {
        {
            // var, not let: naga may refuse dynamic indices into array values.
            var wv = dequant32(my_row, c);
            for (var h = 0u; h < 2u; h++) {
                let i = 2u * quarter + h;
                let at = 4u * i * TILE_ROWS + lid / 4u;
                w_tile[at] = TILE_T(wv[i].x);
                w_tile[at + TILE_ROWS] = TILE_T(wv[i].y);
                w_tile[at + 2u * TILE_ROWS] = TILE_T(wv[i].z);
                w_tile[at + 3u * TILE_ROWS] = TILE_T(wv[i].w);
            }
        }
        // The tokens' chunk: TILE_TOKENS · 8 vec4s, a token's 8 in consecutive lanes' loads.
        for (var n = lid; n < TILE_TOKENS * 8u; n += WORKGROUP_SIZE) {
            let t = n / 8u;
            let q = n % 8u;
            let v = x[min(t0 + t, tokens - 1u) * x_stride + c * 8u + q];
            let at = 4u * q * TILE_TOKENS + t;
            x_tile[at] = TILE_T(v.x);
            x_tile[at + TILE_TOKENS] = TILE_T(v.y);
            x_tile[at + 2u * TILE_TOKENS] = TILE_T(v.z);
            x_tile[at + 3u * TILE_TOKENS] = TILE_T(v.w);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KC; kk++) {
            var a: array<f32, ROWS_PER_LANE>;
            for (var i = 0u; i < ROWS_PER_LANE; i++) {
                a[i] = f32(w_tile[kk * TILE_ROWS + tr + SPAN * i]);
            }
            for (var j = 0u; j < TOKENS_PER_LANE; j++) {
                let b = f32(x_tile[kk * TILE_TOKENS + tt + SPAN * j]);
                for (var i = 0u; i < ROWS_PER_LANE; i++) {
                    acc[TOKENS_PER_LANE * i + j] += a[i] * b;
                }
            }
        }
        workgroupBarrier();
    }
    store_tile(acc, r0, t0, tr, tt, rows, tokens);
}
