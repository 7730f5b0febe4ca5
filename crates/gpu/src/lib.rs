//! Quantized matmul on WebGPU for Burrow: GGUF weight matrices live on the GPU in their block
//! format (never dequantized on the host), and WGSL kernels (`shaders/`) dequantize them in
//! registers while computing `y = x · Wᵀ`.
//!
//! Runs on Burn's wgpu backend without fusion: inputs and outputs are ordinary
//! [`Tensor`]s on a wgpu [`Device`], and the kernels are launched on their raw buffers. Two kernel
//! families ([`Kernels`]): one shaped for GPUs, one for the CPU adapters (lavapipe, SwiftShader)
//! the tests run on. Neither needs `shader-f16` or subgroups; the GPU family uses subgroups where
//! the device has them. The library has no platform code (no files, threads or blocking calls),
//! so it builds for wasm32 too.

mod bandwidth;
mod cache;
mod device;
mod error;
mod kernel;
mod matvec;
mod ops;
mod quant;
mod shaders;
mod step;
mod variants;

pub use bandwidth::CopyBench;
pub use cache::KvCache;
pub use device::{
    device_memory, exact_fit, is_wgpu_device, launches, max_binding_bytes, record_dispatches, take_dispatches, Adapter,
    DeviceMemory, Dispatch, Family, Gpu, KernelChoice, Kernels, TASKS_PER_SUBMIT,
};
pub use error::GpuError;
#[cfg(not(target_family = "wasm"))]
pub use matvec::trace_matvec_loads;
pub use matvec::{matvec, Fold};
#[cfg(not(target_family = "wasm"))]
pub use ops::trace_attention_loads;
pub use ops::{
    add_rms_norm, attention, attention_supports, choose, gated, rms_norm, rms_norm_add, rms_norm_supports, rope_kv,
    AttentionParams, Choice, Columns, Gate, RopePairs, RopeParams, RopeRows, MAX_HEAD_DIM,
};
pub use quant::{supported, supports_matrix, MatvecKernel, QuantTensor, QuantUpload, ROW_ALIGN, WEIGHT_TYPES};
pub use step::StepTokens;
pub use variants::{shader_variants, ShaderVariant};

use burn::backend::wgpu::{into_contiguous, CubeTensor};
use burn::backend::Cube;
use burn::tensor::{DType, Tensor};
use device::{is_wgpu, MAX_WORKGROUPS_PER_DIM};
use kernel::{dispatch_reading, f32_tensor, Form, QKernel};
pub use kernel::{TILE_ROWS, TILE_TOKENS, TILE_TOKENS_F16};
use quant::Part;
use shaders::WORKGROUP_SIZE;

/// `y[T, out] = x[T, in] · Wᵀ` for a weight `w` of shape `[out, in]`, on `x`'s wgpu device.
///
/// `x` must be an f32 tensor on the wgpu device `w` was uploaded to. T = 1 (decode) runs
/// `w.matvec_kernel()` (`shaders/matvec.wgsl`, `qmatvec.wgsl` or `qmatvec_unrolled.wgsl`). T > 1
/// (prefill): the GPU family (a `Lanes` decode kernel) runs `shaders/matmul_tiles.wgsl`, tiles
/// of [`TILE_ROWS`] × [`TILE_TOKENS`] in workgroup memory; the CPU-adapter family
/// `shaders/qmatvec.wgsl` for every token at once for the types with a `dot4` form, otherwise
/// `shaders/qmatmul.wgsl` with tiles of `TOKEN_TILE` tokens in registers. Once per buffer of `w`.
/// The work is queued, not awaited: read the result asynchronously in a browser.
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
    if tokens == 1 && matches!(w.matvec_kernel(), MatvecKernel::Lanes { .. }) {
        return matvec(&x, &[(w, None)], &Fold::default());
    }
    let x = f32_on(x, w)?;
    if tokens * cols > u32::MAX as usize {
        return Err(GpuError::TooLarge(format!("input [{tokens}, {cols}]")));
    }
    let x = into_contiguous(x);
    let mut outputs = Vec::with_capacity(w.parts().len());
    for part in w.parts() {
        outputs.push(qmatmul_part(&x, [tokens, cols], w, part)?);
    }
    Ok(if outputs.len() == 1 {
        outputs.remove(0)
    } else {
        Tensor::cat(outputs, 1)
    })
}

