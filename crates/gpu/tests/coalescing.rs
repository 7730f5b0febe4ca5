//! Whether the GPU family's decode kernels read memory the way GPUs want it read: an instrumented
//! build of the matvec (`shaders/matvec.wgsl`, every weight type) and of the split attention
//! (`shaders/attention_split.wgsl`) records, per lane, the index of every word of weights or KV
//! cache it loads. The lanes of a GPU read memory 32 at a time (a warp, or a wave's quarter), one
//! instruction for all of them; that instruction costs one transaction per 128-byte line its
//! addresses touch. The test holds every load instruction of every run of 32 consecutive lanes to
//! at most 4 lines (a lane per row walking its row alone, as the CPU-adapter family's matvec does,
//! touches 16 to 32). Runs on lavapipe: the addresses do not depend on the adapter.

mod common;

use std::collections::BTreeSet;

use burn::tensor::{Tensor, TensorData};
use burrow_gpu::{trace_attention_loads, trace_matvec_loads, AttentionParams, Fold, Gate, KvCache, MatvecKernel, QuantTensor, StepTokens, WEIGHT_TYPES};
use common::{device, random_tensor, Rng};

/// Lanes that load together, and the most 128-byte lines one of their loads may touch.
const WARP: usize = 32;
const MAX_LINES: usize = 4;
/// Bytes of a memory transaction's line.
const LINE: u32 = 128;

/// Per load instruction (the k-th load of each lane, lanes in lockstep) of each run of `WARP`
/// lanes, the distinct lines its addresses touch; the worst, with where it happened. A word's top
/// bit, when set, marks a second buffer (its lines are other lines).
fn worst_lines(lanes: &[Vec<u32>]) -> (usize, String) {
    let mut worst = (0, String::new());
    for (w, warp) in lanes.chunks(WARP).enumerate() {
        let loads = warp.iter().map(Vec::len).max().unwrap_or(0);
        for k in 0..loads {
            let lines: BTreeSet<u32> = warp.iter().filter_map(|lane| lane.get(k)).map(|&word| (word & 0x8000_0000) | ((word & 0x7fff_ffff) * 4 / LINE)).collect();
            if lines.len() > worst.0 {
                worst = (lines.len(), format!("warp {w}, load {k}: lines {lines:?}"));
            }
        }
    }
    worst
}

/// The measure itself: lanes that each walk a row of their own (a 576-value Q4_1 row is 368
/// bytes apart from the next, as in the CPU-adapter family's matvec) touch a line per lane.
#[test]
fn a_lane_per_row_is_not_coalesced() {
    let row_words = 368 / 4;
    let lanes: Vec<Vec<u32>> = (0..64).map(|lane| (0..5).map(|k| (lane * row_words + k) as u32).collect()).collect();
    assert_eq!(worst_lines(&lanes).0, WARP);
}

#[test]
fn gpu_matvec_loads_are_coalesced() {
    let device = device();
    let mut rng = Rng(41);
    let kernel = MatvecKernel::Lanes { subgroups: false, f16: false, dp4a: false };
    for ty in WEIGHT_TYPES {
        // Rows split over 32 lanes (576 values) and over 64 (2048).
        for cols in [if ty.block_size() == 256 { 768 } else { 576 }, 2048] {
            let rows = 40;
            let bytes = random_tensor(ty, rows * cols, &mut rng);
            let w = QuantTensor::new(ty, &[cols as u64, rows as u64], &bytes, &device).unwrap().with_matvec_kernel(kernel).unwrap();
            let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; cols], [1, cols]), &device);
            let g = Tensor::<1>::from_data(TensorData::new(vec![1f32; cols], [cols]), &device);
            for (what, fold) in [("plain", Fold::default()), ("norm + GLU", Fold { norm: Some((&g, 1e-5)), glu: Some(Gate::Silu), ..Fold::default() })] {
                let lanes = trace_matvec_loads(&x, &w, &fold).unwrap();
                assert!(lanes.iter().any(|l| !l.is_empty()), "{ty}: nothing recorded");
                let (lines, at) = worst_lines(&lanes);
                eprintln!("{ty} [{rows}, {cols}] {what}: at most {lines} lines a load");
                assert!(lines <= MAX_LINES, "{ty} [{rows}, {cols}] {what}: a load touches {lines} lines ({at})");
            }
        }
    }
}

#[test]
fn split_attention_loads_are_coalesced() {
    let device = device();
    let mut rng = Rng(42);
    // SmolLM2's heads (9 of 64 in groups of 3), Llama 3's (groups of 4 of 128), Gemma's 256.
    for (heads, kv_heads, hd, pos) in [(9, 3, 64, 200), (8, 2, 128, 90), (4, 1, 256, 40)] {
        let n_ctx = pos + 1;
        let n = kv_heads * n_ctx * hd;
        let values: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
        let cache = KvCache::upload(&device, [kv_heads, n_ctx, hd], &values, &values, true).unwrap();
        let q = Tensor::<3>::from_data(TensorData::new(vec![0.1f32; heads * hd], [1, heads, hd]), &device);
        let step = StepTokens::new(&device, pos, &[0]).unwrap();
        let p = AttentionParams { window: None, scale: 0.1, softcap: None };
        let lanes = trace_attention_loads(q, &cache, &step, &p).unwrap();
        assert!(lanes.iter().any(|l| l.iter().any(|&w| w & 0x8000_0000 != 0)), "no V load recorded");
        let (lines, at) = worst_lines(&lanes);
        eprintln!("attention, heads {heads}/{kv_heads} of {hd}: at most {lines} lines a load");
        assert!(lines <= MAX_LINES, "heads {heads}/{kv_heads} of {hd}: a load touches {lines} lines ({at})");
    }
}
