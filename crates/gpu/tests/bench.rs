//! Decode matvec throughput on the machine's wgpu adapter, in GB/s of weights read. Not a timed
//! test (ignored by default); run on a quiet machine with
//! `cargo test --release -p burrow-gpu --test bench -- --ignored --nocapture`.

use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{byte_size, GgmlType};
use burrow_gpu::{qmatmul, MatvecKernel, QuantTensor};
use std::time::Instant;

/// Dispatches per measurement, queued back to back and awaited once (as a decode step would).
const RUNS: usize = 20;

/// `(type, out, in)`: SmolLM2-135M's token embedding / output head and its FFN up projection.
const CASES: [(GgmlType, usize, usize); 2] =
    [(GgmlType::Q8_0, 49152, 576), (GgmlType::Q4_1, 1536, 576)];

#[test]
#[ignore = "benchmark: run explicitly, on a quiet machine"]
fn decode_matvec_throughput() {
    let device = Device::wgpu_options()
        .init()
        .expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)");
    for (ty, out, cols) in CASES {
        // Constant bytes are enough for timing: the kernels do not branch on the data.
        let len = byte_size(ty, (out * cols) as u64).unwrap() as usize;
        let uploaded =
            QuantTensor::new(ty, &[cols as u64, out as u64], &vec![0x11; len], &device).unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; cols], [1, cols]), &device);
        for kernel in [MatvecKernel::Loop, MatvecKernel::Unrolled] {
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
