// matmul_tiles_dp4a.wgsl (GPU family, where WGSL has packed_4x8_integer_dot_product): prefill's
// y[T, out] = x[T, in] · Wᵀ with 8-bit integer dot products, as llama.cpp's CPU path computes
// quantized matmuls: each token's 32-value chunk of x is quantized to 8 bits (scale
// d_x = max|x| / 127 rounded to f16, codes round(x / d_x)), each chunk of a weight row is read as
// 8-bit codes q_w with a scale d_w and an offset m_w (codes32, appended from codes/<type>.wgsl:
// the types whose 32-weight chunks are exactly d_w · q_w + m_w), and
//   y[t, r] = Σ_chunks d_w · d_x · dot4I8Packed(q_w, q_x) (8 per chunk) + m_w · d_x · Σ q_x.
// Tiles as matmul_tiles.wgsl (TILE_ROWS rows × TILE_TOKENS (128) tokens a workgroup, four lanes
// per row and two per token filling workgroup memory each step along K, a lane multiplying 4 rows
// by 8 tokens), but the tiles hold codes: a quarter of the bytes, four multiply-adds an
// instruction.
//
// Bindings (group 0), all read_write for the reason given in qmatmul.wgsl:
//   0  w: array<u32>        GGUF rows, each padded to row_stride bytes (16n), from byte base
//   1  x: array<vec4<f32>>  the input, row-major [T, in] f32 (in a multiple of 32)
//   2  y: array<f32>        the output, row-major [T, out] f32
//   3  p: uniform           [in, out, T, row_stride, base]
// Workgroup: WORKGROUP_SIZE = 4 · TILE_ROWS = 2 · TILE_TOKENS = 256 lanes, 7.5 KiB of workgroup
// memory. Dispatch: x = row tiles, y = token tiles. Rows and tokens past the last are read as the
// last one and not stored.
// Tested against burrow_gguf::dequantize + an f64 matmul, with the error 8-bit activations make
// (crates/gpu/tests/qmatmul.rs), and through the architecture fixtures against llama.cpp's logits.

@group(0) @binding(0) var<storage, read_write> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: array<vec4<u32>, {{param_vec4s}}>;

const WORKGROUP_SIZE: u32 = {{workgroup_size}}u;
const TILE_ROWS: u32 = {{tile_rows}}u;
const TILE_TOKENS: u32 = {{token_tile}}u;
const SPAN: u32 = {{span}}u;
const ROWS_PER_LANE: u32 = TILE_ROWS / SPAN;
const TOKENS_PER_LANE: u32 = TILE_TOKENS / SPAN;
// Lanes that quantize a token's chunk together, and the code words each writes.
const LANES_PER_TOKEN: u32 = WORKGROUP_SIZE / TILE_TOKENS;
const WORDS_PER_LANE: u32 = 8u / LANES_PER_TOKEN;

// A chunk of a weight row: 32 codes four to a word, scale and offset (codes/<type>.wgsl).
struct Codes {
    q: array<u32, 8>,
    d: f32,
    m: f32,
}

// Codes [word][row], and each row's (d_w, m_w); codes [word][token], and each token's (d_x, Σx).
var<workgroup> w_codes: array<u32, 8u * TILE_ROWS>;
var<workgroup> w_dm: array<vec2<f32>, TILE_ROWS>;
var<workgroup> x_codes: array<u32, 8u * TILE_TOKENS>;
var<workgroup> x_ds: array<vec2<f32>, TILE_TOKENS>;

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
    // The row (four lanes each) and the token (LANES_PER_TOKEN each) this lane helps load, and
    // which part of their chunk it writes.
    let quarter = lid % 4u;
    let my_row = p(4) + min(r0 + lid / 4u, rows - 1u) * row_stride;
    let part = lid % LANES_PER_TOKEN;
    let token = lid / LANES_PER_TOKEN;
    let my_token = min(t0 + token, tokens - 1u) * x_stride;

    var acc: array<f32, ROWS_PER_LANE * TOKENS_PER_LANE>;
    for (var c = 0u; c < k / 32u; c++) {
        {
            var codes = codes32(my_row, c);
            w_codes[(2u * quarter) * TILE_ROWS + lid / 4u] = codes.q[2u * quarter];
            w_codes[(2u * quarter + 1u) * TILE_ROWS + lid / 4u] = codes.q[2u * quarter + 1u];
            if (quarter == 0u) {
                w_dm[lid / 4u] = vec2<f32>(codes.d, codes.m);
            }
        }
        {
            // The token's whole chunk (its lanes read the same 128 bytes): its scale, rounded to
            // f16 as llama.cpp stores it, and the sum of the quantized values, d · Σ codes (as
            // llama.cpp's Q8_1: the offset then multiplies the same values the codes stand for,
            // so the rounding errors meet centred weights d_w · q_w + m_w).
            var xv: array<vec4<f32>, 8>;
            var amax = 0.0;
            for (var i = 0u; i < 8u; i++) {
                xv[i] = x[my_token + c * 8u + i];
                let a = abs(xv[i]);
                amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
            }
            let d = unpack2x16float(pack2x16float(vec2<f32>(amax / 127.0, 0.0))).x;
            let inv = select(0.0, 1.0 / d, d > 0.0);
            var sum = vec4<f32>(0.0);
            for (var i = 0u; i < 8u; i++) {
                let q = round(xv[i] * inv);
                sum += q;
                if (i / WORDS_PER_LANE == part) {
                    x_codes[i * TILE_TOKENS + token] = pack4xI8(vec4<i32>(q));
                }
            }
            if (part == 0u) {
                x_ds[token] = vec2<f32>(d, d * (sum.x + sum.y + sum.z + sum.w));
            }
        }
        workgroupBarrier();
        for (var i = 0u; i < ROWS_PER_LANE; i++) {
            let row = tr + SPAN * i;
            var wq: array<u32, 8>;
            for (var n = 0u; n < 8u; n++) {
                wq[n] = w_codes[n * TILE_ROWS + row];
            }
            let dm = w_dm[row];
            for (var j = 0u; j < TOKENS_PER_LANE; j++) {
                let t = tt + SPAN * j;
                var s = 0;
                for (var n = 0u; n < 8u; n++) {
                    s += dot4I8Packed(wq[n], x_codes[n * TILE_TOKENS + t]);
                }
                let ds = x_ds[t];
                acc[TOKENS_PER_LANE * i + j] += dm.x * ds.x * f32(s) + dm.y * ds.y;
            }
        }
        workgroupBarrier();
    }
    store_tile(acc, r0, t0, tr, tt, rows, tokens);
}
