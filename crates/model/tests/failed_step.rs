//! A forward step that fails midway leaves its session as it was: its KV cache in place and its
//! position unchanged, so the next step computes what it would have without the failure. (Taking
//! a layer's cache out of the session and failing before putting it back used to leave every
//! later step failing with "KV cache is in use".) On the CPU reference and both kernel families.

use std::path::PathBuf;

use burn::tensor::Device;
use burrow_gguf::Gguf;
use burrow_gpu::{Gpu, Kernels};
use burrow_model::{load_model, FileBytes, Model};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make fixtures`)", path.display()))
}

fn last_logits(model: &Model, session: &mut burrow_model::Session, ids: &[u32]) -> Result<Vec<f32>, String> {
    let hidden = burn::tensor::try_read_sync(model.forward(session, ids)).unwrap().map_err(|e| e.to_string())?;
    Ok(model.last_logits(hidden).unwrap().into_data().try_to_vec::<f32>().unwrap())
}

#[test]
fn a_failed_step_leaves_the_session_usable() {
    let gpu = Gpu::open().expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)");
    let placements = [
        (Device::flex(), None),
        (gpu.device.clone(), Some(Kernels::cpu_adapter())),
        (gpu.device.clone(), Some(Kernels::gpu(gpu.adapter.subgroups))),
    ];
    // Llama (dense) and Gemma 3 (Q/K norms, post-norms, sliding windows).
    for name in ["llama-q4_1.gguf", "gemma3-q4_k_m.gguf"] {
        let file = fixture(name);
        let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
        for (device, kernels) in &placements {
            let model = load_model(&gguf, &mut FileBytes(&file), device, *kernels).unwrap();
            let what = format!("{name} {kernels:?}");
            let mut clean = model.new_session(8).unwrap();
            last_logits(&model, &mut clean, &[1, 5, 9, 2]).unwrap();
            let want = last_logits(&model, &mut clean, &[7]).unwrap();

            let mut session = model.new_session(8).unwrap();
            last_logits(&model, &mut session, &[1, 5, 9, 2]).unwrap();
            // A decode step and a prefill step that fail after the last layer wrote its cache.
            for ids in [&[7][..], &[7, 3]] {
                session.fail_next_step_at_layer(model.config.n_layer - 1);
                let err = last_logits(&model, &mut session, ids).expect_err("the injected failure");
                assert!(err.contains("injected"), "{what}: {err}");
                assert_eq!(session.position(), 4, "{what}: a failed step moved the position");
            }
            assert_eq!(last_logits(&model, &mut session, &[7]).unwrap(), want, "{what}: the step after the failures");
        }
    }
}
