use crate::error::GpuError;
use burn::backend::{CubeDevice, DispatchDevice};
use burn::cubecl::client::Client;
use burn::cubecl::server::Handle;
use burn::tensor::Device;
use burrow_gguf::{byte_size, GgmlType};

/// Values the kernels dequantize at a time (`dequant32` in `shaders/dequant/`): a row's length
/// must be a multiple of it, and of the type's block size.
const CHUNK: usize = 32;

/// The kernels address the weight buffer with u32 byte offsets.
const MAX_WEIGHT_BYTES: u64 = u32::MAX as u64;

/// Whether `device` is a device of the cubecl wgpu runtime.
pub(crate) fn is_wgpu(device: &CubeDevice) -> bool {
    matches!(device, CubeDevice::Wgpu(_))
}

/// A weight matrix `[out, in]` in a GGUF block format, held in one GPU storage buffer exactly as
/// the GGUF file stores it (zero-padded to a whole number of u32 words). Clones share the buffer
/// (a tied embedding and output head need one upload).
#[derive(Clone, Debug)]
pub struct QuantTensor {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    device: CubeDevice,
    handle: Handle,
}

impl QuantTensor {
    /// Uploads a GGUF tensor of type `ty` with GGUF dimensions `dims` (`dims[0]` = ne0 = `in`, the
    /// contiguous one; `dims[1]` = `out`; further dimensions must be 1) to the wgpu `device`.
    ///
    /// Supported types: F32, F16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K. `in` must be a multiple of 32
    /// (and of 256 for the K-quants, their block size). Initialize the device first
    /// (`Device::wgpu_options().init()` natively, `init_async` in a browser): an uninitialized
    /// device is acquired here, which cannot report a missing adapter as an error.
    ///
    /// # Errors
    ///
    /// [`GpuError::UnsupportedType`], [`GpuError::Shape`] for dimensions the kernels do not take,
    /// [`GpuError::Size`] if `bytes` is not exactly the tensor, [`GpuError::NotWgpu`] if `device`
    /// is not a wgpu device, [`GpuError::TooLarge`] past the device's storage binding size.
    pub fn new(
        ty: GgmlType,
        dims: &[u64],
        bytes: &[u8],
        device: &Device,
    ) -> Result<Self, GpuError> {
        if !supported(ty) {
            return Err(GpuError::UnsupportedType(ty));
        }
        let (cols, rows) = match dims {
            [cols, rows, rest @ ..] if rest.iter().all(|&d| d == 1) => (*cols, *rows),
            _ => return Err(GpuError::Shape(format!("{dims:?} is not a 2-D matrix"))),
        };
        let chunk = (CHUNK as u64).max(ty.block_size() as u64);
        if rows == 0 || cols == 0 || cols % chunk != 0 {
            return Err(GpuError::Shape(format!(
                "{dims:?}: {ty} rows need a positive multiple of {chunk} values and at least one row"
            )));
        }
        let too_large = || GpuError::TooLarge(format!("{ty} {dims:?}"));
        let row_bytes = byte_size(ty, cols).ok_or_else(too_large)?;
        let expected = row_bytes.checked_mul(rows).ok_or_else(too_large)?;
        if bytes.len() as u64 != expected {
            return Err(GpuError::Size {
                expected,
                found: bytes.len() as u64,
            });
        }
        let device = match device.as_dispatch() {
            DispatchDevice::Cube(d) if is_wgpu(d) => d.clone(),
            other => return Err(GpuError::NotWgpu(format!("{other:?}"))),
        };
        let client: Client = device.client();
        let padded = expected.next_multiple_of(4);
        if padded > MAX_WEIGHT_BYTES.min(client.properties().memory.max_page_size) {
            return Err(too_large());
        }
        let handle = if padded == expected {
            client.create_from_slice(bytes)
        } else {
            let mut words = bytes.to_vec();
            words.resize(padded as usize, 0);
            client.create_from_slice(&words)
        };
        Ok(QuantTensor {
            ty,
            rows: rows as usize,
            cols: cols as usize,
            row_bytes: row_bytes as usize,
            device,
            handle,
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

    /// Bytes of the weight data (without the padding to u32).
    pub fn size_bytes(&self) -> usize {
        self.rows * self.row_bytes
    }

    pub(crate) fn device(&self) -> &CubeDevice {
        &self.device
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Whether a kernel reads `ty` (`shaders/dequant/<type>.wgsl`).
fn supported(ty: GgmlType) -> bool {
    crate::kernel::dequant_source(ty).is_some()
}
