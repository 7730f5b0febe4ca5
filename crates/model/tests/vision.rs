//! SmolVLM's vision encoder (idefics3) against the fixtures in tests/vision-fixtures
//! (scripts/fixtures_vision.py): for every test image, the embeddings of llama.cpp's own
//! preprocessed tiles equal an independent float64 forward pass within 1e-3 on the CPU reference,
//! and llama.cpp mtmd's within 3e-3 (mtmd rounds the patches, the patch embedding and GELU to
//! f16). Measured: 3e-6 and 1.5e-3. On wgpu, in each kernel family (the matrices in Burrow's
//! kernels), within 2e-2 of both.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor};
use burrow_gguf::Gguf;
use burrow_gpu::{Gpu, Kernels};
use burrow_model::{Projector, VisionEncoder};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vision-fixtures")
}

fn f32s(path: &str) -> Vec<f32> {
    std::fs::read(fixtures().join(path)).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The wgpu device, opened once for this binary (a second init fails).
fn gpu() -> &'static Gpu {
    static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Gpu::open().expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)"))
}

#[test]
fn idefics3_embeddings_match_float64_and_llama_cpp() {
    embeddings_match(&Device::flex(), None, 1e-3, 3e-3);
}

#[test]
fn idefics3_embeddings_on_wgpu_in_each_kernel_family() {
    let gpu = gpu();
    let mut families = vec![Kernels::cpu_adapter(), Kernels::gpu(false)];
    if gpu.adapter.subgroups {
        families.push(Kernels::gpu(true));
    }
    for kernels in families {
        embeddings_match(&gpu.device, Some(kernels), 2e-2, 2e-2);
    }
}

fn embeddings_match(device: &Device, kernels: Option<Kernels>, exact_tolerance: f32, llama_cpp_tolerance: f32) {
    let manifest: Value = serde_json::from_slice(&std::fs::read(fixtures().join("vision.json")).unwrap()).unwrap();
    let file = std::fs::read(fixtures().join(manifest["mmproj"]["file"].as_str().unwrap())).unwrap();
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
    let encoder = VisionEncoder::load(&gguf, &file, device, kernels).unwrap();
    let c = &encoder.config;
    assert_eq!(c.projector, Projector::Idefics3);
    assert_eq!((c.image_size, c.patch_size, c.scale_factor, c.longest_edge, c.tokens_per_tile()), (32, 4, 2, 96, 16));
    let tile_len = c.image_size * c.image_size * 3;
    for image in manifest["images"].as_array().unwrap() {
        let name = image["image"].as_str().unwrap();
        // llama.cpp's own preprocessed tiles, in prompt order (tiles, then the overview).
        let pixels = f32s(image["pixels"]["file"].as_str().unwrap());
        let rows: Vec<Tensor<2>> = pixels.chunks_exact(tile_len).map(|tile| encoder.encode_tile(tile).unwrap()).collect();
        let ours: Vec<f32> = Tensor::cat(rows, 0).into_data().try_to_vec().unwrap();
        let exact = max_abs(&ours, &f32s(image["embd_numpy_f64"]["file"].as_str().unwrap()));
        let llama_cpp = max_abs(&ours, &f32s(image["embd_mtmd"]["file"].as_str().unwrap()));
        assert!(exact <= exact_tolerance, "{name} ({kernels:?}): max |Δ| {exact} from the float64 reference");
        assert!(llama_cpp <= llama_cpp_tolerance, "{name} ({kernels:?}): max |Δ| {llama_cpp} from llama.cpp");
    }
}

#[test]
fn a_language_model_is_not_a_projector() {
    let file = std::fs::read(fixtures().join("smolvlm-tiny-lm-f32.gguf")).unwrap();
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
    let error = VisionEncoder::load(&gguf, &file, &Device::flex(), None).err().unwrap().to_string();
    assert_eq!(error, "this is not a vision projector (mmproj) file: its architecture is llama");
}
