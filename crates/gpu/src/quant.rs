use crate::device::{max_binding_bytes, wgpu_device};
use crate::error::GpuError;
use burn::backend::CubeDevice;
use burn::cubecl::client::Client;
use burn::cubecl::bytes::Bytes;
use burn::cubecl::server::Handle;
use burn::tensor::Device;
use crate::device::{Family, Kernels};
use burrow_gguf::{byte_size, GgmlType};
use std::ops::Range;

/// Values the kernels dequantize at a time (`dequant32` in `shaders/dequant/`): a row's length
/// must be a multiple of it, and of the type's block size.
const CHUNK: usize = 32;

/// The kernels address a weight buffer with u32 byte offsets.
const MAX_BUFFER_BYTES: u64 = u32::MAX as u64;

/// Every row starts at a multiple of this many bytes of its buffer (rows are zero-padded), so
/// a kernel may read a row as `vec4<u32>`s: the unrolled decode kernel
/// (`shaders/qmatvec_unrolled.wgsl`) loads 16 bytes per load. Costs at most 15 bytes a row
/// (2% for SmolLM2's 360-byte Q4_1 rows).
pub const ROW_ALIGN: usize = 16;

/// cubecl keeps the bytes of queued writes until it submits them: an upload submits after this
/// many, so a large tensor never gathers in host (wasm) memory.
const SUBMIT_AFTER_BYTES: usize = 4 << 20;

/// The decode (one-token) kernels of [`crate::qmatmul`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatvecKernel {
    /// `shaders/qmatvec.wgsl`: four rows per invocation, a loop over their blocks. Every type,
    /// every adapter.
    Rows,
    /// `shaders/qmatvec_unrolled.wgsl`: the row written out for its length, for llvmpipe (Mesa's
    /// CPU driver). Q4_0, Q4_1, Q8_0, F16 and F32. One token only: prefill runs the same kernels
    /// as with `Rows`.
    Unrolled,
    /// `shaders/matvec.wgsl` (the GPU family): lanes split each row, a workgroup reduces several
    /// rows, with subgroup sums or not. Every type. Several tokens run the family's tiles
    /// (`shaders/matmul_tiles.wgsl`), in f16 or f32 workgroup memory, or with `dp4a` 8-bit
    /// tiles (`shaders/matmul_tiles_dp4a.wgsl`) for the types they read.
    Lanes { subgroups: bool, f16: bool, dp4a: bool },
}

impl MatvecKernel {
    /// The decode kernel of a kernel family for `ty` on the adapter `device` runs on.
    pub(crate) fn of(kernels: Kernels, ty: GgmlType, device: &CubeDevice) -> MatvecKernel {
        match kernels.family {
            Family::Gpu => MatvecKernel::Lanes { subgroups: kernels.subgroups, f16: kernels.f16, dp4a: kernels.dp4a },
            Family::CpuAdapter => preferred_matvec(&device.client(), ty),
        }
    }
}

/// The decode kernel for `ty` rows on the adapter `client` runs on: the unrolled
/// one where it reads them and the adapter is llvmpipe (lavapipe natively, or behind ANGLE),
/// whose SIMD code runs it 2.2x faster (Q4_1; 2.5x for Q8_0); elsewhere the rows kernel, which
/// compiles at once and keeps the shader small.
fn preferred_matvec(client: &Client, ty: GgmlType) -> MatvecKernel {
    let llvmpipe = client.properties().identity.name.to_lowercase().contains("llvmpipe");
    if llvmpipe && crate::kernel::unrolled_supports(ty) {
        MatvecKernel::Unrolled
    } else {
        MatvecKernel::Rows
    }
}

/// Consecutive rows held in one GPU buffer, starting at byte `base` of it, `row_stride` bytes apart.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub first_row: usize,
    pub rows: usize,
    pub base: usize,
    pub handle: Handle,
    /// Bytes of the buffer as allocated (the handle may report its pool slot's rounded size).
    pub bytes: usize,
}

/// A weight matrix `[out, in]` in a GGUF block format, held on the GPU as the GGUF file stores
/// it, each row padded to [`ROW_ALIGN`] bytes. A matrix larger than the device's storage binding limit is uploaded as several
/// buffers of whole rows, each bound on its own. Clones and row slices share the buffers (a tied
/// embedding and output head need one upload; a fused QKV projection is split without copying).
#[derive(Clone, Debug)]
pub struct QuantTensor {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    row_stride: usize,
    matvec: MatvecKernel,
    device: CubeDevice,
    parts: Vec<Part>,
}

