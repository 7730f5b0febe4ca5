//! The quantized matmul kernels on the machine's wgpu adapter (Mesa lavapipe in CI) against the
//! CPU reference: `burrow_gguf::dequantize` and an f64 matmul. Weights are random GGUF blocks
//! (random quant bytes, random normal f16 scales), so every bit of every field is exercised, and
//! two real SmolLM2-135M weights when the model has been fetched.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{dequantize_to_vec, GgmlType, Gguf};
use burrow_gpu::{matvec, qembed, qmatmul, Fold, Gate, GpuError, MatvecKernel, QuantTensor, StepTokens, WEIGHT_TYPES};
use common::{device, random_tensor, Rng};
use std::path::PathBuf;

/// Error allowed on each output, relative to Σ|w·x| of its dot product: f32 accumulation over a
/// few hundred terms stays far below it, a wrong weight or a dropped block does not.
const TOLERANCE: f64 = 1e-4;
/// With f16 tiles: two roundings of 2^-11 per product.
const F16_TOLERANCE: f64 = 2e-3;
/// With 8-bit activations: each input off by up to 1/254 of its chunk's largest (|x| is about half
/// of that on average here), so up to 1/127 of Σ|w·x| when every error points the same way.
const DP4A_TOLERANCE: f64 = 1e-2;

const OUTS: [usize; 4] = [1, 3, 37, 1000];
/// 130: three of the GPU family's 64-token prefill tiles, the last one partial.
const TOKENS: [usize; 5] = [1, 2, 7, 64, 130];
const INS_32: [usize; 3] = [32, 96, 576];
const INS_256: [usize; 2] = [256, 512];

/// Runs `x[t, in] · Wᵀ` for a random `[out, in]` weight of `ty` on the GPU and checks every output
/// against the f64 reference.
fn check(ty: GgmlType, out: usize, cols: usize, tokens: usize, rng: &mut Rng) {
    let bytes = random_tensor(ty, out * cols, rng);
    check_weight(ty, out, cols, &bytes, tokens, rng);
}

/// Runs `x[t, in] · Wᵀ` for random inputs and the `[out, in]` weight `bytes` of `ty` on the GPU
/// and checks every output against the f64 reference.
fn check_weight(ty: GgmlType, out: usize, cols: usize, bytes: &[u8], tokens: usize, rng: &mut Rng) {
    let w = dequantize_to_vec(ty, bytes, out * cols).expect("reference dequantization");
    let weight = QuantTensor::new(ty, &[cols as u64, out as u64], bytes, &device()).unwrap();
    check_product(&weight, &w, tokens, rng);
}

/// Checks `qmatmul` of random inputs with `weight` against the f64 product with `reference`, the
/// same `[out, in]` matrix dequantized on the CPU, with each decode kernel that reads the weight,
/// whichever the adapter prefers. Several tokens run the family's prefill kernel: the
/// CPU-adapter family's rows kernel for every token or its register-tiled kernel, by type (the
/// same for `Rows` and `Unrolled`); the GPU family's tiles in workgroup memory.
fn check_product(weight: &QuantTensor, reference: &[f32], tokens: usize, rng: &mut Rng) {
    let mut kernels = vec![MatvecKernel::Rows, MatvecKernel::Unrolled];
    kernels.extend(lane_kernels());
    for kernel in kernels {
        match weight.clone().with_matvec_kernel(kernel) {
            Ok(w) => check_kernel(&w, reference, tokens, rng),
            Err(e) => assert!(
                kernel == MatvecKernel::Unrolled && !unrolled_reads(weight),
                "{kernel:?} refused {} [{}, {}]: {e}",
                weight.ty(),
                weight.rows(),
                weight.cols()
            ),
        }
    }
}

/// The GPU family's kernels the adapter runs: without subgroups, and with them where the device
/// has them; with f16 prefill tiles where the device has shader-f16 (lavapipe does).
fn lane_kernels() -> Vec<MatvecKernel> {
    let mut kernels: Vec<MatvecKernel> = common::all_kernels()
        .into_iter()
        .filter(|k| k.is_gpu())
        .map(|k| MatvecKernel::Lanes { subgroups: k.subgroups, f16: false, dp4a: false })
        .collect();
    let adapter = common::gpu().adapter;
    if adapter.shader_f16 {
        kernels.push(MatvecKernel::Lanes { subgroups: adapter.subgroups, f16: true, dp4a: false });
    }
    if adapter.dp4a {
        kernels.push(MatvecKernel::Lanes { subgroups: adapter.subgroups, f16: false, dp4a: true });
    }
    kernels
}

