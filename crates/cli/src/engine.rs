//! Native glue: a model file on disk becomes a tokenizer, a chat template and a model on the
//! CPU reference device or a wgpu adapter, and the generation loop that drives them.

use std::fmt::Write as _;

use burn::tensor::Device;
use burrow_engine::{Engine, ImageInput};
use burrow_gpu::{Adapter, Gpu, KernelChoice, Kernels};
use burrow_gguf::Gguf;
use burrow_model::{load_model, FileBytes, ModelConfig, VisionConfig, VisionEncoder};
use burrow_text::Tokenizer;

/// Context used by the interactive chat when the model allows that much.
pub const DEFAULT_CHAT_CONTEXT: usize = 4096;

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Burn's CPU backend with f32 weights: the reference.
    Cpu,
    /// Burn's wgpu backend with the weights quantized on the GPU (Burrow's WGSL kernels).
    Wgpu,
}

impl Backend {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The device, and on wgpu its adapter and the kernels `choice` picks for it.
    fn device(self, choice: KernelArgs) -> Result<(Device, Option<(Adapter, Kernels)>), String> {
        match self {
            Backend::Cpu => Ok((Device::flex(), None)),
            Backend::Wgpu => {
                let gpu = Gpu::open().map_err(|e| {
                    format!("no usable wgpu adapter ({e}); on Debian without a GPU: apt-get install mesa-vulkan-drivers")
                })?;
                let mut kernels = Kernels::choose(choice.family, &gpu.adapter);
                if !choice.fast_paths {
                    kernels = kernels.without_fast_paths();
                }
                Ok((gpu.device, Some((gpu.adapter, kernels))))
            }
        }
    }
}

fn read_gguf(path: &str) -> Result<(Vec<u8>, Gguf), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let gguf = Gguf::parse(&bytes, bytes.len() as u64).map_err(|e| e.to_string())?;
    Ok((bytes, gguf))
}

pub fn load_tokenizer(path: &str) -> Result<Tokenizer, String> {
    let (_, gguf) = read_gguf(path)?;
    Tokenizer::from_gguf(&gguf).map_err(|e| e.to_string())
}

/// The kernels asked for on the command line: `--kernels` and `--fast-paths`.
#[derive(Clone, Copy, Debug)]
pub struct KernelArgs {
    pub family: KernelChoice,
    /// Off: no subgroups and no shader-f16, whatever the device has.
    pub fast_paths: bool,
}

/// Reads the model file and loads it on `backend`, with the kernels `choice` picks on wgpu.
pub fn load(path: &str, backend: Backend, choice: KernelArgs) -> Result<Engine, String> {
    Ok(load_on(path, backend, choice)?.0)
}

/// [`load`], with the wgpu adapter it runs on.
pub fn load_on(path: &str, backend: Backend, choice: KernelArgs) -> Result<(Engine, Option<Adapter>), String> {
    let (bytes, gguf) = read_gguf(path)?;
    let (device, gpu) = backend.device(choice)?;
    let kernels = gpu.as_ref().map(|(_, k)| *k);
    let model = load_model(&gguf, &mut FileBytes(&bytes), &device, kernels).map_err(|e| e.to_string())?;
    Ok((Engine::new(&gguf, model)?, gpu.map(|(adapter, _)| adapter)))
}

/// Loads the vision projector (mmproj) at `path` onto the device `engine` runs on, with its
/// kernels and an image token `budget` if given, and lets `engine` read images through it.
pub fn attach_vision(path: &str, engine: &mut Engine, budget: Option<(usize, usize)>) -> Result<(), String> {
    let (bytes, gguf) = read_gguf(path)?;
    let mut vision = VisionEncoder::load(&gguf, &bytes, &engine.model.device, engine.model.kernels).map_err(|e| e.to_string())?;
    if let Some((min, max)) = budget {
        vision.set_image_token_budget(min, max).map_err(|e| e.to_string())?;
    }
    Ok(engine.attach_vision(vision)?)
}

/// Images read and decoded (PNG, JPEG, WebP), each failure naming its file.
pub fn read_images(paths: &[String]) -> Result<Vec<ImageInput>, String> {
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).map_err(|e| format!("{path}: cannot read the image: {e}"))?;
            Ok(ImageInput::from_pixels(burrow_vision::decode(&bytes).map_err(|e| format!("{path}: {e}"))?))
        })
        .collect()
}

