//! GGUF header parsing and validation.

use crate::{byte_size, GgmlType, GgufError, Value};
use std::collections::HashSet;

/// The magic bytes every GGUF file starts with.
const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS: tensors with more dimensions are rejected.
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays are allowed, up to this many levels (real files use one).
pub const MAX_ARRAY_DEPTH: u32 = 8;

/// Smallest possible encodings, used to reject counts the remaining bytes cannot hold before allocating.
/// A key-value pair: key length (8) + empty key + value type (4) + a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// A tensor info: name length (8) + empty name + n_dims (4) + no dims + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

// GGUF metadata value type ids.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// Minimum encoded size of one value of a type, None for an unknown type id.
fn min_value_size(type_id: u32) -> Option<u64> {
    Some(match type_id {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 => 8,
        T_STRING => 8,
        T_ARRAY => 4 + 8,
        _ => return None,
    })
}

/// One tensor's description from the header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: dims[0] = ne0 = the contiguous (row/input) dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Relative to the start of the tensor data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

/// A parsed and validated GGUF header.
#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    /// `general.alignment` or 32.
    pub alignment: u64,
    /// In file order.
    pub metadata: Vec<(String, Value)>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset where tensor data starts.
    pub data_offset: u64,
    pub file_len: u64,
}

/// Reads little-endian fields from a prefix of a file of known total length.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file_len: u64,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining_in_file(&self) -> u64 {
        self.file_len.saturating_sub(self.offset())
    }

    /// The next `n` bytes. Incomplete if they are in the file but not in the prefix, Truncated if not in the file.
    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        let offset = self.offset();
        let end = offset.checked_add(n).filter(|&end| end <= self.file_len).ok_or_else(|| {
            GgufError::Truncated { what: what(), offset, needed: n, file_len: self.file_len }
        })?;
        if end > self.buf.len() as u64 {
            return Err(GgufError::Incomplete { needed: end });
        }
        // end <= buf.len(), so it fits in usize and the slice is in bounds.
        let bytes = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Errors unless `count` items of at least `min_size` bytes each fit in the rest of the file.
    fn check_count(&self, count: u64, min_size: u64, what: impl FnOnce() -> String) -> Result<(), GgufError> {
        let remaining = self.remaining_in_file();
        match count.checked_mul(min_size) {
            Some(total) if total <= remaining => Ok(()),
            _ => Err(GgufError::CountTooLarge { what: what(), count, offset: self.offset(), remaining }),
        }
    }

    /// How many items of at least `min_size` bytes to reserve room for: no more than the bytes already at hand
    /// could hold, because the file length is only the caller's claim and counts are untrusted.
    fn capacity_for(&self, count: u64, min_size: u64) -> usize {
        let in_prefix = (self.buf.len() - self.pos) as u64 / min_size;
        count.min(in_prefix) as usize
    }

    /// A GGUF string: u64 length then UTF-8 bytes.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(|| format!("length of {}", what()))?;
        // `take` checks the length against the file and the prefix before anything is allocated.
        let offset = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 { what: what(), offset }),
        }
    }

    fn value(&mut self, type_id: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
        let what = || format!("value of key '{key}'");
        Ok(match type_id {
            T_U8 => Value::U8(u8::from_le_bytes(self.array(what)?)),
            T_I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            T_U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            T_I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            T_U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            T_I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            T_F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            // llama.cpp reads a bool as one byte and treats any nonzero byte as true.
            T_BOOL => Value::Bool(self.array::<1>(what)?[0] != 0),
            T_STRING => Value::String(self.string(&what)?),
            T_U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            T_I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            T_F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            T_ARRAY => self.array_value(key, depth)?,
            _ => {
                return Err(GgufError::BadValueType {
                    key: key.to_owned(),
                    type_id,
                    offset: self.offset().saturating_sub(4),
                })
            }
        })
    }

    fn array_value(&mut self, key: &str, depth: u32) -> Result<Value, GgufError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::NestingTooDeep { key: key.to_owned(), offset: self.offset() });
        }
        let elem_type = self.u32(|| format!("array element type of key '{key}'"))?;
        let min_size = min_value_size(elem_type).ok_or_else(|| GgufError::BadValueType {
            key: key.to_owned(),
            type_id: elem_type,
            offset: self.offset().saturating_sub(4),
        })?;
        let count = self.u64(|| format!("array length of key '{key}'"))?;
        self.check_count(count, min_size, || format!("array of key '{key}'"))?;
        let mut items = Vec::with_capacity(self.capacity_for(count, min_size));
        for _ in 0..count {
            items.push(self.value(elem_type, key, depth + 1)?);
        }
        Ok(Value::Array(items))
    }
}