/// The error allowed for `kernel` at `tokens` tokens of `ty`: f16 prefill tiles round weights and
/// inputs to f16 (2^-11 relative each); the 8-bit tiles round each input to 1/254 of its chunk's
/// largest magnitude (the types they read; the others take the f32 tiles).
fn tolerance(kernel: MatvecKernel, ty: GgmlType, tokens: usize) -> f64 {
    let dp4a_types = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K];
    match kernel {
        MatvecKernel::Lanes { dp4a: true, .. } if tokens > 1 && dp4a_types.contains(&ty) => DP4A_TOLERANCE,
        MatvecKernel::Lanes { f16: true, .. } if tokens > 1 => F16_TOLERANCE,
        _ => TOLERANCE,
    }
}

/// The types and row lengths `shaders/qmatvec_unrolled.wgsl` is documented to read.
fn unrolled_reads(w: &QuantTensor) -> bool {
    let types = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::F32];
    types.contains(&w.ty())
}

fn check_kernel(weight: &QuantTensor, reference: &[f32], tokens: usize, rng: &mut Rng) {
    let (ty, out, cols) = (weight.ty(), weight.rows(), weight.cols());
    assert_eq!(reference.len(), out * cols);
    let x: Vec<f32> = (0..tokens * cols).map(|_| rng.unit()).collect();
    let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [tokens, cols]), &device());
    let y = qmatmul(xt, weight).unwrap();
    assert_eq!(y.dims(), [tokens, out]);
    let y = y.into_data().try_to_vec::<f32>().unwrap();

    for t in 0..tokens {
        for r in 0..out {
            let (mut want, mut scale) = (0f64, 0f64);
            for k in 0..cols {
                let p = f64::from(reference[r * cols + k]) * f64::from(x[t * cols + k]);
                want += p;
                scale += p.abs();
            }
            let got = f64::from(y[t * out + r]);
            assert!(
                (got - want).abs() <= tolerance(weight.matvec_kernel(), ty, tokens) * scale + f64::MIN_POSITIVE,
                "{ty} out={out} in={cols} T={tokens} {:?}: y[{t}, {r}] = {got}, expected {want} (Σ|w·x| = {scale})",
                weight.matvec_kernel()
            );
        }
    }
}

fn check_type(ty: GgmlType, seed: u64) {
    let mut rng = Rng(seed);
    let ins: &[usize] = if ty.block_size() == 256 {
        &INS_256
    } else {
        &INS_32
    };
    for &cols in ins {
        for &out in &OUTS {
            for &tokens in &TOKENS {
                check(ty, out, cols, tokens, &mut rng);
            }
        }
    }
}

/// Rows longer than the unrolled kernel's segment (1024 values) are read in segments whose
/// dispatches add up, the last one shorter.
#[test]
fn long_rows_are_read_in_segments() {
    let mut rng = Rng(13);
    check(GgmlType::Q4_0, 3, 4096 + 32, 1, &mut rng);
    check(GgmlType::Q8_0, 70, 2048 + 64, 1, &mut rng);
    check(GgmlType::Q4_1, 5, 1024 + 64, 3, &mut rng);
}

#[test]
fn f32_matches_reference() {
    check_type(GgmlType::F32, 1);
}

#[test]
fn f16_matches_reference() {
    check_type(GgmlType::F16, 2);
}

#[test]
fn q8_0_matches_reference() {
    check_type(GgmlType::Q8_0, 3);
}

#[test]
fn q4_0_matches_reference() {
    check_type(GgmlType::Q4_0, 4);
}

#[test]
fn q4_1_matches_reference() {
    check_type(GgmlType::Q4_1, 5);
}

#[test]
fn q4_k_matches_reference() {
    check_type(GgmlType::Q4_K, 6);
}

#[test]
fn q5_k_matches_reference() {
    check_type(GgmlType::Q5_K, 7);
}