impl QuantTensor {
    /// Uploads a GGUF tensor of type `ty` with GGUF dimensions `dims` to the wgpu `device`.
    /// `dims[0]` (ne0) is `in`, the contiguous one; the product of the others is `out`, so a stack
    /// of matrices (`[in, out, n_expert]`) becomes one `[n_expert · out, in]` matrix whose
    /// experts are [`QuantTensor::slice_rows`].
    ///
    /// Supported types: [`WEIGHT_TYPES`]. `in` must be a multiple of 32 (and of 256 for the
    /// K-quants and IQ4_XS, their block size). Initialize the device first
    /// (`Device::wgpu_options().init()` natively, `init_async` in a browser): an uninitialized
    /// device is acquired here, which cannot report a missing adapter as an error.
    ///
    /// # Errors
    ///
    /// [`GpuError::UnsupportedType`], [`GpuError::Shape`] for dimensions the kernels do not take,
    /// [`GpuError::Size`] if `bytes` is not exactly the tensor, [`GpuError::NotWgpu`] if `device`
    /// is not a wgpu device, [`GpuError::TooLarge`] if one row exceeds a storage binding.
    pub fn new(
        ty: GgmlType,
        dims: &[u64],
        bytes: &[u8],
        device: &Device,
    ) -> Result<Self, GpuError> {
        let mut upload = QuantTensor::upload(ty, dims, device)?;
        upload.push(bytes)?;
        upload.finish()
    }

    /// [`QuantTensor::new`] with buffers of at most `limit` bytes (at most the device's own
    /// limit): tests use it to exercise the split path on a device with a large limit.
    pub fn with_binding_limit(
        ty: GgmlType,
        dims: &[u64],
        bytes: &[u8],
        device: &Device,
        limit: u64,
    ) -> Result<Self, GpuError> {
        let mut upload = QuantTensor::upload_with_binding_limit(ty, dims, device, limit)?;
        upload.push(bytes)?;
        upload.finish()
    }

    /// Allocates the GPU buffers of a tensor whose bytes will arrive in pieces
    /// ([`QuantUpload::push`]), as [`QuantTensor::new`] describes.
    ///
    /// # Errors
    ///
    /// As [`QuantTensor::new`], except the size, which [`QuantUpload::finish`] checks.
    pub fn upload(ty: GgmlType, dims: &[u64], device: &Device) -> Result<QuantUpload, GpuError> {
        Self::allocate(ty, dims, device)?.upload_rows(0..usize::MAX)
    }

    /// The GPU buffers of a tensor, allocated but not written: each range of rows is then written
    /// through its own [`QuantTensor::upload_rows`]. A model fuses matrices that one input
    /// multiplies (Q, K and V; gate and up) this way, each GGUF tensor streaming into its rows.
    ///
    /// # Errors
    ///
    /// As [`QuantTensor::new`], except the size.
    pub fn allocate(ty: GgmlType, dims: &[u64], device: &Device) -> Result<QuantTensor, GpuError> {
        let limit = max_binding_bytes(device)
            .ok_or_else(|| GpuError::NotWgpu(format!("{:?}", device.as_dispatch())))?;
        Self::allocate_with_binding_limit(ty, dims, device, limit)
    }

    /// [`QuantTensor::upload`] with buffers of at most `limit` bytes (see [`QuantTensor::with_binding_limit`]).
    pub fn upload_with_binding_limit(
        ty: GgmlType,
        dims: &[u64],
        device: &Device,
        limit: u64,
    ) -> Result<QuantUpload, GpuError> {
        Self::allocate_with_binding_limit(ty, dims, device, limit)?.upload_rows(0..usize::MAX)
    }

