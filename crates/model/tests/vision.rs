//! SmolVLM's vision encoder (idefics3) against the fixtures in tests/vision-fixtures
//! (scripts/fixtures_vision.py): for every test image, the embeddings of llama.cpp's own
//! preprocessed tiles equal an independent float64 forward pass within 1e-3 on the CPU reference,
//! and llama.cpp mtmd's within 3e-3 (mtmd rounds the patches, the patch embedding and GELU to
//! f16). Measured: 3e-6 and 1.5e-3. On wgpu, in each kernel family (the matrices in Burrow's
//! kernels), within 2e-2 of both.

mod common;


use burn::tensor::{Device, Tensor};
use burrow_gguf::Gguf;
use burrow_gpu::Kernels;
use burrow_model::{Projector, VisionEncoder};
use common::{f32s, fixtures, gpu, max_abs};
use serde_json::Value;

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

/// Qwen2.5-VL's encoder (`qwen2.5vl_merger`: 2-D RoPE, window attention, the 2 × 2 merger)
/// against tests/vision-fixtures/qwen2vl (scripts/fixtures_vision_qwen2vl.py): for every test
/// image, the embeddings of llama.cpp's own preprocessed canvas equal numpy's float64 forward
/// pass within 1e-3 on the CPU reference, and llama.cpp mtmd's within 3e-3 (mtmd rounds the
/// patches, the patch kernels and GELU to f16: it is 1.6e-3 from numpy itself). Measured: 2.6e-6
/// and 1.6e-3, the same on lavapipe in each kernel family (F32 matrices), held there to 2e-2.
fn qwen25vl_embeddings_match(device: &Device, kernels: Option<Kernels>, exact_tolerance: f32, llama_cpp_tolerance: f32) {
    let dir = fixtures().join("qwen2vl");
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("qwen2vl.json")).unwrap()).unwrap();
    let read = |path: &str| -> Vec<f32> {
        std::fs::read(dir.join(path)).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let file = std::fs::read(dir.join(manifest["mmproj"]["file"].as_str().unwrap())).unwrap();
    let encoder = VisionEncoder::load(&Gguf::parse(&file, file.len() as u64).unwrap(), &file, device, kernels).unwrap();
    let c = &encoder.config;
    assert_eq!(c.projector, Projector::Qwen25Vl);
    assert_eq!((c.patch_size, c.scale_factor, c.n_layer, c.projection_dim), (14, 2, 4, 128));
    assert_eq!(c.windows, Some(burrow_model::WindowAttention { full_every: 2, side: 4 }));
    for image in manifest["images"].as_array().unwrap() {
        let name = image["image"].as_str().unwrap();
        // llama.cpp's own canvas, (H, W, 3), as the planes its graph reads.
        let shape: Vec<usize> = image["pixels"]["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let (h, w) = (shape[0], shape[1]);
        let hwc = read(image["pixels"]["file"].as_str().unwrap());
        let planar: Vec<f32> = (0..3).flat_map(|ch| hwc.iter().skip(ch).step_by(3).copied().collect::<Vec<_>>()).collect();
        let ours: Vec<f32> = encoder.encode_image(&planar, [h / 14, w / 14]).unwrap().into_data().try_to_vec().unwrap();
        let exact = max_abs(&ours, &read(image["embd_numpy_f64"]["file"].as_str().unwrap()));
        let llama_cpp = max_abs(&ours, &read(image["embd_mtmd"]["file"].as_str().unwrap()));
        assert!(exact <= exact_tolerance, "{name} ({kernels:?}): max |Δ| {exact} from the float64 reference");
        assert!(llama_cpp <= llama_cpp_tolerance, "{name} ({kernels:?}): max |Δ| {llama_cpp} from llama.cpp");
    }
}

#[test]
fn qwen25vl_embeddings_match_float64_and_llama_cpp() {
    qwen25vl_embeddings_match(&Device::flex(), None, 1e-3, 3e-3);
}

#[test]
fn qwen25vl_embeddings_on_wgpu_in_each_kernel_family() {
    let gpu = gpu();
    let mut families = vec![Kernels::cpu_adapter(), Kernels::gpu(false)];
    if gpu.adapter.subgroups {
        families.push(Kernels::gpu(true));
    }
    for kernels in families {
        qwen25vl_embeddings_match(&gpu.device, Some(kernels), 2e-2, 2e-2);
    }
}

/// Qwen2.5-VL's language model (`qwen2vl`: M-RoPE) on the chat prompt of the Qwen fixtures, fed
/// numpy's float64 image embeddings at mtmd's positions (text one after another, the image's
/// tokens at [start, start + row, start + column], the text after it from start + 7), against
/// numpy's float64 forward pass (`chat.exact_f64`, 5 significant digits): within 1e-4 on the
/// CPU reference and the CPU-adapter family (f32 KV cache), 2e-3 in the GPU family (f16 KV
/// cache). The image's row and column positions turn the low-frequency pairs only, by a few
/// thousandths of the logits: llama.cpp's own logits (5e-3 in the engine's tests) could not
/// tell a wrong section apart (swapping two sections moves them by 6.6e-3), these can. Measured:
/// 5.0e-5 (the references' rounding) and 5.5e-4.
fn qwen2vl_language_model_matches_float64(device: &Device, kernels: Option<Kernels>, tolerance: f32) {
    use burrow_model::{load_model, FileBytes};
    let dir = fixtures().join("qwen2vl");
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("qwen2vl.json")).unwrap()).unwrap();
    let file = std::fs::read(dir.join(manifest["lm"]["file"].as_str().unwrap())).unwrap();
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
    let model = load_model(&gguf, &mut FileBytes(&file), device, kernels).unwrap();
    assert_eq!(model.config.rope_sections, Some([4, 6, 6]));
    let chat = &manifest["chat"];
    let image = manifest["images"].as_array().unwrap().iter().find(|i| i["image"] == chat["image"]).unwrap();
    let embd: Vec<f32> = std::fs::read(dir.join(image["embd_numpy_f64"]["file"].as_str().unwrap()))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let mut session = model.new_session(512).unwrap();
    let mut hidden = None;
    for chunk in chat["chunks"].as_array().unwrap() {
        if chunk["type"] == "text" {
            let ids: Vec<u32> = chunk["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            hidden = Some(block_on(model.forward(&mut session, &ids)));
        } else {
            let positions: Vec<[u32; 3]> = chunk["positions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| [0, 1, 2].map(|s| p[s].as_u64().unwrap() as u32))
                .collect();
            let rows = Tensor::<2>::from_data(burn::tensor::TensorData::new(embd.clone(), [positions.len(), 128]), device);
            hidden = Some(block_on(model.forward_embeddings_at(&mut session, rows, &positions)));
        }
    }
    assert_eq!(session.rope_position() as u64, chat["n_past"].as_u64().unwrap());
    let logits: Vec<f32> = model.last_logits(hidden.unwrap()).unwrap().into_data().try_to_vec().unwrap();
    let exact: Vec<f32> = chat["exact_f64"]["logits_last"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let worst = max_abs(&logits, &exact);
    assert!(worst <= tolerance, "{kernels:?}: max |Δ| {worst} from numpy's float64 logits");
}

/// Runs a model future to completion (native: nothing in it waits on anything but the device).
fn block_on<T>(future: impl std::future::Future<Output = Result<T, burrow_model::ModelError>>) -> T {
    burn::tensor::try_read_sync(future).expect("native futures can block").unwrap()
}

#[test]
fn qwen2vl_language_model_matches_float64_on_the_cpu() {
    qwen2vl_language_model_matches_float64(&Device::flex(), None, 1e-4);
}

#[test]
fn qwen2vl_language_model_on_wgpu_in_each_kernel_family() {
    let gpu = gpu();
    qwen2vl_language_model_matches_float64(&gpu.device, Some(Kernels::cpu_adapter()), 1e-4);
    qwen2vl_language_model_matches_float64(&gpu.device, Some(Kernels::gpu(false)), 2e-3);
    if gpu.adapter.subgroups {
        qwen2vl_language_model_matches_float64(&gpu.device, Some(Kernels::gpu(true)), 2e-3);
    }
}