fn qmatmul_part(
    x: &CubeTensor,
    [tokens, cols]: [usize; 2],
    w: &QuantTensor,
    part: &Part,
) -> Result<Tensor<2>, GpuError> {
    let rows = part.rows;
    let max_binding = x.client.properties().memory.max_page_size;
    let out_elems = tokens
        .checked_mul(rows)
        .filter(|&n| n <= u32::MAX as usize && (n as u64) * 4 <= max_binding)
        .ok_or_else(|| GpuError::TooLarge(format!("output [{tokens}, {rows}]")))?;
    let y = x.client.empty(out_elems * 4);
    let groups = rows.div_ceil(WORKGROUP_SIZE);
    // [in, out, T, row_stride, base, add]: the unrolled kernel reads segments of rows.
    let params = |n: usize, base: usize, add: bool| [n, rows, tokens, w.row_stride(), base, usize::from(add)].map(|v| v as u32);
    let part_bytes = (rows * w.row_bytes()) as u64;
    let buffers = [&part.handle, &x.handle, &y];
    if let (true, MatvecKernel::Lanes { f16, dp4a, .. }) = (tokens > 1, w.matvec_kernel()) {
        // The 8-bit tiles read the types whose chunks are 8-bit codes; the others take the f16 or
        // f32 tiles.
        let form = if dp4a && shaders::codes(w.ty()).is_some() { Form::TilesDp4a } else { Form::Tiles { f16 } };
        let kernel = qkernel(form, w)?;
        let tiles = tokens.div_ceil(form.token_tile());
        let count = [rows.div_ceil(kernel::TILE_ROWS), tiles];
        let size = kernel.workgroup_size();
        let read = part_bytes * tiles as u64;
        dispatch_reading(&x.client, kernel, size, count, &buffers, &params(cols, part.base, false), read)?;
    } else if tokens == 1 && w.matvec_kernel() == MatvecKernel::Unrolled {
        // One token on llvmpipe: the unrolled kernel, in segments of long rows. For several tokens
        // the rows kernel beat running it once per token there too (lavapipe, T = 32, Q4_1: 13.4
        // against 17.8 ms for 576x1536, 5.6 against 7.7 for 576x576, even for 1536x576).
        for (segment, first) in (0..cols).step_by(kernel::SEGMENT_COLS).enumerate() {
            let n = (cols - first).min(kernel::SEGMENT_COLS);
            let x_segment = x.handle.clone().offset_start((first * 4) as u64);
            let base = part.base + burrow_gguf::byte_size(w.ty(), first as u64).unwrap_or(0) as usize;
            let kernel = qkernel(Form::MatvecUnrolled(n), w)?;
            let params = params(n, base, segment > 0);
            let read = (rows * burrow_gguf::byte_size(w.ty(), n as u64).unwrap_or(0) as usize) as u64;
            dispatch_reading(&x.client, kernel, WORKGROUP_SIZE, [groups, 1], &[&part.handle, &x_segment, &y], &params, read)?;
        }
    } else if tokens == 1 || (kernel::rows_prefill(w.ty()) && tokens <= MAX_WORKGROUPS_PER_DIM) {
        // One workgroup row per token.
        let kernel = qkernel(Form::Matvec, w)?;
        let size = kernel.workgroup_size();
        let count = [rows.div_ceil(kernel::MATVEC_ROWS * size), tokens];
        let read = part_bytes * tokens as u64;
        dispatch_reading(&x.client, kernel, size, count, &buffers, &params(cols, part.base, false), read)?;
    } else {
        let tiles = tokens.div_ceil(kernel::TOKEN_TILE);
        let read = part_bytes * tiles as u64;
        let kernel = qkernel(Form::Matmul, w)?;
        dispatch_reading(&x.client, kernel, WORKGROUP_SIZE, [groups, tiles], &buffers, &params(cols, part.base, false), read)?;
    }
    Ok(f32_tensor(&x.client, &x.device, y, [tokens, rows]))
}

/// Embedding lookup: row `ids[t]` of the table `w` (`[vocab, n_embd]`), dequantized, for every
/// token of `step`: `y[T, n_embd]` on `w`'s device (`shaders/qembed.wgsl`).
///
/// # Errors
///
/// [`GpuError::Shape`] if an id is past the last row, [`GpuError::DeviceMismatch`] if `step` is
/// on another device, [`GpuError::TooLarge`] past the kernel's limits.
pub fn qembed(step: &StepTokens, w: &QuantTensor) -> Result<Tensor<2>, GpuError> {
    let tokens = step.len();
    if let Some(bad) = step.ids().iter().find(|&&id| id as usize >= w.rows()) {
        return Err(GpuError::Shape(format!(
            "id {bad} is past the table's {} rows",
            w.rows()
        )));
    }
    let cols = w.cols();
    let client: burn::cubecl::client::Client = w.device().client();
    if *w.device() != step.device {
        return Err(GpuError::DeviceMismatch);
    }
    let out_elems = tokens
        .checked_mul(cols)
        .filter(|&n| (n as u64) * 4 <= client.properties().memory.max_page_size)
        .ok_or_else(|| GpuError::TooLarge(format!("output [{tokens}, {cols}]")))?;
    let y = client.empty(out_elems * 4);
    let count = [(cols / 32).div_ceil(WORKGROUP_SIZE), tokens];
    // Each token's row is read once (the table's other rows not at all).
    let read = (tokens * w.row_bytes()) as u64;
    for part in w.parts() {
        dispatch_reading(
            &client,
            qkernel(Form::Embed, w)?,
            WORKGROUP_SIZE,
            count,
            &[&part.handle, &step.handle, &y],
            &[cols, part.rows, tokens, w.row_stride(), part.base, part.first_row].map(|v| v as u32),
            if part.first_row == 0 { read } else { 0 },
        )?;
    }
    Ok(f32_tensor(&client, w.device(), y, [tokens, cols]))
}

/// Checks that `x` is an f32 tensor on `w`'s wgpu device and returns its primitive.
pub(crate) fn f32_on(x: Tensor<2>, w: &QuantTensor) -> Result<CubeTensor, GpuError> {
    let x: CubeTensor = x
        .try_into_primitive::<Cube>()
        .map_err(|e| GpuError::NotWgpu(format!("x is not on a wgpu device: {e:?}")))?;
    if !is_wgpu(&x.device) {
        return Err(GpuError::NotWgpu(format!("x is on {:?}", x.device)));
    }
    if x.device != *w.device() {
        return Err(GpuError::DeviceMismatch);
    }
    if x.dtype != DType::F32 {
        return Err(GpuError::DType(x.dtype));
    }
    Ok(x)
}

/// The kernel of `form` for `w`'s block type.
fn qkernel(form: Form, w: &QuantTensor) -> Result<QKernel, GpuError> {
    QKernel::new(form, w.ty()).ok_or(GpuError::UnsupportedType(w.ty()))
}
