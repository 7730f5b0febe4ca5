//! The WGSL sources: a kernel file (`qmatmul.wgsl` or `qembed.wgsl`) followed by the shared byte
//! readers (`qcommon.wgsl`) and one type's `dequant32` (`dequant/<type>.wgsl`).

use burn::backend::wgpu::{CubeDim, CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::backend::{Cube, CubeDevice};
use burn::cubecl::client::Client;
use burn::cubecl::prelude::{CubeCount, KernelId};
use burn::cubecl::server::{Handle, KernelArguments};
use burn::tensor::{DType, Shape, Tensor};

use crate::error::GpuError;
use burrow_gguf::GgmlType;

/// Invocations per workgroup of both kernels (WebGPU guarantees 256).
pub(crate) const WORKGROUP_SIZE: usize = 64;
/// Tokens per invocation of the tiled kernel: each dequantized chunk is reused this many times.
pub(crate) const TOKEN_TILE: usize = 8;

const QMATMUL: &str = include_str!("../../../shaders/qmatmul.wgsl");
const QEMBED: &str = include_str!("../../../shaders/qembed.wgsl");
const QCOMMON: &str = include_str!("../../../shaders/qcommon.wgsl");

/// The `dequant32` source for `ty`, or `None` if no kernel reads it.
pub(crate) fn dequant_source(ty: GgmlType) -> Option<&'static str> {
    Some(match ty {
        GgmlType::F32 => include_str!("../../../shaders/dequant/f32.wgsl"),
        GgmlType::F16 => include_str!("../../../shaders/dequant/f16.wgsl"),
        GgmlType::Q8_0 => include_str!("../../../shaders/dequant/q8_0.wgsl"),
        GgmlType::Q4_0 => include_str!("../../../shaders/dequant/q4_0.wgsl"),
        GgmlType::Q4_1 => include_str!("../../../shaders/dequant/q4_1.wgsl"),
        GgmlType::Q4_K => include_str!("../../../shaders/dequant/q4_k.wgsl"),
        GgmlType::Q5_K => include_str!("../../../shaders/dequant/q5_k.wgsl"),
        GgmlType::Q6_K => include_str!("../../../shaders/dequant/q6_k.wgsl"),
        _ => return None,
    })
}

/// Which kernel: matmul for decode (one token) or prefill (several), or embedding lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Form {
    Matvec,
    Matmul,
    Embed,
}

/// One compiled variant: a kernel form for one weight type.
pub(crate) struct QKernel {
    form: Form,
    ty: GgmlType,
    dequant: &'static str,
}

impl QKernel {
    /// The kernel for `ty`, or `None` if no kernel reads it.
    pub(crate) fn new(form: Form, ty: GgmlType) -> Option<Self> {
        Some(QKernel {
            form,
            ty,
            dequant: dequant_source(ty)?,
        })
    }
}

impl KernelSource for QKernel {
    fn source(&self) -> SourceTemplate {
        // Decode uses the prefill kernel with a tile of one token: one row per invocation and no
        // barrier. A barrier-based matvec (lanes summed in workgroup memory) ran 2.5x slower on
        // lavapipe and costs far more on SwiftShader, where barriers are emulated.
        let (main, tile) = match self.form {
            Form::Matvec => (QMATMUL, 1),
            Form::Matmul => (QMATMUL, TOKEN_TILE),
            Form::Embed => (QEMBED, 1),
        };
        SourceTemplate::new(main)
            .add_template(QCOMMON)
            .add_template(self.dequant)
            .register("workgroup_size", WORKGROUP_SIZE.to_string())
            .register("token_tile", tile.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.form, self.ty.id()))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Queues `kernel` (a WGSL source with WORKGROUP_SIZE invocations per workgroup) over `count`
/// workgroups, with `buffers` as bindings 0.. and `params` (as u32) as the last binding.
pub(crate) fn dispatch<K: KernelSource + 'static>(
    client: &Client,
    kernel: K,
    count: [usize; 2],
    buffers: &[&Handle],
    params: &[u32],
) -> Result<(), GpuError> {
    if count.iter().any(|&c| c > crate::MAX_WORKGROUPS_PER_DIM) {
        return Err(GpuError::TooLarge(format!("{count:?} workgroups")));
    }
    let params: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
    let params = client.create_from_slice(&params);
    let args = buffers
        .iter()
        .fold(KernelArguments::new(), |args, b| args.with_buffer((*b).clone().binding()))
        .with_buffer(params.binding());
    client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(WORKGROUP_SIZE as u32))),
        CubeCount::Static(count[0] as u32, count[1] as u32, 1),
        args,
    );
    Ok(())
}

/// A contiguous f32 tensor of `shape` over the buffer `handle`.
pub(crate) fn f32_tensor<const D: usize>(
    client: &Client,
    device: &CubeDevice,
    handle: Handle,
    shape: [usize; D],
) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(CubeTensor::new_contiguous(
        client.clone(),
        device.clone(),
        Shape::new(shape),
        handle,
        DType::F32,
    ))
}