    /// [`QuantTensor::allocate`] with buffers of at most `limit` bytes (see [`QuantTensor::with_binding_limit`]).
    pub fn allocate_with_binding_limit(
        ty: GgmlType,
        dims: &[u64],
        device: &Device,
        limit: u64,
    ) -> Result<QuantTensor, GpuError> {
        if !supported(ty) {
            return Err(GpuError::UnsupportedType(ty));
        }
        let (cols, rows) = match dims {
            [cols, rest @ ..] if !rest.is_empty() => (
                *cols,
                rest.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).unwrap_or(0),
            ),
            _ => return Err(GpuError::Shape(format!("{dims:?} is not a matrix"))),
        };
        let chunk = (CHUNK as u64).max(ty.block_size() as u64);
        if rows == 0 || cols == 0 || cols % chunk != 0 {
            return Err(GpuError::Shape(format!(
                "{dims:?}: {ty} rows need a positive multiple of {chunk} values and at least one row"
            )));
        }
        let too_large = || GpuError::TooLarge(format!("{ty} {dims:?}"));
        let row_bytes = byte_size(ty, cols).ok_or_else(too_large)?;
        row_bytes.checked_mul(rows).ok_or_else(too_large)?;
        let device = wgpu_device(device).ok_or_else(|| GpuError::NotWgpu(format!("{:?}", device.as_dispatch())))?.clone();
        let client: Client = device.client();
        let limit = limit
            .min(client.properties().memory.max_page_size)
            .min(MAX_BUFFER_BYTES);
        let row_stride = row_bytes.next_multiple_of(ROW_ALIGN as u64);
        let rows_per_part = (limit / row_stride).min(rows);
        if rows_per_part == 0 {
            return Err(too_large());
        }
        let (rows, row_bytes, row_stride) = (rows as usize, row_bytes as usize, row_stride as usize);
        // Weights live as long as the model: exact-fit persistent allocations, not pages of a
        // pool sized for activations (which left ~30% of the weights' size unused).
        let parts: Vec<Part> = client.memory_persistent_allocation((), |()| {
            (0..rows)
                .step_by(rows_per_part as usize)
                .map(|first_row| {
                    let n = (rows - first_row).min(rows_per_part as usize);
                    Part {
                        first_row,
                        rows: n,
                        base: 0,
                        handle: client.empty(n * row_stride),
                        bytes: n * row_stride,
                    }
                })
                .collect()
        });
        Ok(QuantTensor {
            ty,
            rows,
            cols: cols as usize,
            row_bytes,
            row_stride,
            matvec: preferred_matvec(&client, ty),
            device,
            parts,
        })
    }

    /// An upload of the bytes of rows `range` (clipped to the last row) of this tensor's buffers,
    /// which arrive in order, in pieces of any size; [`QuantUpload::finish`] returns those rows
    /// as a tensor of their own. Rows already written are written again.
    ///
    /// # Errors
    ///
    /// [`GpuError::Shape`] if the range holds no row.
    pub fn upload_rows(&self, range: Range<usize>) -> Result<QuantUpload, GpuError> {
        let tensor = self.slice_rows(range.start..range.end.min(self.rows))?;
        let client: Client = self.device.client();
        Ok(QuantUpload { tensor, client, received: 0, part: 0, written: 0, pending: Vec::new(), unsubmitted: 0 })
    }

    /// Rows `range` of this matrix as a matrix of their own, sharing the GPU buffers.
    ///
    /// # Errors
    ///
    /// [`GpuError::Shape`] if the range is empty or past the last row.
    pub fn slice_rows(&self, range: Range<usize>) -> Result<QuantTensor, GpuError> {
        if range.start >= range.end || range.end > self.rows {
            return Err(GpuError::Shape(format!(
                "rows {range:?} of a matrix with {} rows",
                self.rows
            )));
        }
        let parts = self
            .parts
            .iter()
            .filter_map(|p| {
                let start = range.start.max(p.first_row);
                let end = range.end.min(p.first_row + p.rows);
                (start < end).then(|| Part {
                    first_row: start - range.start,
                    rows: end - start,
                    base: p.base + (start - p.first_row) * self.row_stride,
                    handle: p.handle.clone(),
                    bytes: p.bytes,
                })
            })
            .collect();
        Ok(QuantTensor {
            rows: range.len(),
            parts,
            device: self.device.clone(),
            ..*self
        })
    }

    /// The GGUF type of the blocks.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// `out`: the number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `in`: the number of columns (inputs), GGUF's ne0.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one row in the GGUF layout.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Bytes from one row to the next on the GPU: [`QuantTensor::row_bytes`] padded to
    /// [`ROW_ALIGN`].
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    /// The kernel [`crate::qmatmul`] runs for one token: chosen for the adapter at upload.
    pub fn matvec_kernel(&self) -> MatvecKernel {
        self.matvec
    }

    /// This matrix with the decode kernel of `kernels`' family.
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.matvec = MatvecKernel::of(kernels, self.ty, &self.device);
        self
    }

    /// This matrix with `kernel` for one-token products (tests compare both on one adapter).
    ///
    /// # Errors
    ///
    /// [`GpuError::UnsupportedType`] if `kernel` does not read this matrix's type or row length.
    pub fn with_matvec_kernel(mut self, kernel: MatvecKernel) -> Result<Self, GpuError> {
        if kernel == MatvecKernel::Unrolled && !crate::kernel::unrolled_supports(self.ty)
            || matches!(kernel, MatvecKernel::Lanes { .. }) && crate::shaders::slices(self.ty).is_none()
        {
            return Err(GpuError::UnsupportedType(self.ty));
        }
        self.matvec = kernel;
        Ok(self)
    }

    /// Bytes of the weight data (without the rows' padding).
    pub fn size_bytes(&self) -> usize {
        self.rows * self.row_bytes
    }

    /// How many storage buffers (bindings) the rows are spread over.
    pub fn buffer_count(&self) -> usize {
        self.parts.len()
    }

    pub(crate) fn device(&self) -> &CubeDevice {
        &self.device
    }

    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }
}

