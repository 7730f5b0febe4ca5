use burn::tensor::DType;
use burrow_gguf::GgmlType;
use std::fmt;

/// Why a weight could not be uploaded or a quantized matmul could not be launched.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuError {
    /// No kernel reads this GGUF type.
    UnsupportedType(GgmlType),
    /// The dimensions are not a 2-D matrix the kernels accept, or do not match each other.
    Shape(String),
    /// The byte length does not match the type and dimensions.
    Size { expected: u64, found: u64 },
    /// The device or tensor is not on Burn's wgpu backend.
    NotWgpu(String),
    /// The input tensor is on another wgpu device than the weight.
    DeviceMismatch,
    /// The input is not f32.
    DType(DType),
    /// A buffer or dispatch exceeds the device's or the kernels' limits.
    TooLarge(String),
    /// The device failed (for example it was lost) while uploading.
    Device(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::UnsupportedType(ty) => write!(f, "no GPU kernel for GGUF type {ty}"),
            GpuError::Shape(what) => write!(f, "bad shape: {what}"),
            GpuError::Size { expected, found } => {
                write!(f, "weight data is {found} bytes, expected {expected}")
            }
            GpuError::NotWgpu(what) => write!(f, "not a wgpu device: {what}"),
            GpuError::DeviceMismatch => write!(f, "input and weight are on different devices"),
            GpuError::DType(dtype) => write!(f, "input must be f32, not {dtype:?}"),
            GpuError::TooLarge(what) => write!(f, "too large for the device or kernel: {what}"),
            GpuError::Device(what) => write!(f, "the GPU device failed: {what}"),
        }
    }
}

impl std::error::Error for GpuError {}