/// `burrow info` on a vision projector (mmproj): its encoder, and with `model` whether the two
/// are a pair.
fn inspect_vision(s: &mut String, gguf: &Gguf, model: Option<&str>) -> Result<(), String> {
    let c = match VisionConfig::from_gguf(gguf) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(s, "supported: no\n  - {e}");
            return Ok(());
        }
    };
    let _ = writeln!(s, "vision projector: {}", c.projector.name());
    match c.windows {
        None => {
            let _ = writeln!(s, "tiles: {0} × {0} px, patches of {1} px, longest edge {2} px", c.image_size, c.patch_size, c.longest_edge);
            let _ = writeln!(s, "encoder: {} blocks, {} wide, {} heads; {} tokens per tile", c.n_layer, c.n_embd, c.n_head, c.tokens_per_tile());
        }
        Some(w) => {
            let (p, m) = (c.patch_size, c.scale_factor);
            let (min, max) = (burrow_vision::Qwen2Vl::DEFAULT_MIN_TOKENS, burrow_vision::Qwen2Vl::DEFAULT_MAX_TOKENS);
            let _ = writeln!(s, "images: any size, patches of {p} px, {m} × {m} merged into a token, {min} to {max} tokens an image");
            let _ = writeln!(
                s,
                "encoder: {} blocks, {} wide, {} heads; attention within windows of {} × {} tokens, over the whole image every {} blocks",
                c.n_layer, c.n_embd, c.n_head, w.side, w.side, w.full_every
            );
        }
    }
    let _ = writeln!(s, "writes embeddings {} wide", c.projection_dim);
    let _ = writeln!(s, "supported: yes (backends: cpu, wgpu)");
    if let Some(model) = model {
        let (_, lm) = read_gguf(model).map_err(|e| format!("{model}: {e}"))?;
        match ModelConfig::from_gguf(&lm) {
            Ok(lm) => match c.check_pair(&lm) {
                Ok(()) => {
                    let _ = writeln!(s, "pair with {model}: yes (its embeddings are {} wide)", lm.n_embd);
                }
                Err(why) => {
                    let _ = writeln!(s, "pair with {model}: no ({why})");
                }
            },
            Err(e) => {
                let _ = writeln!(s, "pair with {model}: no (it is not a language model Burrow reads: {e})");
            }
        }
    }
    Ok(())
}

/// `burrow info`: what the file is and whether Burrow runs it.
pub fn inspect(path: &str, model: Option<&str>) -> Result<String, String> {
    let (bytes, gguf) = read_gguf(path)?;
    let mut s = String::new();
    let arch = gguf.architecture().unwrap_or("(none)");
    let _ = writeln!(s, "file: {path} ({} bytes, GGUF v{})", bytes.len(), gguf.version);
    let _ = writeln!(s, "architecture: {arch}");
    if let Some(name) = gguf.get_str("general.name") {
        let _ = writeln!(s, "name: {name}");
    }
    if arch == "clip" {
        inspect_vision(&mut s, &gguf, model)?;
        return Ok(s);
    }
    if model.is_some() {
        return Err("--model names a language model for an mmproj file; this file is not one".into());
    }
    for key in [
        "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
        "attention.head_count_kv", "rope.freq_base", "rope.dimension_count", "attention.layer_norm_rms_epsilon",
    ] {
        if let Some(v) = gguf.get(&format!("{arch}.{key}")) {
            let _ = writeln!(s, "{key}: {}", value_text(v));
        }
    }
    let params: u64 = gguf.tensors.iter().map(|t| t.n_elements).sum();
    let _ = writeln!(s, "tensors: {} ({params} parameters)", gguf.tensors.len());
    let mut by_type: Vec<(&str, usize, u64)> = Vec::new();
    for t in &gguf.tensors {
        match by_type.iter_mut().find(|(n, _, _)| *n == t.ty.name()) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.n_bytes;
            }
            None => by_type.push((t.ty.name(), 1, t.n_bytes)),
        }
    }
    for (ty, n, b) in by_type {
        let _ = writeln!(s, "  {ty}: {n} tensors, {b} bytes");
    }
    let tok = gguf.get_str("tokenizer.ggml.model").unwrap_or("(none)");
    let _ = writeln!(s, "tokenizer: {tok}{}", gguf.get_str("tokenizer.ggml.pre").map(|p| format!(" (pre: {p})")).unwrap_or_default());
    let _ = writeln!(s, "chat template: {}", if gguf.get("tokenizer.chat_template").is_some() { "yes" } else { "no" });

    let mut problems: Vec<String> = burrow_model::check_support(&gguf).iter().map(|e| e.to_string()).collect();
    if let Err(e) = Tokenizer::from_gguf(&gguf) {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        let _ = writeln!(s, "supported: yes (backends: cpu, wgpu)");
    } else {
        let _ = writeln!(s, "supported: no");
        for p in problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    Ok(s)
}

fn value_text(v: &burrow_gguf::Value) -> String {
    match v {
        burrow_gguf::Value::String(s) => s.clone(),
        burrow_gguf::Value::Array(a) => format!("[{} values]", a.len()),
        other => other
            .as_f64()
            .map(|f| f.to_string())
            .or_else(|| other.as_bool().map(|b| b.to_string()))
            .unwrap_or_default(),
    }
}