impl Gguf {
    /// Parse the header from the first bytes of a file whose total length is `file_len`.
    ///
    /// Returns `Incomplete { needed }` when `prefix` ends before the header does but the file is longer than the
    /// prefix (supply at least `needed` bytes and retry); `Truncated` when the file itself is too short.
    pub fn parse(prefix: &[u8], file_len: u64) -> Result<Gguf, GgufError> {
        if prefix.len() as u64 > file_len {
            return Err(GgufError::LongerThanFile { len: prefix.len() as u64, file_len });
        }
        let mut c = Cursor { buf: prefix, pos: 0, file_len };
        let magic: [u8; 4] = c.array(|| "magic".into())?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32(|| "version".into())?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = c.u64(|| "tensor count".into())?;
        let kv_count = c.u64(|| "metadata key-value count".into())?;
        // Each pair and each tensor info needs bytes of its own; the two checks together bound both.
        c.check_count(kv_count, MIN_KV_BYTES, || "metadata key-value count".into())?;
        c.check_count(tensor_count, MIN_TENSOR_INFO_BYTES, || "tensor count".into())?;

        let mut metadata = Vec::with_capacity(c.capacity_for(kv_count, MIN_KV_BYTES));
        let mut keys = HashSet::with_capacity(c.capacity_for(kv_count, MIN_KV_BYTES));
        for i in 0..kv_count {
            let key = c.string(&|| format!("key of metadata pair {i}"))?;
            let type_id = c.u32(|| format!("value type of key '{key}'"))?;
            let value = c.value(type_id, &key, 0)?;
            if !keys.insert(key.clone()) {
                return Err(GgufError::DuplicateKey { key });
            }
            metadata.push((key, value));
        }

        let mut tensors = Vec::with_capacity(c.capacity_for(tensor_count, MIN_TENSOR_INFO_BYTES));
        for i in 0..tensor_count {
            tensors.push(read_tensor_info(&mut c, i)?);
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => return Err(GgufError::BadAlignment { value: format!("{v:?}") }),
            },
        };
        let header_end = c.offset();
        let data_offset = header_end
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| GgufError::BadAlignment { value: alignment.to_string() })?;

        let gguf = Gguf { version, alignment, metadata, tensors, data_offset, file_len };
        gguf.validate_tensor_layout()?;
        Ok(gguf)
    }

    /// Alignment, bounds, overlap and name uniqueness of the tensor data ranges.
    fn validate_tensor_layout(&self) -> Result<(), GgufError> {
        let mut names = HashSet::with_capacity(self.tensors.len());
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(GgufError::DuplicateTensor { name: t.name.clone() });
            }
            if !t.offset.is_multiple_of(self.alignment) {
                return Err(GgufError::MisalignedTensor {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    alignment: self.alignment,
                });
            }
            let start = self.data_offset.saturating_add(t.offset);
            let end = start.saturating_add(t.n_bytes);
            if end > self.file_len || end == u64::MAX {
                return Err(GgufError::TensorPastEnd {
                    tensor: t.name.clone(),
                    start,
                    end,
                    file_len: self.file_len,
                });
            }
        }
        // All ranges are inside the file now, so offset + n_bytes cannot overflow.
        let mut order: Vec<&TensorInfo> = self.tensors.iter().collect();
        order.sort_by_key(|t| t.offset);
        for pair in order.windows(2) {
            if pair[0].offset + pair[0].n_bytes > pair[1].offset {
                return Err(GgufError::OverlappingTensors {
                    first: pair[0].name.clone(),
                    second: pair[1].name.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        self.get(key)?.as_array()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor's bytes inside the whole file's bytes (`file.len()` must equal `file_len`).
    pub fn tensor_data<'a>(&self, file: &'a [u8], t: &TensorInfo) -> Result<&'a [u8], GgufError> {
        if file.len() as u64 != self.file_len {
            return Err(GgufError::SizeMismatch {
                what: "the file buffer".into(),
                expected: self.file_len,
                found: file.len() as u64,
            });
        }
        let start = self.data_offset.saturating_add(t.offset);
        let end = start.saturating_add(t.n_bytes);
        // Checked again because `t` may not come from this header (or may have been edited).
        if end > self.file_len || end == u64::MAX {
            return Err(GgufError::TensorPastEnd { tensor: t.name.clone(), start, end, file_len: self.file_len });
        }
        Ok(&file[start as usize..end as usize])
    }
}

fn read_tensor_info(c: &mut Cursor, index: u64) -> Result<TensorInfo, GgufError> {
    let name = c.string(&|| format!("name of tensor {index}"))?;
    let n_dims = c.u32(|| format!("dimension count of tensor '{name}'"))?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::TooManyDims { tensor: name, n_dims });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64(|| format!("dimensions of tensor '{name}'"))?);
    }
    let type_id = c.u32(|| format!("type of tensor '{name}'"))?;
    let offset = c.u64(|| format!("data offset of tensor '{name}'"))?;

    if dims.contains(&0) {
        return Err(GgufError::ZeroDim { tensor: name, dims });
    }
    // ggml counts elements in int64_t, so anything past i64::MAX is unusable too.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_elements) = n_elements else {
        return Err(GgufError::DimsOverflow { tensor: name, dims });
    };
    let Some(ty) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownTensorType { tensor: name, type_id });
    };
    // A 0-dimensional tensor is a scalar: one row of one element.
    let ne0 = dims.first().copied().unwrap_or(1);
    if !ne0.is_multiple_of(ty.block_size() as u64) {
        return Err(GgufError::RowNotBlockMultiple { tensor: name, ty, ne0 });
    }
    let Some(n_bytes) = byte_size(ty, n_elements) else {
        return Err(GgufError::DimsOverflow { tensor: name, dims });
    };
    Ok(TensorInfo { name, dims, ty, offset, n_elements, n_bytes })
}
