use crate::GgmlType;
use std::fmt;

/// Everything that can go wrong while reading a GGUF header, locating tensor data or dequantizing.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufError {
    /// The file does not start with "GGUF".
    BadMagic { found: [u8; 4] },
    /// Only GGUF versions 2 and 3 are supported.
    UnsupportedVersion(u32),
    /// The prefix given to [`crate::Gguf::parse`] ends before the header does; retry with at least `needed` bytes.
    Incomplete { needed: u64 },
    /// The file itself ends before `what` (which starts at `offset` and needs `needed` bytes) is complete.
    Truncated { what: String, offset: u64, needed: u64, file_len: u64 },
    /// More bytes were supplied than the declared file length.
    LongerThanFile { len: u64, file_len: u64 },
    /// A count (tensors, key-value pairs, array elements, string bytes) cannot fit in the rest of the file.
    CountTooLarge { what: String, count: u64, offset: u64, remaining: u64 },
    /// A string (key, value or tensor name) is not valid UTF-8.
    InvalidUtf8 { what: String, offset: u64 },
    /// A metadata value type id is not one of the 13 GGUF value types.
    BadValueType { key: String, type_id: u32, offset: u64 },
    /// Arrays are nested deeper than [`crate::MAX_ARRAY_DEPTH`].
    NestingTooDeep { key: String, offset: u64 },
    /// The same metadata key appears twice.
    DuplicateKey { key: String },
    /// `general.alignment` is not a nonzero power-of-two integer.
    BadAlignment { value: String },
    /// A tensor has more dimensions than ggml supports.
    TooManyDims { tensor: String, n_dims: u32 },
    /// A tensor has a dimension of 0.
    ZeroDim { tensor: String, dims: Vec<u64> },
    /// The product of a tensor's dimensions (or its byte size) overflows.
    DimsOverflow { tensor: String, dims: Vec<u64> },
    /// A tensor's type id is not a known ggml type.
    UnknownTensorType { tensor: String, type_id: u32 },
    /// A tensor's row length (dims[0]) is not a multiple of its type's block size.
    RowNotBlockMultiple { tensor: String, ty: GgmlType, ne0: u64 },
    /// A tensor's offset is not a multiple of the file's alignment.
    MisalignedTensor { tensor: String, offset: u64, alignment: u64 },
    /// A tensor's data `[start, end)` (absolute file offsets) does not fit in the file.
    TensorPastEnd { tensor: String, start: u64, end: u64, file_len: u64 },
    /// Two tensors' data ranges overlap.
    OverlappingTensors { first: String, second: String },
    /// Two tensors have the same name.
    DuplicateTensor { name: String },
    /// [`crate::dequantize`] does not support this type.
    UnsupportedDequant(GgmlType),
    /// An element count is not a multiple of the type's block size.
    NotBlockMultiple { ty: GgmlType, n: u64 },
    /// A buffer has the wrong length.
    SizeMismatch { what: String, expected: u64, found: u64 },
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GgufError::*;
        match self {
            BadMagic { found } => write!(f, "not a GGUF file: it starts with {found:02x?}, not \"GGUF\""),
            UnsupportedVersion(v) => write!(f, "GGUF version {v} is not supported (only versions 2 and 3 are)"),
            Incomplete { needed } => write!(f, "the GGUF header is incomplete: at least {needed} bytes of the file are needed"),
            Truncated { what, offset, needed, file_len } => write!(
                f,
                "the file is truncated: {what} at offset {offset} needs {needed} bytes but the file has only {file_len} bytes"
            ),
            LongerThanFile { len, file_len } => {
                write!(f, "{len} bytes were supplied but the file is declared to be {file_len} bytes long")
            }
            CountTooLarge { what, count, offset, remaining } => write!(
                f,
                "{what} at offset {offset} claims {count} items, more than the remaining {remaining} bytes of the file can hold"
            ),
            InvalidUtf8 { what, offset } => write!(f, "{what} at offset {offset} is not valid UTF-8"),
            BadValueType { key, type_id, offset } => {
                write!(f, "metadata key '{key}' has unknown value type {type_id} at offset {offset}")
            }
            NestingTooDeep { key, offset } => write!(
                f,
                "metadata key '{key}' nests arrays deeper than {} levels (at offset {offset})",
                crate::MAX_ARRAY_DEPTH
            ),
            DuplicateKey { key } => write!(f, "metadata key '{key}' appears more than once"),
            BadAlignment { value } => {
                write!(f, "general.alignment must be a nonzero power-of-two integer, found {value}")
            }
            TooManyDims { tensor, n_dims } => write!(
                f,
                "tensor '{tensor}' has {n_dims} dimensions, more than the {} ggml supports",
                crate::MAX_DIMS
            ),
            ZeroDim { tensor, dims } => write!(f, "tensor '{tensor}' has a zero dimension in {dims:?}"),
            DimsOverflow { tensor, dims } => write!(f, "tensor '{tensor}' is too large: dimensions {dims:?} overflow"),
            UnknownTensorType { tensor, type_id } => write!(f, "tensor '{tensor}' has unknown ggml type id {type_id}"),
            RowNotBlockMultiple { tensor, ty, ne0 } => write!(
                f,
                "tensor '{tensor}' has rows of {ne0} elements, not a multiple of the {ty} block size {}",
                ty.block_size()
            ),
            MisalignedTensor { tensor, offset, alignment } => write!(
                f,
                "tensor '{tensor}' data offset {offset} is not a multiple of the alignment {alignment}"
            ),
            TensorPastEnd { tensor, start, end, file_len } => write!(
                f,
                "tensor '{tensor}' data [{start}..{end}) ends past the end of the file ({file_len} bytes)"
            ),
            OverlappingTensors { first, second } => write!(f, "the data of tensors '{first}' and '{second}' overlap"),
            DuplicateTensor { name } => write!(f, "tensor name '{name}' appears more than once"),
            UnsupportedDequant(ty) => write!(f, "dequantizing {ty} is not supported"),
            NotBlockMultiple { ty, n } => write!(
                f,
                "{n} elements is not a whole number of {ty} blocks ({} elements each)",
                ty.block_size()
            ),
            SizeMismatch { what, expected, found } => {
                write!(f, "{what} has {found} bytes/elements where {expected} were expected")
            }
        }
    }
}

impl std::error::Error for GgufError {}
