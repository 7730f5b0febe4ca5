//! The WGSL sources: a kernel file (`qmatmul.wgsl` or `qembed.wgsl`) followed by the shared byte
//! readers (`qcommon.wgsl`) and one type's `dequant32` (`dequant/<type>.wgsl`).

use burn::backend::wgpu::{CubeDim, KernelSource, SourceTemplate};
use burn::cubecl::prelude::KernelId;
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

    pub(crate) fn cube_dim(&self) -> CubeDim {
        CubeDim::new_1d(WORKGROUP_SIZE as u32)
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