#[test]
fn q6_k_matches_reference() {
    check_type(GgmlType::Q6_K, 8);
}

#[test]
fn bf16_matches_reference() {
    check_type(GgmlType::BF16, 9);
}

#[test]
fn q5_0_matches_reference() {
    check_type(GgmlType::Q5_0, 10);
}

#[test]
fn q5_1_matches_reference() {
    check_type(GgmlType::Q5_1, 11);
}

#[test]
fn q2_k_matches_reference() {
    check_type(GgmlType::Q2_K, 12);
}

#[test]
fn q3_k_matches_reference() {
    check_type(GgmlType::Q3_K, 13);
}

#[test]
fn iq4_nl_matches_reference() {
    check_type(GgmlType::IQ4_NL, 14);
}

#[test]
fn iq4_xs_matches_reference() {
    check_type(GgmlType::IQ4_XS, 15);
}

/// Every type the kernels read has its test above.
#[test]
fn every_weight_type_is_tested() {
    let tested = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::BF16,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
    ];
    for ty in WEIGHT_TYPES {
        assert!(tested.contains(&ty), "{ty} has no test of its own");
    }
}

/// Real weights: SmolLM2-135M's token embedding (Q8_0, also its output head) and a Q4_1 FFN
/// projection, read with burrow_gguf. Skipped, like the other crates' model tests, when the model
/// has not been fetched (`make model`).
#[test]
fn smollm2_weights_match_reference() {
    let Some((file, gguf)) = smollm2() else { return };
    let mut rng = Rng(9);
    for (name, tokens) in [("blk.0.ffn_up.weight", 7), ("token_embd.weight", 1)] {
        let t = gguf.tensor(name).unwrap();
        let bytes = gguf.tensor_data(&file, t).unwrap();
        let (cols, out) = (t.dims[0] as usize, t.dims[1] as usize);
        check_weight(t.ty, out, cols, bytes, tokens, &mut rng);
    }
}

#[test]
fn weight_errors_are_results() {
    let device = device();
    let q8 = vec![0u8; 34];
    assert_eq!(
        QuantTensor::new(GgmlType::IQ2_XS, &[256, 1], &[0; 74], &device).err(),
        Some(GpuError::UnsupportedType(GgmlType::IQ2_XS))
    );
    assert_eq!(
        QuantTensor::new(GgmlType::Q8_0, &[32, 1], &q8[..33], &device).err(),
        Some(GpuError::Size {
            expected: 34,
            found: 33
        })
    );
    for dims in [&[32u64][..], &[16, 2], &[32, 0], &[0, 1], &[32, 1, 0]] {
        assert!(
            matches!(
                QuantTensor::new(GgmlType::Q8_0, dims, &q8, &device),
                Err(GpuError::Shape(_))
            ),
            "{dims:?}"
        );
    }
    // A stack of matrices ([in, out, n]) is one matrix of n · out rows.
    let stacked = QuantTensor::new(GgmlType::Q8_0, &[32, 1, 2], &[0; 68], &device).unwrap();
    assert_eq!((stacked.rows(), stacked.cols()), (2, 32));
    assert!(matches!(stacked.slice_rows(1..3), Err(GpuError::Shape(_))));
    assert!(matches!(
        QuantTensor::new(GgmlType::Q4_K, &[32, 1], &[0; 18], &device),
        Err(GpuError::Shape(_))
    ));
    assert!(matches!(
        QuantTensor::new(GgmlType::Q8_0, &[32, 1], &q8, &Device::flex()),
        Err(GpuError::NotWgpu(_))
    ));
}

#[test]
fn input_errors_are_results() {
    let device = device();
    let w = QuantTensor::new(GgmlType::Q8_0, &[64, 3], &[0; 3 * 68], &device).unwrap();
    let wrong_width = Tensor::<2>::zeros([2, 32], &device);
    assert!(matches!(qmatmul(wrong_width, &w), Err(GpuError::Shape(_))));
    let no_rows = Tensor::<2>::zeros([0, 64], &device);
    assert!(matches!(qmatmul(no_rows, &w), Err(GpuError::Shape(_))));
    let on_cpu = Tensor::<2>::zeros([1, 64], &Device::flex());
    assert!(matches!(qmatmul(on_cpu, &w), Err(GpuError::NotWgpu(_))));
}

