//! Quantized matmul on WebGPU for Burrow: GGUF weight matrices live on the GPU in their block
//! format (never dequantized on the host), and WGSL kernels (`shaders/`) dequantize them in
//! registers while computing `y = x · Wᵀ`.
//!
//! Runs on Burn's wgpu backend without fusion: inputs and outputs are ordinary
//! [`Tensor`]s on a wgpu [`Device`], and the kernels are launched on their raw buffers. The kernels
//! need neither `shader-f16` nor subgroups. The library has no platform code (no files, threads or
//! blocking calls), so it builds for wasm32 too.

mod error;
mod kernel;
mod quant;

pub use error::GpuError;
pub use quant::QuantTensor;

use burn::backend::wgpu::{into_contiguous, CubeTensor, SourceKernel};
use burn::backend::Cube;
use burn::cubecl::prelude::CubeCount;
use burn::cubecl::server::KernelArguments;
use burn::tensor::{DType, Shape, Tensor};
use kernel::{Form, QKernel};

/// WebGPU's default `maxComputeWorkgroupsPerDimension`: the most workgroups one dispatch
/// dimension may hold on any adapter.
const MAX_WORKGROUPS_PER_DIM: usize = 65_535;

/// `y[T, out] = x[T, in] · Wᵀ` for a weight `w` of shape `[out, in]`, on `x`'s wgpu device.
///
/// `x` must be an f32 tensor on the wgpu device `w` was uploaded to. T = 1 (decode) runs the
/// matrix-vector kernel (`shaders/qmatvec.wgsl`), T > 1 (prefill) the token-tiled kernel
/// (`shaders/qmatmul.wgsl`). The work is queued, not awaited: read the result asynchronously in
/// a browser.
///
/// # Errors
///
/// [`GpuError::NotWgpu`] if `x` is not on a wgpu device, [`GpuError::DeviceMismatch`] if it is on
/// another device than `w`, [`GpuError::DType`] if it is not f32, [`GpuError::Shape`] if its inner
/// dimension is not `w`'s `in` or it has no rows, [`GpuError::TooLarge`] if the output or the
/// dispatch exceeds the kernels' limits.
pub fn qmatmul(x: Tensor<2>, w: &QuantTensor) -> Result<Tensor<2>, GpuError> {
    let [tokens, cols] = x.dims();
    if cols != w.cols() || tokens == 0 {
        return Err(GpuError::Shape(format!(
            "x is [{tokens}, {cols}], the weight needs [T >= 1, {}]",
            w.cols()
        )));
    }
    let x: CubeTensor = x
        .try_into_primitive::<Cube>()
        .map_err(|e| GpuError::NotWgpu(format!("x is not on a wgpu device: {e:?}")))?;
    if !quant::is_wgpu(&x.device) {
        return Err(GpuError::NotWgpu(format!("x is on {:?}", x.device)));
    }
    if x.device != *w.device() {
        return Err(GpuError::DeviceMismatch);
    }
    if x.dtype != DType::F32 {
        return Err(GpuError::DType(x.dtype));
    }
    let rows = w.rows();
    let max_binding = x.client.properties().memory.max_page_size;
    let out_elems = tokens
        .checked_mul(rows)
        .filter(|&n| n <= u32::MAX as usize && (n as u64) * 4 <= max_binding)
        .ok_or_else(|| GpuError::TooLarge(format!("output [{tokens}, {rows}]")))?;
    if tokens * cols > u32::MAX as usize {
        return Err(GpuError::TooLarge(format!("input [{tokens}, {cols}]")));
    }

    let (form, count) = if tokens == 1 {
        (Form::Matvec, [rows.div_ceil(kernel::MATVEC_ROWS), 1])
    } else {
        (
            Form::Matmul,
            [
                rows.div_ceil(kernel::WORKGROUP_SIZE),
                tokens.div_ceil(kernel::TOKEN_TILE),
            ],
        )
    };
    if count.iter().any(|&c| c > MAX_WORKGROUPS_PER_DIM) {
        return Err(GpuError::TooLarge(format!(
            "{count:?} workgroups for [{tokens}, {cols}] x [{rows}, {cols}]"
        )));
    }

    let x = into_contiguous(x);
    let client = x.client.clone();
    let y = client.empty(out_elems * 4);
    let params: Vec<u8> = [cols, rows, tokens, w.row_bytes()]
        .iter()
        .flat_map(|&v| (v as u32).to_le_bytes())
        .collect();
    let params = client.create_from_slice(&params);
    let kernel = QKernel::new(form, w.ty()).ok_or(GpuError::UnsupportedType(w.ty()))?;
    let cube_dim = kernel.cube_dim();
    client.launch(
        Box::new(SourceKernel::new(kernel, cube_dim)),
        CubeCount::Static(count[0] as u32, count[1] as u32, 1),
        KernelArguments::new()
            .with_buffer(w.handle().clone().binding())
            .with_buffer(x.handle.clone().binding())
            .with_buffer(y.clone().binding())
            .with_buffer(params.binding()),
    );
    let y = CubeTensor::new_contiguous(
        client,
        x.device.clone(),
        Shape::new([tokens, rows]),
        y,
        DType::F32,
    );
    Ok(Tensor::from_primitive::<Cube>(y))
}
