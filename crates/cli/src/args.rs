//! The command line, declared with clap: each command takes exactly the flags it uses, so a flag
//! a command would ignore is an error.

use burrow_gpu::KernelChoice;
use burrow_model::SamplerConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{Backend, KernelArgs};

#[derive(Parser)]
#[command(name = "burrow", version, about = "Burrow's engine on the command line: the crates the browser runs, for tests, golden checks, benchmarks and chat")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// What a GGUF file holds, and whether Burrow runs it (and if not, why). For a vision
    /// projector (mmproj), `--model` names a language model to check it pairs with.
    Info {
        /// The file to describe (a language model or an mmproj file).
        #[arg(long = "file", visible_alias = "mmproj")]
        file: Option<String>,
        #[arg(long)]
        model: Option<String>,
    },
    /// The token ids of a text, as the file's tokenizer makes them.
    Tokenize {
        #[arg(long)]
        model: String,
        #[arg(long)]
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// The logits at every position of a prompt.
    Logits(LogitsArgs),
    /// A continuation of a prompt (or of a chat message, with --chat).
    Generate(GenerateArgs),
    /// An interactive conversation on stdin and stdout.
    Chat(ChatArgs),
    /// Prefill and decode speed on a synthetic prompt (a benchmark, not a test).
    Bench(BenchArgs),
    /// Every GPU kernel variant (its WGSL with --json).
    Shaders {
        #[arg(long)]
        json: bool,
    },
}

/// Where the model runs.
#[derive(Args)]
pub struct DeviceArgs {
    /// cpu: Burn's CPU backend with f32 weights, the reference; wgpu: Burrow's WGSL kernels on the
    /// quantized weights.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// wgpu only: auto (the CPU-adapter family on lavapipe, llvmpipe and SwiftShader, the GPU family
    /// elsewhere), gpu or cpu-adapter.
    #[arg(long, default_value = "auto", value_parser = KernelChoice::parse)]
    pub kernels: KernelChoice,
    /// wgpu only: off takes no subgroups, shader-f16 or dot4I8Packed, whatever the device has.
    #[arg(long, value_enum, default_value_t = FastPaths::Auto)]
    pub fast_paths: FastPaths,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FastPaths {
    Auto,
    Off,
}

impl DeviceArgs {
    pub fn kernels(&self) -> KernelArgs {
        KernelArgs { family: self.kernels, fast_paths: self.fast_paths == FastPaths::Auto }
    }
}

/// The prompt, as text or as token ids.
#[derive(Args)]
pub struct InputArgs {
    /// The prompt's text.
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    pub prompt: Option<String>,
    /// The prompt's token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub ids: Option<Vec<u32>>,
}

/// The sampler (greedy unless a temperature is given).
#[derive(Args)]
pub struct SamplingArgs {
    /// 0 chooses the likeliest token.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = SamplerConfig::default().top_k)]
    pub top_k: usize,
    #[arg(long, default_value_t = SamplerConfig::default().top_p)]
    pub top_p: f32,
    #[arg(long, default_value_t = SamplerConfig::default().min_p)]
    pub min_p: f32,
    #[arg(long, default_value_t = SamplerConfig::default().repeat_penalty)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = SamplerConfig::default().repeat_last_n)]
    pub repeat_last_n: usize,
    #[arg(long, default_value_t = SamplerConfig::default().seed)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
        }
    }
}

#[derive(Args)]
pub struct LogitsArgs {
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub input: InputArgs,
    /// The context size (the prompt's length by default); it can change the model (Phi-3's longrope
    /// factors), as llama.cpp's -c does.
    #[arg(long)]
    pub context: Option<usize>,
    /// One token at a time (decode steps) instead of one batch.
    #[arg(long, conflicts_with = "image")]
    pub decode: bool,
    /// With --image: the logits at the prompt's last position only.
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long)]
    pub json: bool,
}

/// Images in the prompt, through a vision projector.
#[derive(Args)]
pub struct ImageArgs {
    /// The vision projector (mmproj GGUF) that pairs with --model, for --image.
    #[arg(long, requires = "image")]
    pub mmproj: Option<String>,
    /// An image for the prompt (PNG, JPEG or WebP; repeatable). The images go first, in order,
    /// then the text, unless the prompt places each itself with <__media__>.
    #[arg(long, requires = "mmproj", conflicts_with = "ids")]
    pub image: Vec<String>,
    /// The least tokens an image becomes, for a projector that sizes images by a budget
    /// (Qwen2.5-VL; llama.cpp's default 8), as llama-mtmd-cli's flag.
    #[arg(long, requires = "mmproj")]
    pub image_min_tokens: Option<usize>,
    /// The most tokens an image becomes (Qwen2.5-VL; llama.cpp's default 4096).
    #[arg(long, requires = "mmproj")]
    pub image_max_tokens: Option<usize>,
}

impl ImageArgs {
    /// The token budget the flags set, the other end llama.cpp's default; `None` if neither is given.
    pub fn token_budget(&self) -> Option<(usize, usize)> {
        use burrow_vision::Qwen2Vl;
        match (self.image_min_tokens, self.image_max_tokens) {
            (None, None) => None,
            (min, max) => Some((
                min.unwrap_or(Qwen2Vl::DEFAULT_MIN_TOKENS as usize),
                max.unwrap_or(Qwen2Vl::DEFAULT_MAX_TOKENS as usize),
            )),
        }
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub input: InputArgs,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Ends the text where it appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// The prompt is one user message, rendered with the file's chat template.
    #[arg(long, conflicts_with = "ids")]
    pub chat: bool,
    #[command(flatten)]
    pub images: ImageArgs,
    /// Goes on past end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ChatArgs {
    #[arg(long)]
    pub model: String,
    /// Tokens a reply may have.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The context in tokens (the model's own, at most 2048, by default); older turns are left out
    /// when the conversation outgrows it.
    #[arg(long)]
    pub ctx: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub prompt_tokens: u64,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub gen_tokens: u64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Also measures the device's read bandwidth on the model's largest matrices.
    #[arg(long)]
    pub bandwidth: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long)]
    pub json: bool,
}