#[test]
fn strided_input_is_made_contiguous() {
    let device = device();
    let mut rng = Rng(10);
    let (out, cols, tokens) = (5, 64, 3);
    let bytes = random_tensor(GgmlType::Q4_0, out * cols, &mut rng);
    let w = QuantTensor::new(GgmlType::Q4_0, &[cols as u64, out as u64], &bytes, &device).unwrap();
    let x: Vec<f32> = (0..tokens * cols).map(|_| rng.unit()).collect();
    let xt: Vec<f32> = (0..cols * tokens)
        .map(|i| x[(i % tokens) * cols + i / tokens])
        .collect();
    let row_major = Tensor::<2>::from_data(TensorData::new(x, [tokens, cols]), &device);
    // The same values as a transposed (column-major, non-contiguous) view.
    let strided = Tensor::<2>::from_data(TensorData::new(xt, [cols, tokens]), &device).transpose();
    let read = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(
        read(qmatmul(strided, &w).unwrap()),
        read(qmatmul(row_major, &w).unwrap())
    );
}

/// A weight larger than the binding limit is uploaded as several buffers of whole rows; products,
/// row slices (a fused QKV split) and lookups must not notice. The limit is forced far below the
/// device's so the uneven last buffer and slices across buffers are exercised.
#[test]
fn weights_split_across_bindings_match_reference() {
    let device = device();
    let mut rng = Rng(11);
    for (ty, out, cols, rows_per_buffer) in [
        (GgmlType::Q4_K, 1000, 512, 7),
        (GgmlType::Q8_0, 37, 96, 4),
        (GgmlType::Q4_1, 300, 576, 128),
    ] {
        let bytes = random_tensor(ty, out * cols, &mut rng);
        let reference = dequantize_to_vec(ty, &bytes, out * cols).unwrap();
        let row_stride = (bytes.len() / out).next_multiple_of(burrow_gpu::ROW_ALIGN);
        let limit = (rows_per_buffer * row_stride + 15) as u64;
        let dims = [cols as u64, out as u64];
        let w = QuantTensor::with_binding_limit(ty, &dims, &bytes, &device, limit).unwrap();
        assert_eq!(w.buffer_count(), out.div_ceil(rows_per_buffer), "{ty}");
        for tokens in [1, 9] {
            check_product(&w, &reference, tokens, &mut rng);
        }
        // A slice that starts inside one buffer and ends inside another.
        let (a, b) = (rows_per_buffer / 2 + 1, out - 2);
        let slice = w.slice_rows(a..b).unwrap();
        assert_eq!(slice.rows(), b - a);
        check_product(&slice, &reference[a * cols..b * cols], 3, &mut rng);
        let ids: Vec<u32> = [0, out - 1, a, rows_per_buffer, rows_per_buffer - 1, 5 % out]
            .iter()
            .map(|&i| i as u32)
            .collect();
        check_lookup(&w, &reference, &ids);
    }
}

/// SmolLM2's token embedding (Q8_0, 28 MiB) under a 16 MiB binding limit, the smallest WebGPU
/// guarantees (`maxStorageBufferBindingSize` 128 MiB is typical on Android phones): two buffers.
#[test]
fn smollm2_embedding_under_a_16_mib_binding_limit() {
    let Some((file, gguf)) = smollm2() else { return };
    let t = gguf.tensor("token_embd.weight").unwrap();
    let bytes = gguf.tensor_data(&file, t).unwrap();
    let (cols, out) = (t.dims[0] as usize, t.dims[1] as usize);
    let w = QuantTensor::with_binding_limit(t.ty, &t.dims, bytes, &device(), 16 << 20).unwrap();
    assert!(w.buffer_count() >= 2);
    let reference = dequantize_to_vec(t.ty, bytes, out * cols).unwrap();
    check_product(&w, &reference, 1, &mut Rng(12));
    check_lookup(&w, &reference, &[1, 49151, 30000, 9690, 0]);
}

