//! GGUF reading for Burrow: a validating header parser (whole-prefix or streaming) and dequantization of the
//! common ggml formats to f32.
//!
//! Every input is treated as untrusted: malformed files yield a [`GgufError`], never a panic, and no count from
//! the file is used to allocate before it has been checked against the bytes that could hold it.

mod dequant;
mod error;
mod parse;
mod reader;
mod types;
mod value;

pub use dequant::{dequantize, dequantize_to_vec};
pub use error::GgufError;
pub use parse::{Gguf, TensorInfo, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use reader::HeaderReader;
pub use types::{byte_size, GgmlType};
pub use value::Value;
