//! GPU memory of a session: its KV cache and RoPE table take their own size, not pool pages
//! rounded up (the budget of 1.15 × the file plus the KV cache counts on it at long contexts).
//! One test in its own binary, so no other test allocates on the device meanwhile.

use std::path::PathBuf;

use burn::tensor::Device;
use burrow_gguf::Gguf;
use burrow_gpu::Kernels;
use burrow_model::{load_model, FileBytes};

/// The most a driver rounds one buffer's size up by.
const PAGE: f64 = 4096.0;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make fixtures`)", path.display()))
}

/// A session takes the size of its KV cache and RoPE table, and gives it back when it ends.
#[test]
fn a_session_takes_its_exact_size_on_wgpu() {
    let device = Device::wgpu_options().init().expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)");
    let file = fixture("llama-q4_1.gguf");
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
    // The CPU-adapter family's cache is f32, the GPU family's f16.
    for (kernels, bytes_per_value) in [(Kernels::cpu_adapter(), 4), (Kernels::gpu(false), 2)] {
        let model = load_model(&gguf, &mut FileBytes(&file), &device, Some(kernels)).unwrap();
        let reserved = || burrow_gpu::device_memory(&device).unwrap().reserved_bytes as f64;
        let c = &model.config;
        let n_ctx = 1000;
        let before = reserved();
        let session = model.new_session(n_ctx).unwrap();
        let kv = (c.n_layer * 2 * c.n_head_kv * n_ctx * c.head_dim * bytes_per_value) as f64;
        assert_eq!(session.kv_cache_bytes() as f64, kv, "{kernels:?}");
        // The RoPE table comes with the session: n_ctx × n_rot f32.
        let rope = (n_ctx * c.n_rot * 4) as f64;
        let grown = reserved() - before;
        // Each buffer may be rounded up to the driver's alignment (a page at most).
        let buffers = (2 * c.n_layer + 1) as f64;
        assert!(grown >= kv && grown <= kv + rope + buffers * PAGE, "{kernels:?}: a cache of {kv} bytes (n_ctx {n_ctx}) took {grown}");
        drop(session);
        // Sessions come and go (a conversation each): their memory is reused or returned, not kept.
        let before = reserved();
        for i in 0..5 {
            drop(model.new_session(n_ctx).unwrap());
            device.sync().unwrap();
            assert!(reserved() <= before, "{kernels:?}: after {} more sessions: {} bytes more", i + 1, reserved() - before);
        }
    }
}