/// Every weight type both kernel families read from its GGUF blocks, decode and prefill
/// (`shaders/dequant/<type>.wgsl`, `shaders/slices/<type>.wgsl`).
pub const WEIGHT_TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// Whether the kernels read `ty` (one of [`WEIGHT_TYPES`]).
pub fn supported(ty: GgmlType) -> bool {
    WEIGHT_TYPES.contains(&ty)
}

/// Whether a `[out, in]` matrix (GGUF ne0 = `cols`) of `ty` can be a [`QuantTensor`].
pub fn supports_matrix(ty: GgmlType, cols: u64) -> bool {
    let chunk = (CHUNK as u64).max(ty.block_size() as u64);
    supported(ty) && cols > 0 && cols % chunk == 0
}

/// A [`QuantTensor`] whose bytes arrive in order, in pieces of any size: each piece is written to
/// its GPU buffer as it arrives, so the host never holds the whole tensor (a browser streams a
/// model through the wasm heap, which never shrinks).
pub struct QuantUpload {
    tensor: QuantTensor,
    client: Client,
    /// Bytes of the tensor received so far.
    received: usize,
    /// The part being written, and how many of its bytes are on the GPU.
    part: usize,
    written: usize,
    /// Received bytes of the part not written yet, with the rows' padding.
    pending: Vec<u8>,
    /// Bytes written since the last submission.
    unsubmitted: usize,
}

impl QuantUpload {
    /// The next bytes of the tensor.
    ///
    /// # Errors
    ///
    /// [`GpuError::Size`] past the tensor's size, [`GpuError::Device`] if the device failed.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), GpuError> {
        let total = self.tensor.size_bytes();
        if self.received + bytes.len() > total {
            return Err(GpuError::Size { expected: total as u64, found: (self.received + bytes.len()) as u64 });
        }
        let (row_bytes, row_stride) = (self.tensor.row_bytes, self.tensor.row_stride);
        while !bytes.is_empty() {
            let take = bytes.len().min(row_bytes - self.received % row_bytes);
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.received += take;
            if self.received % row_bytes != 0 {
                continue;
            }
            self.pending.resize(self.pending.len() + row_stride - row_bytes, 0);
            let part = &self.tensor.parts[self.part];
            if self.received / row_bytes == part.first_row + part.rows {
                self.write();
                self.part += 1;
                self.written = 0;
            }
        }
        // Whole padded rows are whole words; a row cut between pushes waits for its end.
        self.write();
        if self.unsubmitted >= SUBMIT_AFTER_BYTES {
            self.client.flush().map_err(|e| GpuError::Device(format!("{e:?}")))?;
            self.unsubmitted = 0;
        }
        Ok(())
    }

    /// Writes the pending whole rows at the part's write position.
    fn write(&mut self) {
        let n = self.pending.len() / self.tensor.row_stride * self.tensor.row_stride;
        if n == 0 {
            return;
        }
        let part = &self.tensor.parts[self.part];
        let at = part.base + self.written;
        let target = part.handle.clone().offset_start(at as u64).offset_end((part.bytes - at - n) as u64);
        let data: Vec<u8> = self.pending.drain(..n).collect();
        self.client.write(&target, Bytes::from_bytes_vec(data));
        self.written += n;
        self.unsubmitted += n;
    }

    /// The tensor, once every byte has arrived.
    ///
    /// # Errors
    ///
    /// [`GpuError::Size`] if bytes are missing, [`GpuError::Device`] if the device failed.
    pub fn finish(self) -> Result<QuantTensor, GpuError> {
        let total = self.tensor.size_bytes();
        if self.received != total {
            return Err(GpuError::Size { expected: total as u64, found: self.received as u64 });
        }
        // cubecl holds each write's bytes until it submits: submit now, so that a model loaded
        // tensor by tensor never holds more than a piece of one in (wasm) memory.
        self.client.flush().map_err(|e| GpuError::Device(format!("{e:?}")))?;
        Ok(self.tensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list and the shader tables agree: a type is listed iff both families have its sources.
    #[test]
    fn weight_types_are_the_types_with_shaders() {
        for ty in GgmlType::ALL {
            let shaders = crate::shaders::dequant(ty).is_some() && crate::shaders::slices(ty).is_some();
            assert_eq!(supported(ty), shaders, "{ty}");
        }
    }
}
