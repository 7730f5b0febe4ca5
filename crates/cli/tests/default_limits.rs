//! Every model on a device requested with WebGPU's default limits (what every phone meets: 256
//! invocations and 16 KiB of workgroup memory a workgroup, 8 storage buffers a stage, 128 MiB a
//! binding, 256 MiB a buffer): every architecture fixture and the default model, on both kernel
//! families, the prompt as one batch and one token at a time, against the fixtures' float64
//! reference and llama.cpp's greedy continuation. One test in its own binary: the device is its own.

mod common;

use burrow_engine::{block_on, Engine, GenerateOptions};
use burrow_gguf::Gguf;
use burrow_gpu::{Gpu, Kernels};
use burrow_model::{load_model, FileBytes, SamplerConfig};
use common::{model_path, read_json, root};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn load(path: &std::path::Path, gpu: &Gpu, kernels: Kernels) -> Engine {
    let file = std::fs::read(path).unwrap();
    let gguf = Gguf::parse(&file, file.len() as u64).unwrap();
    let model = load_model(&gguf, &mut FileBytes(&file), &gpu.device, Some(kernels)).unwrap();
    Engine::new(&gguf, model).unwrap()
}

fn greedy(engine: &Engine, prompt: &[u32], tokens: usize) -> Vec<u32> {
    let mut session = engine.new_session(prompt.len() + tokens).unwrap();
    let opts = GenerateOptions { max_tokens: tokens, sampler: SamplerConfig::default(), stop: Vec::new(), ignore_eos: true };
    block_on(engine.generate(&mut session, prompt, &opts, |_| true)).unwrap().ids
}

#[test]
fn every_model_runs_under_default_limits() {
    let (gpu, device) = Gpu::open_with_default_limits().expect("a wgpu adapter (apt-get install -y mesa-vulkan-drivers)");
    assert_eq!(device.limits().max_storage_buffer_binding_size, 128 << 20);
    let families = [(Kernels::cpu_adapter(), 2e-2), (Kernels::gpu(gpu.adapter.subgroups), 5e-2)];
    let dir = root().join(".cache/fixtures");
    let index = read_json(&dir.join("index.json"));
    let mut failures = Vec::new();
    for entry in index["files"].as_array().unwrap() {
        let name = entry["file"].as_str().unwrap();
        let fixture = read_json(&dir.join(entry["json"].as_str().unwrap()));
        let ids: Vec<u32> = fixture["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        let want: Vec<Vec<f64>> = fixture["exact_f64"]["logits"].as_array().unwrap().iter().map(floats).collect();
        for (kernels, tolerance) in families {
            let engine = load(&dir.join(name), &gpu, kernels);
            for decode in [false, true] {
                let got = if decode { block_on(engine.decoded_logits(&ids, ids.len())) } else { block_on(engine.all_logits(&ids, ids.len())) };
                let got = got.unwrap();
                let worst = got.iter().zip(&want).flat_map(|(g, w)| g.iter().zip(w).map(|(&a, b)| (a as f64 - b).abs())).fold(0.0, f64::max);
                if worst > tolerance {
                    failures.push(format!("{name} {} (decode {decode}): max |Δ| {worst:.2e}", kernels.name()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The default model: llama.cpp's greedy continuation up to its first near-tie.
    let golden = read_json(&root().join("tests/golden/smollm2/greedy_f32model.json"));
    let case = &golden["cases"][0];
    let prompt: Vec<u32> = case["prompt_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    let want: Vec<u32> = case["gen_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    let cut = floats(&case["top1_minus_top2_logit_margin"]).iter().position(|&m| m < 0.1).unwrap_or(want.len()).min(8);
    for (kernels, _) in families {
        let engine = load(&model_path(), &gpu, kernels);
        assert_eq!(greedy(&engine, &prompt, cut)[..cut], want[..cut], "SmolLM2 {}", kernels.name());
    }
}
