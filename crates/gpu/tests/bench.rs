//! Decode costs on the machine's wgpu adapter: matvec throughput in GB/s of weights read, the
//! time of each other kernel at SmolLM2-135M's decode shapes with its count per token, and the
//! floor of reading the model's weight bytes at all (`shaders/sweep.wgsl`). Not timed tests
//! (ignored by default); run on a quiet machine with
//! `cargo test --release -p burrow-gpu --test bench -- --ignored --nocapture --test-threads 1`.

mod common;

use burn::backend::wgpu::{CubeDim, CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::backend::Cube;
use burn::cubecl::prelude::{CubeCount, KernelId};
use burn::cubecl::server::KernelArguments;
use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{byte_size, GgmlType};
use burrow_gpu::{
    add_rms_norm, attention, choose, gated, qmatmul, rms_norm, rope_kv, AttentionParams, Choice, Columns, Gate, Kernels, KvCache,
    MatvecKernel, QuantTensor, RopePairs, RopeParams, RopeRows, StepTokens,
};
use std::time::Instant;

/// Dispatches per measurement, queued back to back and awaited once (as a decode step would).
const RUNS: usize = 20;

/// `(type, out, in)`: SmolLM2-135M's token embedding / output head and its FFN up projection.
const CASES: [(GgmlType, usize, usize); 2] =
    [(GgmlType::Q8_0, 49152, 576), (GgmlType::Q4_1, 1536, 576)];

#[test]
#[ignore = "benchmark: run explicitly, on a quiet machine"]
fn decode_matvec_throughput() {
    let device = common::device();
    for (ty, out, cols) in CASES {
        // Constant bytes are enough for timing: the kernels do not branch on the data.
        let len = byte_size(ty, (out * cols) as u64).unwrap() as usize;
        let uploaded =
            QuantTensor::new(ty, &[cols as u64, out as u64], &vec![0x11; len], &device).unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; cols], [1, cols]), &device);
        let lanes = common::all_kernels().into_iter().filter(|k| k.is_gpu()).map(|k| MatvecKernel::Lanes { subgroups: k.subgroups, f16: false, dp4a: false });
        for kernel in [MatvecKernel::Rows, MatvecKernel::Unrolled].into_iter().chain(lanes) {
            let Ok(w) = uploaded.clone().with_matvec_kernel(kernel) else { continue };
            // Warm-up: compiles the pipeline and allocates the output.
            qmatmul(x.clone(), &w).unwrap();
            device.sync().unwrap();
            let start = Instant::now();
            for _ in 0..RUNS {
                qmatmul(x.clone(), &w).unwrap();
            }
            // Waits for the queued dispatches (reading a tensor may be lazy).
            device.sync().unwrap();
            let seconds = start.elapsed().as_secs_f64();
            let default = if kernel == uploaded.matvec_kernel() { " (the adapter's)" } else { "" };
            println!(
                "{ty} {out}x{cols} {kernel:?}{default}: {:.3} ms per matvec, {:.2} GB/s of weights",
                seconds * 1e3 / RUNS as f64,
                (w.size_bytes() * RUNS) as f64 / seconds / 1e9
            );
        }
    }
}

/// Milliseconds per call of `op`, queued `RUNS` times and awaited once.
fn per_call(device: &Device, mut op: impl FnMut()) -> f64 {
    op();
    device.sync().unwrap();
    let start = Instant::now();
    for _ in 0..RUNS {
        op();
    }
    device.sync().unwrap();
    start.elapsed().as_secs_f64() * 1e3 / RUNS as f64
}

#[test]
#[ignore = "benchmark: run explicitly, on a quiet machine"]
fn decode_kernel_costs() {
    for kernels in common::all_kernels() {
        println!("{kernels:?}:");
        decode_kernel_costs_of(kernels);
    }
}

