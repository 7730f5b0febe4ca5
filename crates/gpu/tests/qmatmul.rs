//! The quantized matmul kernels on the machine's wgpu adapter (Mesa lavapipe in CI) against the
//! CPU reference: `burrow_gguf::dequantize` and an f64 matmul. Weights are random GGUF blocks
//! (random quant bytes, random normal f16 scales), so every bit of every field is exercised, and
//! two real SmolLM2-135M weights when the model has been fetched.

use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{byte_size, dequantize_to_vec, GgmlType, Gguf};
use burrow_gpu::{qmatmul, GpuError, QuantTensor};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Error allowed on each output, relative to Σ|w·x| of its dot product: f32 accumulation over a
/// few hundred terms stays far below it, a wrong weight or a dropped block does not.
const TOLERANCE: f64 = 1e-4;

const OUTS: [usize; 4] = [1, 3, 37, 1000];
const TOKENS: [usize; 4] = [1, 2, 7, 64];
const INS_32: [usize; 3] = [32, 96, 576];
const INS_256: [usize; 2] = [256, 512];

/// The wgpu device, initialized once for every test in this binary. No adapter is a failure, not
/// a skip: these tests are the only check of the kernels.
fn device() -> Device {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
        .clone()
        .unwrap_or_else(|e| {
            panic!(
                "no wgpu adapter ({e}). Install Mesa's CPU Vulkan driver: \
                 apt-get install -y mesa-vulkan-drivers"
            )
        })
}

/// splitmix64: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A random normal f16 with magnitude in [2^-8, 2^0) and a random sign, as bytes.
    fn f16(&mut self) -> [u8; 2] {
        let sign = (self.next() & 1) as u16;
        let exp = 7 + (self.next() % 8) as u16;
        let mantissa = (self.next() & 0x3FF) as u16;
        ((sign << 15) | (exp << 10) | mantissa).to_le_bytes()
    }
}

/// Random GGUF data for `n` values of `ty`: f16 fields (scales, minimums, F16 values) are random
/// normal halves, F32 values uniform in [-1, 1), every other byte random.
fn random_tensor(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let block = ty.type_size();
    // Byte offsets of the f16 fields inside one block.
    let halves: &[usize] = match ty {
        GgmlType::F16 => &[0],
        GgmlType::Q8_0 | GgmlType::Q4_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => &[],
    };
    let len = byte_size(ty, n as u64).expect("a whole number of blocks") as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if ty == GgmlType::F32 {
            out.extend(rng.unit().to_le_bytes());
            continue;
        }
        let start = out.len();
        out.extend((0..block).map(|_| rng.byte()));
        for &h in halves {
            out[start + h..start + h + 2].copy_from_slice(&rng.f16());
        }
    }
    out
}

/// Runs `x[t, in] · Wᵀ` for a random `[out, in]` weight of `ty` on the GPU and checks every output
/// against the f64 reference.
fn check(ty: GgmlType, out: usize, cols: usize, tokens: usize, rng: &mut Rng) {
    let bytes = random_tensor(ty, out * cols, rng);
    check_weight(ty, out, cols, &bytes, tokens, rng);
}

/// Runs `x[t, in] · Wᵀ` for random inputs and the `[out, in]` weight `bytes` of `ty` on the GPU
/// and checks every output against the f64 reference.
fn check_weight(ty: GgmlType, out: usize, cols: usize, bytes: &[u8], tokens: usize, rng: &mut Rng) {
    let device = device();
    let w = dequantize_to_vec(ty, bytes, out * cols).expect("reference dequantization");
    let x: Vec<f32> = (0..tokens * cols).map(|_| rng.unit()).collect();

    let weight = QuantTensor::new(ty, &[cols as u64, out as u64], bytes, &device).unwrap();
    let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [tokens, cols]), &device);
    let y = qmatmul(xt, &weight).unwrap();
    assert_eq!(y.dims(), [tokens, out]);
    let y = y.into_data().try_to_vec::<f32>().unwrap();

    for t in 0..tokens {
        for r in 0..out {
            let (mut want, mut scale) = (0f64, 0f64);
            for k in 0..cols {
                let p = f64::from(w[r * cols + k]) * f64::from(x[t * cols + k]);
                want += p;
                scale += p.abs();
            }
            let got = f64::from(y[t * out + r]);
            assert!(
                (got - want).abs() <= TOLERANCE * scale + f64::MIN_POSITIVE,
                "{ty} out={out} in={cols} T={tokens}: y[{t}, {r}] = {got}, expected {want} (Σ|w·x| = {scale})"
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

/// Real weights: SmolLM2-135M's token embedding (Q8_0, also its output head) and a Q4_1 FFN
/// projection, read with burrow_gguf. Skipped, like the other crates' model tests, when the model
/// has not been fetched (`make model`).
#[test]
fn smollm2_weights_match_reference() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let Ok(file) = std::fs::read(&path) else {
        println!(
            "note: {} is absent; skipping the SmolLM2 checks",
            path.display()
        );
        return;
    };
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
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
        QuantTensor::new(GgmlType::Q5_0, &[32, 1], &[0; 22], &device).err(),
        Some(GpuError::UnsupportedType(GgmlType::Q5_0))
    );
    assert_eq!(
        QuantTensor::new(GgmlType::Q8_0, &[32, 1], &q8[..33], &device).err(),
        Some(GpuError::Size {
            expected: 34,
            found: 33
        })
    );
    for dims in [&[32u64][..], &[32, 1, 2], &[16, 2], &[32, 0], &[0, 1]] {
        assert!(
            matches!(
                QuantTensor::new(GgmlType::Q8_0, dims, &q8, &device),
                Err(GpuError::Shape(_))
            ),
            "{dims:?}"
        );
    }
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