fn smollm2() -> Option<(Vec<u8>, Gguf)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let Ok(file) = std::fs::read(&path) else {
        println!("note: {} is absent; skipping the SmolLM2 checks", path.display());
        return None;
    };
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
    Some((file, gguf))
}

/// `qembed(ids)` must return exactly the CPU-dequantized rows (both compute `d · q (+ m)` in f32).
fn check_lookup(w: &QuantTensor, reference: &[f32], ids: &[u32]) {
    let cols = w.cols();
    // Past position 0, so a kernel reading the position as an id would be caught.
    let step = StepTokens::new(&device(), 5, ids).unwrap();
    let y = qembed(&step, w).unwrap();
    assert_eq!(y.dims(), [ids.len(), cols]);
    let y = y.into_data().try_to_vec::<f32>().unwrap();
    for (t, &id) in ids.iter().enumerate() {
        let want = &reference[id as usize * cols..(id as usize + 1) * cols];
        let got = &y[t * cols..(t + 1) * cols];
        for (k, (g, e)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - e).abs() <= 1e-6 * e.abs().max(1e-3),
                "{} row {id} value {k}: {g}, expected {e}",
                w.ty()
            );
        }
    }
}

/// Every type's embedding lookup against the CPU dequantization, ids in any order and repeated.
#[test]
fn embedding_lookup_matches_reference() {
    let mut rng = Rng(13);
    for ty in WEIGHT_TYPES {
        // 72 or 73 chunks: more than one workgroup covers, not a multiple of its size.
        let (out, cols) = (50, if ty.block_size() == 256 { 2304 } else { 2336 });
        let bytes = random_tensor(ty, out * cols, &mut rng);
        let reference = dequantize_to_vec(ty, &bytes, out * cols).unwrap();
        let w = QuantTensor::new(ty, &[cols as u64, out as u64], &bytes, &device()).unwrap();
        check_lookup(&w, &reference, &[7, 0, 49, 7, 23]);
    }
    let w = QuantTensor::new(GgmlType::Q8_0, &[32, 3], &[0; 3 * 34], &device()).unwrap();
    assert!(matches!(qembed(&StepTokens::new(&device(), 0, &[3]).unwrap(), &w), Err(GpuError::Shape(_))));
    assert!(matches!(StepTokens::new(&device(), 0, &[]), Err(GpuError::Shape(_))));
}

/// A tensor uploaded in pieces of any size (as a browser streams a model) equals one uploaded
/// whole: pieces that end mid-word, mid-row and across buffers (18-byte Q4_0 blocks, so buffers
/// start at odd words). Pushing past the end or finishing early are errors.
#[test]
fn tensors_uploaded_in_pieces_match_reference() {
    let device = device();
    let mut rng = Rng(17);
    for (ty, out, cols, rows_per_buffer) in [(GgmlType::Q4_0, 23, 96, 5), (GgmlType::Q6_K, 9, 256, 2), (GgmlType::Q4_1, 40, 64, 40)] {
        let bytes = random_tensor(ty, out * cols, &mut rng);
        let reference = dequantize_to_vec(ty, &bytes, out * cols).unwrap();
        let row_stride = (bytes.len() / out).next_multiple_of(burrow_gpu::ROW_ALIGN);
        let limit = (rows_per_buffer * row_stride + 15) as u64;
        let dims = [cols as u64, out as u64];
        let mut upload = QuantTensor::upload_with_binding_limit(ty, &dims, &device, limit).unwrap();
        let mut rest = &bytes[..];
        for size in [1, 3, 7, 64, 997].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            upload.push(piece).unwrap();
            rest = tail;
        }
        let w = upload.finish().unwrap();
        assert_eq!(w.buffer_count(), out.div_ceil(rows_per_buffer), "{ty}");
        check_product(&w, &reference, 1, &mut rng);
        check_product(&w, &reference, 5, &mut rng);
        check_lookup(&w, &reference, &[0, (out - 1) as u32, 7]);
    }
    let dims = [32u64, 2];
    let mut upload = QuantTensor::upload(GgmlType::Q8_0, &dims, &device).unwrap();
    assert!(matches!(upload.push(&[0; 3 * 34]), Err(GpuError::Size { .. })));
    let mut upload = QuantTensor::upload(GgmlType::Q8_0, &dims, &device).unwrap();
    upload.push(&[0; 34]).unwrap();
    assert!(matches!(upload.finish(), Err(GpuError::Size { .. })));
}