fn decode_kernel_costs_of(kernels: Kernels) {
    let device = common::device();
    // SmolLM2-135M: 576 wide, 9 query and 3 KV heads of 64, FFN 1536, 30 layers, 49152 tokens.
    let (n_embd, heads, kv_heads, hd, ffn, layers, vocab, ctx) = (576, 9, 3, 64, 1536, 30, 49152, 64);
    let zeros = |shape: &[usize]| vec![0.25f32; shape.iter().product()];
    let t1 = |n: usize| Tensor::<1>::from_data(TensorData::new(zeros(&[n]), [n]), &device);
    let t2 = |r: usize, n: usize| Tensor::<2>::from_data(TensorData::new(zeros(&[r, n]), [r, n]), &device);
    let t3 = |a: usize, b: usize, c: usize| Tensor::<3>::from_data(TensorData::new(zeros(&[a, b, c]), [a, b, c]), &device);
    let step = StepTokens::new(&device, ctx - 1, &[7]).unwrap();
    let norm_w = t1(n_embd);
    let f16 = kernels.is_gpu();
    let cache = KvCache::new(&device, [kv_heads, ctx, hd], f16).unwrap();
    let rope = t3(ctx, hd / 2, 2);
    let rope_p = RopeParams { n_rot: hd, pairs: RopePairs::Adjacent, rows: RopeRows::Shifted(0) };
    let attn_p = AttentionParams { window: None, scale: 0.125, softcap: None };
    // Inputs made once: an upload inside the loop would submit the queue at every call.
    let (x, x2) = (t2(1, n_embd), t2(1, n_embd));
    let qkv = Columns::split(t2(1, (heads + 2 * kv_heads) * hd), &[heads * hd, kv_heads * hd, kv_heads * hd]).unwrap();
    let q_rot = t3(1, heads, hd);
    let (g, u, logits) = (Columns::all(t2(1, ffn)), Columns::all(t2(1, ffn)), t1(vocab));
    let mut rows = Vec::new();
    let mut time = |name: &str, per_token: usize, ms: f64| rows.push((name.to_string(), per_token, ms));
    time("rms_norm [1, 576]", 1, per_call(&device, || drop(rms_norm(x.clone(), &norm_w, 1e-5, kernels).unwrap())));
    time("add_rms_norm [1, 576]", 2 * layers, per_call(&device, || {
        drop(add_rms_norm(x.clone(), x2.clone(), &norm_w, 1e-5, kernels).unwrap())
    }));
    time("rope_kv 9+3 heads", layers, per_call(&device, || {
        drop(rope_kv(&qkv[0], &qkv[1], &qkv[2], &cache, &rope, &step, &rope_p, None, kernels).unwrap())
    }));
    time("attention, 64 positions", layers, per_call(&device, || {
        drop(attention(q_rot.clone(), &cache, &step, &attn_p, kernels).unwrap())
    }));
    // A longer conversation (not in the total).
    let long = 512;
    let long_cache = KvCache::new(&device, [kv_heads, long, hd], f16).unwrap();
    let long_step = StepTokens::new(&device, long - 1, &[7]).unwrap();
    time("attention, 512 positions", 0, per_call(&device, || {
        drop(attention(q_rot.clone(), &long_cache, &long_step, &attn_p, kernels).unwrap())
    }));
    time("gated [1, 1536]", layers, per_call(&device, || drop(gated(&g, &u, Gate::Silu).unwrap())));
    time("choose greedy [49152]", 1, per_call(&device, || drop(choose(logits.clone(), &step, &Choice::greedy(1.0), kernels).unwrap())));
    let warm = Choice { temperature: 0.7, ..Choice::greedy(1.0) };
    time("choose, temperature only [49152] (the app's default; not in the total)", 0, per_call(&device, || {
        drop(choose(logits.clone(), &step, &warm, kernels).unwrap())
    }));
    let sampled = Choice { temperature: 0.8, top_k: 40, top_p: 0.9, min_p: 0.05, penalty: 1.0 };
    time("choose sampled [49152] (top-k, top-p; not in the total)", 0, per_call(&device, || drop(choose(logits.clone(), &step, &sampled, kernels).unwrap())));
    let mut total = 0.0;
    for (name, per_token, ms) in &rows {
        total += *per_token as f64 * ms;
        println!("{name}: {ms:.3} ms per call, {per_token} per token: {:.2} ms per token", *per_token as f64 * ms);
    }
    println!("total per greedy token, besides the matvecs: {total:.1} ms");
}

