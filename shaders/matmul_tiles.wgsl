// matmul_tiles.wgsl (GPU family): y[T, out] = x[T, in] · Wᵀ for prefill (several tokens), W in a
// GGUF block format, dequantized once per tile into workgroup memory (never into a buffer).
// A workgroup computes a tile of TILE_ROWS rows × TILE_TOKENS tokens: each step along K, its
// first TILE_ROWS lanes dequantize one 32-weight chunk of one row each (dequant32, appended from
// dequant/<type>.wgsl) while every lane loads the tokens' 32 x values, both into workgroup memory
// laid out [k][row] / [k][token]; then every lane multiplies 4 rows by 4 tokens from there. So W
// is read ⌈T / TILE_TOKENS⌉ times (once per token tile) and x ⌈out / TILE_ROWS⌉ times, and the
// tile's 64 · 64 · 32 multiply-adds per step run from workgroup memory.
// A lane's rows are tr + 16i and tokens tt + 16j (tr = lane % 16, tt = lane / 16): 16 consecutive
// lanes read 16 consecutive words of the row tile (no bank conflicts) and the same word of the
// token tile (a broadcast), and store 16 consecutive outputs of a token.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  w: array<u32>        GGUF rows, each padded to row_stride bytes (16n), from byte base
//   1  x: array<vec4<f32>>  the input, row-major [T, in] f32 (in a multiple of 32)
//   2  y: array<f32>        the output, row-major [T, out] f32
//   3  p: uniform           [in, out, T, row_stride, base]
// Workgroup: WORKGROUP_SIZE = 256 lanes, 16 KiB of workgroup memory (WebGPU's default limit).
// Dispatch: x = row tiles, y = token tiles. Rows and tokens past the last are read as the last
// one and not stored.
// Tested against burrow_gguf::dequantize + an f64 matmul (crates/gpu/tests/qmatmul.rs).

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const TILE_ROWS: u32 = {{tile_rows}}u;
const TILE_TOKENS: u32 = {{token_tile}}u;
// K values per step: one dequant32 chunk.
const KC: u32 = 32u;
// Lanes along the rows (and along the tokens) of the tile; each lane takes 4 of each.
const SPAN: u32 = 16u;

var<workgroup> w_tile: array<f32, KC * TILE_ROWS>;
var<workgroup> x_tile: array<f32, KC * TILE_TOKENS>;

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
    let my_row = p(4) + min(r0 + lid, rows - 1u) * row_stride;

    var acc: array<f32, 16>;
    for (var c = 0u; c < k / KC; c++) {
        if (lid < TILE_ROWS) {
            // var, not let: naga may refuse dynamic indices into array values.
            var wv = dequant32(my_row, c);
            for (var i = 0u; i < 8u; i++) {
                let at = 4u * i * TILE_ROWS + lid;
                w_tile[at] = wv[i].x;
                w_tile[at + TILE_ROWS] = wv[i].y;
                w_tile[at + 2u * TILE_ROWS] = wv[i].z;
                w_tile[at + 3u * TILE_ROWS] = wv[i].w;
            }
        }
        // The tokens' chunk: TILE_TOKENS · 8 vec4s, a token's 8 in consecutive lanes' loads.
        for (var n = lid; n < TILE_TOKENS * 8u; n += WORKGROUP_SIZE) {
            let t = n / 8u;
            let q = n % 8u;
            let v = x[min(t0 + t, tokens - 1u) * x_stride + c * 8u + q];
            let at = 4u * q * TILE_TOKENS + t;
            x_tile[at] = v.x;
            x_tile[at + TILE_TOKENS] = v.y;
            x_tile[at + 2u * TILE_TOKENS] = v.z;
            x_tile[at + 3u * TILE_TOKENS] = v.w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KC; kk++) {
            let wr = kk * TILE_ROWS + tr;
            let xr = kk * TILE_TOKENS + tt;
            let a = vec4<f32>(w_tile[wr], w_tile[wr + SPAN], w_tile[wr + 2u * SPAN], w_tile[wr + 3u * SPAN]);
            let b = vec4<f32>(x_tile[xr], x_tile[xr + SPAN], x_tile[xr + 2u * SPAN], x_tile[xr + 3u * SPAN]);
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[4u * i + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = r0 + tr + SPAN * i;
        for (var j = 0u; j < 4u; j++) {
            let t = t0 + tt + SPAN * j;
            if (row < rows && t < tokens) {
                y[t * rows + row] = acc[4u * i + j];
            }
        }
    }
}
