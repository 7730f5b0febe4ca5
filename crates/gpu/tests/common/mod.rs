//! Shared by the kernel tests: the wgpu device and random GGUF data.
#![allow(dead_code)] // each test file uses its own subset

use burn::tensor::Device;
use burrow_gguf::{byte_size, GgmlType};
use burrow_gpu::{Gpu, Kernels};
use std::sync::OnceLock;

/// The wgpu device and its adapter, opened once for every test in this binary. No adapter is a
/// failure, not a skip: these tests are the only check of the kernels.
pub fn gpu() -> Gpu {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::open().map_err(|e| e.to_string())).clone().unwrap_or_else(|e| {
        panic!(
            "no wgpu adapter ({e}). Install Mesa's CPU Vulkan driver: \
             apt-get install -y mesa-vulkan-drivers"
        )
    })
}

pub fn device() -> Device {
    gpu().device
}

/// Every kernel family the adapter runs: the CPU-adapter family, the GPU family without
/// subgroups, and with them where the device has them.
pub fn all_kernels() -> Vec<Kernels> {
    let mut all = vec![Kernels::cpu_adapter(), Kernels::gpu(false)];
    if gpu().adapter.subgroups {
        all.push(Kernels::gpu(true));
    }
    all
}

/// splitmix64: deterministic test data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A random normal f16 with magnitude in [2^-8, 2^0) and a random sign, as bytes.
    pub fn f16(&mut self) -> [u8; 2] {
        let sign = (self.next() & 1) as u16;
        let exp = 7 + (self.next() % 8) as u16;
        let mantissa = (self.next() & 0x3FF) as u16;
        ((sign << 15) | (exp << 10) | mantissa).to_le_bytes()
    }
}

/// Random GGUF data for `n` values of `ty`: f16 fields (scales, minimums, F16 values) are random
/// normal halves, F32 and BF16 values uniform in [-1, 1), every other byte random.
pub fn random_tensor(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let block = ty.type_size();
    // Byte offsets of the f16 fields inside one block.
    let halves: &[usize] = match ty {
        GgmlType::F16 => &[0],
        GgmlType::Q8_0 | GgmlType::Q4_0 => &[0],
        GgmlType::Q5_0 | GgmlType::IQ4_NL | GgmlType::IQ4_XS => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
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
        if ty == GgmlType::BF16 {
            // The top half of a uniform f32: random bytes would hold infinities and NaNs.
            out.extend(&rng.unit().to_le_bytes()[2..]);
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