/// SmolLM2-135M-Instruct Q4_1's weight bytes read per decode token: 210 Q4_1 matrices and the
/// Q8_0 embedding that is also the output head (`burrow bench` reports the model's bytes).
const SMOLLM2_DECODE_BYTES: usize = 96 << 20;
/// Bytes of one padded 576-value Q4_1 row on the GPU (360, padded to 16): the sweep reads rows
/// of this length, and the Q4_1 matvec it is compared with reads the same bytes.
const SWEEP_ROW_BYTES: usize = 368;

/// `shaders/sweep.wgsl` for `rows` rows of `row_vec4s` vec4s.
struct Sweep {
    rows: usize,
    row_vec4s: usize,
}

impl KernelSource for Sweep {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(include_str!("../../../shaders/sweep.wgsl"))
            .register("rows", self.rows.to_string())
            .register("row_vec4s", self.row_vec4s.to_string())
            .register("workgroup_size", SWEEP_WORKGROUP.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.rows, self.row_vec4s))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

const SWEEP_WORKGROUP: usize = 64;

/// How fast the adapter can read a decode step's weight bytes at all: every 16 bytes loaded once,
/// XOR-folded per row, nothing else (`shaders/sweep.wgsl`), against the Q4_1 decode matvec over
/// the same bytes. No decode step that reads the weights once can beat the sweep's time.
#[test]
#[ignore = "benchmark: run explicitly, on a quiet machine"]
fn weight_sweep_floor() {
    let device = common::device();
    let rows = SMOLLM2_DECODE_BYTES / SWEEP_ROW_BYTES;
    let row_words = SWEEP_ROW_BYTES / 4;
    let mut rng = common::Rng(7);
    // f32 bit patterns below 2^30: never NaN, so the upload keeps every bit.
    let words: Vec<u32> = (0..rows * row_words).map(|_| rng.next() as u32 & 0x3fff_ffff).collect();
    let expected: Vec<u32> = words.chunks(row_words).map(|r| r.iter().fold(0, |a, &w| a ^ w)).collect();
    let floats: Vec<f32> = words.iter().map(|&w| f32::from_bits(w)).collect();
    let w: CubeTensor = Tensor::<1>::from_data(TensorData::new(floats, [words.len()]), &device)
        .try_into_primitive::<Cube>()
        .unwrap();
    drop(words);
    let client = w.client.clone();
    let y = client.empty(rows * 4);
    let sweep = || {
        let kernel = Sweep { rows, row_vec4s: SWEEP_ROW_BYTES / 16 };
        let args = KernelArguments::new().with_buffer(w.handle.clone().binding()).with_buffer(y.clone().binding());
        let count = CubeCount::Static(rows.div_ceil(SWEEP_WORKGROUP) as u32, 1, 1);
        client.launch(Box::new(SourceKernel::new(kernel, CubeDim::new_1d(SWEEP_WORKGROUP as u32))), count, args);
    };
    let sweep_ms = per_call(&device, sweep);
    let got = client.read_one(y.clone()).unwrap();
    let got: Vec<u32> = got.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(got, expected, "the sweep read other bytes than were uploaded");

    // The Q4_1 decode matvec over as many bytes: rows of 576 values, 360 bytes padded to 368.
    let q4_rows = rows;
    let len = byte_size(GgmlType::Q4_1, (q4_rows * 576) as u64).unwrap() as usize;
    let q = QuantTensor::new(GgmlType::Q4_1, &[576, q4_rows as u64], &vec![0x11; len], &device).unwrap();
    let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 576], [1, 576]), &device);
    let matvec_ms = per_call(&device, || drop(qmatmul(x.clone(), &q).unwrap()));
    let mb = (rows * SWEEP_ROW_BYTES) as f64 / (1 << 20) as f64;
    println!(
        "sweep of {mb:.0} MiB (a SmolLM2 decode step's weights): {sweep_ms:.2} ms, {:.2} GB/s: \
         at most {:.1} decode tokens/s on this adapter for any kernel that reads them once",
        (rows * SWEEP_ROW_BYTES) as f64 / sweep_ms / 1e6,
        1e3 / sweep_ms
    );
    println!(
        "Q4_1 decode matvec over the same bytes ({:?}): {matvec_ms:.2} ms, {:.2}x the sweep",
        q.matvec_kernel(),
        matvec_ms / sweep_ms
    );
}
