//! The transformer: GGUF tensors become a Burn model that turns token ids into logits, plus the
//! sampler that turns logits into the next token. No platform code lives here: the same crate
//! runs natively and in the browser.

pub mod attention;
pub mod config;
pub mod decoder;
pub mod layer;
pub mod load;
pub mod rope;
pub mod sampling;
pub mod session;
pub mod stop;
pub mod vision;

use std::fmt;

use burrow_gguf::{Gguf, GgufError};
use burrow_gpu::GpuError;

pub use config::{supported_architectures, Activation, ModelConfig, RopeStyle};
pub use decoder::{Hidden, Model};
pub use layer::Matrix;
pub use rope::RopeFactors;
pub use session::Session;
pub use load::{load, load_model, Builder, FileBytes, ModelBuilder, StreamLoader, TensorSource};
pub use sampling::{argmax, Sampler, SamplerConfig};
pub use stop::{Emit, StopStrings};
pub use vision::{Projector, VisionBuilder, VisionConfig, VisionEncoder, WindowAttention};

#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    Gguf(GgufError),
    UnsupportedArchitecture(String),
    MissingKey(String),
    BadValue { key: String, value: String },
    MissingTensor(String),
    BadShape { name: String, dims: Vec<u64> },
    WrongShape { name: String, expected: Vec<u64>, found: Vec<u64> },
    UnsupportedTensorType { name: String, ty: String },
    Context(String),
    /// A GPU kernel or upload refused its input (a device limit, for example).
    Gpu(GpuError),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Gguf(e) => write!(f, "{e}"),
            ModelError::UnsupportedArchitecture(a) => write!(
                f,
                "architecture '{a}' is not supported (Burrow runs: {})",
                supported_architectures().join(", ")
            ),
            ModelError::MissingKey(k) => write!(f, "metadata key '{k}' is missing"),
            ModelError::BadValue { key, value } => write!(f, "metadata key '{key}' has an unusable value: {value}"),
            ModelError::MissingTensor(n) => write!(f, "tensor '{n}' is missing"),
            ModelError::BadShape { name, dims } => write!(f, "tensor '{name}' has an unexpected shape {dims:?}"),
            ModelError::WrongShape { name, expected, found } => {
                write!(f, "tensor '{name}' has shape {found:?}, expected {expected:?}")
            }
            ModelError::UnsupportedTensorType { name, ty } => {
                write!(f, "tensor '{name}' uses quantization type {ty}, which Burrow does not support yet")
            }
            ModelError::Context(m) => write!(f, "{m}"),
            ModelError::Gpu(e) => write!(f, "GPU: {e}"),
        }
    }
}

impl std::error::Error for ModelError {}

impl From<GpuError> for ModelError {
    fn from(e: GpuError) -> Self {
        ModelError::Gpu(e)
    }
}

impl From<GgufError> for ModelError {
    fn from(e: GgufError) -> Self {
        ModelError::Gguf(e)
    }
}

/// Everything that stops Burrow from running this file: the architecture, then each missing
/// tensor, wrong shape or unsupported quantization type. Empty when it runs.
pub fn check_support(gguf: &Gguf) -> Vec<ModelError> {
    let config = match ModelConfig::from_gguf(gguf) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for want in config.expected_tensors() {
        let Some(t) = gguf.tensor(&want.name) else {
            if !want.optional {
                problems.push(ModelError::MissingTensor(want.name));
            }
            continue;
        };
        if t.dims != want.dims {
            problems.push(ModelError::WrongShape { name: want.name.clone(), expected: want.dims, found: t.dims.clone() });
        }
        if !t.ty.can_dequantize() {
            problems.push(ModelError::UnsupportedTensorType { name: want.name, ty: t.ty.name().to_string() });
        }
    }
    problems
}