/// Matrices fused into one (Q, K and V; gate and up) are allocated once and each written through
/// its own upload of its rows, in any order, in pieces, across buffers: the fused matrix and each
/// member's rows equal the matrices uploaded alone.
#[test]
fn fused_rows_uploaded_separately_match_reference() {
    let device = device();
    let mut rng = Rng(19);
    for (ty, cols, members, rows_per_buffer) in [(GgmlType::Q4_0, 96, [5, 3, 7], 4), (GgmlType::Q4_1, 576, [9, 3, 3], 64)] {
        let total: usize = members.iter().sum();
        let bytes: Vec<Vec<u8>> = members.iter().map(|&n| random_tensor(ty, n * cols, &mut rng)).collect();
        let row_stride = (bytes[0].len() / members[0]).next_multiple_of(burrow_gpu::ROW_ALIGN);
        let limit = (rows_per_buffer * row_stride + 15) as u64;
        let fused = QuantTensor::allocate_with_binding_limit(ty, &[cols as u64, total as u64], &device, limit).unwrap();
        assert_eq!(fused.buffer_count(), total.div_ceil(rows_per_buffer), "{ty}");
        let firsts: Vec<usize> = members.iter().scan(0, |at, &n| { *at += n; Some(*at - n) }).collect();
        let mut parts = Vec::new();
        for i in [2, 0, 1] {
            let mut upload = fused.upload_rows(firsts[i]..firsts[i] + members[i]).unwrap();
            for piece in bytes[i].chunks(37) {
                upload.push(piece).unwrap();
            }
            parts.push((i, upload.finish().unwrap()));
        }
        let reference = dequantize_to_vec(ty, &bytes.concat(), total * cols).unwrap();
        check_product(&fused, &reference, 1, &mut rng);
        check_product(&fused, &reference, 4, &mut rng);
        for (i, part) in parts {
            assert_eq!(part.rows(), members[i]);
            check_product(&part, &reference[firsts[i] * cols..(firsts[i] + members[i]) * cols], 1, &mut rng);
        }
    }
    let fused = QuantTensor::allocate(GgmlType::Q8_0, &[32, 4], &device).unwrap();
    assert!(matches!(fused.upload_rows(4..6), Err(GpuError::Shape(_))));
    let mut upload = fused.upload_rows(2..9).unwrap();
    assert!(matches!(upload.push(&[0; 3 * 34]), Err(GpuError::Size { .. })));
}

