//! The streaming loader (what the browser uses) against the whole-file loader: the same model
//! whatever the chunk sizes, and clear errors for files that end early or run long. Runs on the
//! CPU reference device and on wgpu (where matrices stream into their GPU buffers piece by
//! piece) with the architecture fixtures (`make fixtures`).

use std::path::PathBuf;

use burn::tensor::Device;
use burrow_gguf::Gguf;
use burrow_gpu::{Gpu, Kernels};
use burrow_model::layer::FeedForward;
use burrow_model::{load_model, FileBytes, Model, StreamLoader};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make fixtures`)", path.display()))
}

/// The wgpu device, initialized once for the tests of this binary (a second init fails).
fn wgpu() -> Device {
    static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Gpu::open().expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)")).device.clone()
}

/// Both kernel families on wgpu; nothing on the CPU reference.
fn families(device: &Device) -> Vec<Option<Kernels>> {
    if burrow_gpu::is_wgpu_device(device) {
        vec![Some(Kernels::cpu_adapter()), Some(Kernels::gpu(false))]
    } else {
        vec![None]
    }
}

fn logits(model: &Model) -> Vec<f32> {
    let mut session = model.new_session(8).unwrap();
    let hidden = burn::tensor::try_read_sync(model.forward(&mut session, &[1, 5, 9, 2])).unwrap().unwrap();
    model.logits(hidden).unwrap().into_data().try_to_vec::<f32>().unwrap()
}

fn stream(file: &[u8], chunk: usize, device: &Device, kernels: Option<Kernels>) -> Result<(Gguf, Model), String> {
    let mut loader = StreamLoader::new(file.len() as u64, device, kernels);
    for piece in file.chunks(chunk) {
        loader.push(piece).map_err(|e| e.to_string())?;
    }
    loader.finish().map_err(|e| e.to_string())
}

/// Plain, fused-projection (phi3: QKV and gate/up) and mixture-of-experts files, in chunks that
/// split the header and the tensors anywhere: the model computes exactly what the whole-file
/// loader's model computes.
#[test]
fn any_chunking_gives_the_same_model() {
    same_model_in_any_chunks(&Device::flex());
}

/// The same on the GPU, where each quantized matrix is written to its buffers as its pieces
/// arrive instead of being gathered first.
#[test]
fn any_chunking_gives_the_same_model_on_wgpu() {
    let device = wgpu();
    same_model_in_any_chunks(&device);
}

fn same_model_in_any_chunks(device: &Device) {
    let device = device.clone();
    for kernels in families(&device) {
        for name in ["llama-q4_1.gguf", "phi3-q4_k_m.gguf", "mixtral-q4_0.gguf", "gemma3-q6_k.gguf"] {
            let file = fixture(name);
            let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
            let want = logits(&load_model(&gguf, &mut FileBytes(&file), &device, kernels).unwrap());
            for chunk in [997, 65_536, 1 << 20, file.len()] {
                let (streamed_gguf, model) = stream(&file, chunk, &device, kernels).unwrap();
                assert_eq!(streamed_gguf.tensors.len(), gguf.tensors.len());
                assert_eq!(logits(&model), want, "{name} in chunks of {chunk} bytes, {kernels:?}");
            }
        }
    }
}

#[test]
fn a_file_that_ends_early_or_runs_long_is_an_error() {
    let device = Device::flex();
    let file = fixture("llama-q8_0.gguf");
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();

    // Cut inside the tensor data: the stream says which tensor never arrived.
    let last = gguf.tensors.iter().max_by_key(|t| t.offset).unwrap();
    let mut loader = StreamLoader::new(file.len() as u64, &device, None);
    loader.push(&file[..file.len() - 10]).unwrap();
    let err = loader.finish().err().expect("an incomplete file").to_string();
    assert!(err.contains(&last.name) && err.contains("ended"), "{err}");

    // Cut inside the header.
    let mut loader = StreamLoader::new(file.len() as u64, &device, None);
    loader.push(&file[..100]).unwrap();
    assert!(loader.gguf().is_none());
    assert!(loader.finish().is_err());

    // More bytes than announced.
    let mut loader = StreamLoader::new(file.len() as u64 - 1, &device, None);
    assert!(loader.push(&file).is_err());

    // Not a GGUF file at all.
    let mut loader = StreamLoader::new(4096, &device, None);
    assert!(loader.push(&[b'<'; 4096]).is_err());
}

/// On the GPU each layer's Q, K and V (and its gate and up) load into one matrix when their types
/// match, streamed or not, and the model computes exactly what it computes with the separate
/// matrices (the fused matrix's rows are theirs). The CPU reference keeps them separate.
#[test]
fn matching_projections_are_fused_on_wgpu_without_changing_the_logits() {
    let device = wgpu();
    let fused = |m: &Model| {
        m.net.blocks.iter().all(|b| b.attn.input.fused.is_some() && matches!(&b.ffn, FeedForward::Dense(f) if f.input.fused.is_some()))
    };
    let file = fixture("llama-q4_1.gguf");
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
    for kernels in families(&device) {
        let mut model = load_model(&gguf, &mut FileBytes(&file), &device, kernels).unwrap();
        assert!(fused(&model), "whole-file load");
        assert!(fused(&stream(&file, 997, &device, kernels).unwrap().1), "streamed load");
        let want = logits(&model);
        for block in &mut model.net.blocks {
            block.attn.input.fused = None;
            if let FeedForward::Dense(mlp) = &mut block.ffn {
                mlp.input.fused = None;
            }
        }
        assert_eq!(logits(&model), want, "separate matrices, {kernels:?}");
    }
    assert!(!fused(&load_model(&gguf, &mut FileBytes(&file), &Device::flex(), None).unwrap()));
}