/// The GPU family's matvec with what it folds in (`shaders/matvec.wgsl`): the RMSNorm of x, biases,
/// several matrices into one output, the residual add and the gated activation, against f64.
#[test]
fn gpu_matvec_folds_match_reference() {
    let device = device();
    let mut rng = Rng(23);
    for kernel in lane_kernels() {
        for (ty, cols) in [(GgmlType::Q4_1, 576), (GgmlType::Q4_K, 1280), (GgmlType::Q6_K, 256), (GgmlType::Q8_0, 96)] {
            let x: Vec<f32> = (0..cols).map(|_| rng.unit() * 2.0).collect();
            let g: Vec<f32> = (0..cols).map(|_| rng.unit() * 0.5 + 1.0).collect();
            let eps = 1e-5f32;
            let ms = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / cols as f64;
            let inv = 1.0 / (ms + f64::from(eps)).sqrt();
            let xn: Vec<f64> = x.iter().zip(&g).map(|(&v, &w)| f64::from(v) * f64::from(w) * inv).collect();
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [1, cols]), &device);
            let gt = Tensor::<1>::from_data(TensorData::new(g.clone(), [cols]), &device);
            // Two matrices of odd row counts, with and without a bias: rows end to end.
            let mut weights = Vec::new();
            let mut want: Vec<(f64, f64)> = Vec::new();
            let mut biases = Vec::new();
            for (rows, bias) in [(37, true), (6, false)] {
                let bytes = random_tensor(ty, rows * cols, &mut rng);
                let reference = dequantize_to_vec(ty, &bytes, rows * cols).unwrap();
                let w = QuantTensor::new(ty, &[cols as u64, rows as u64], &bytes, &device).unwrap().with_matvec_kernel(kernel).unwrap();
                let b: Option<Vec<f32>> = bias.then(|| (0..rows).map(|_| rng.unit()).collect());
                for r in 0..rows {
                    let row = &reference[r * cols..(r + 1) * cols];
                    let dot: f64 = row.iter().zip(&xn).map(|(&w, &x)| f64::from(w) * x).sum();
                    let scale: f64 = row.iter().zip(&xn).map(|(&w, &x)| (f64::from(w) * x).abs()).sum();
                    want.push((dot + b.as_ref().map_or(0.0, |b| f64::from(b[r])), scale));
                }
                weights.push(w);
                biases.push(b.map(|b| Tensor::<1>::from_data(TensorData::new(b, [rows]), &device)));
            }
            let residual: Vec<f32> = (0..want.len()).map(|_| rng.unit()).collect();
            let rt = Tensor::<2>::from_data(TensorData::new(residual.clone(), [1, want.len()]), &device);
            let ws: Vec<_> = weights.iter().zip(&biases).map(|(w, b)| (w, b.as_ref())).collect();
            let fold = Fold { norm: Some((&gt, eps)), residual: Some(&rt), glu: None };
            let got = matvec(&xt, &ws, &fold).unwrap().into_data().try_to_vec::<f32>().unwrap();
            for (i, ((w, scale), r)) in want.iter().zip(&residual).enumerate() {
                let w = w + f64::from(*r);
                assert!((f64::from(got[i]) - w).abs() <= TOLERANCE * scale + 1e-6, "{ty} {kernel:?} row {i}: {}, expected {w}", got[i]);
            }

            // [gate; up] of 2 × 19 rows: act(gate) · up, without the norm.
            let n = 19;
            let bytes = random_tensor(ty, 2 * n * cols, &mut rng);
            let reference = dequantize_to_vec(ty, &bytes, 2 * n * cols).unwrap();
            let w = QuantTensor::new(ty, &[cols as u64, 2 * n as u64], &bytes, &device).unwrap().with_matvec_kernel(kernel).unwrap();
            for gate in [Gate::Silu, Gate::GeluTanh] {
                let got = matvec(&xt, &[(&w, None)], &Fold { glu: Some(gate), ..Fold::default() }).unwrap();
                assert_eq!(got.dims(), [1, n]);
                let got = got.into_data().try_to_vec::<f32>().unwrap();
                for i in 0..n {
                    let dot = |r: usize| -> f64 { reference[r * cols..(r + 1) * cols].iter().zip(&x).map(|(&w, &x)| f64::from(w) * f64::from(x)).sum() };
                    let (a, u) = (dot(i), dot(n + i));
                    let act = match gate {
                        Gate::Silu => a / (1.0 + (-a).exp()),
                        Gate::GeluTanh => 0.5 * a * (1.0 + (0.797_884_560_8 * (a + 0.044715 * a.powi(3))).tanh()),
                    };
                    let want = act * u;
                    assert!((f64::from(got[i]) - want).abs() <= 1e-3 * (1.0 + want.abs()), "{ty} {kernel:?} {gate:?} output {i}: {}, expected {want}", got[i]);
                }
            }
        }
    }
    // Shapes the kernel refuses.
    let w = QuantTensor::new(GgmlType::Q8_0, &[32, 3], &[0; 3 * 34], &device).unwrap().with_matvec_kernel(MatvecKernel::Lanes { subgroups: false, f16: false, dp4a: false }).unwrap();
    let x = Tensor::<2>::zeros([1, 32], &device);
    assert!(matches!(matvec(&x, &[(&w, None)], &Fold { glu: Some(Gate::Silu), ..Fold::default() }), Err(GpuError::Shape(_))));
    assert!(matches!(matvec(&Tensor::<2>::zeros([2, 32], &device), &[(&w, None)], &Fold::default()), Err(GpuError::Shape(_))));
    let rows_kernel = w.clone().with_matvec_kernel(MatvecKernel::Rows).unwrap();
    assert!(matches!(matvec(&x, &[(&rows_kernel, None)], &Fold::default()), Err(GpuError::UnsupportedType(_))));
}

