//! Every kernel variant Burrow builds, as the WGSL it compiles: for tests that compile each one
//! natively (naga, under WebGPU's default limits) and in Chromium (Tint), so a variant no model in
//! the tests happens to reach is still checked.

use burn::backend::wgpu::KernelSource;

use crate::kernel::{Form, Named, QKernel};
use crate::matvec::Matvec;
use crate::ops::Op;
use crate::quant::WEIGHT_TYPES;

/// One variant: its name, its WGSL, and whether it uses subgroup operations (Tint then needs
/// `enable subgroups;`, which naga does not take).
#[derive(Clone, Debug)]
pub struct ShaderVariant {
    pub name: String,
    pub wgsl: String,
    pub subgroups: bool,
    /// Whether it declares f16 values (`enable f16;`): it compiles only where the device has
    /// `shader-f16`.
    pub f16: bool,
}

/// Head sizes the attention kernels are built for in the tests: small, not a power of two, large,
/// the largest.
const HEAD_DIMS: [usize; 4] = [64, 80, 128, 256];

fn variant<K: KernelSource + Named>(kernel: K, subgroups: bool) -> ShaderVariant {
    let wgsl = kernel.source().complete();
    let f16 = wgsl.contains("enable f16;");
    ShaderVariant { name: kernel.name(), wgsl, subgroups, f16 }
}

/// Every variant: each matrix kernel for each type, the GPU family's matvec with every
/// combination of what it folds in and either reduction, and every other op in its forms, at
/// representative head sizes and row lengths (the kernels generated per length).
pub fn shader_variants() -> Vec<ShaderVariant> {
    let mut out = Vec::new();
    for ty in WEIGHT_TYPES {
        for form in [Form::Matvec, Form::Matmul, Form::Tiles { f16: false }, Form::Tiles { f16: true }, Form::TilesDp4a, Form::Embed, Form::MatvecUnrolled(64), Form::MatvecUnrolled(576)] {
            out.extend(QKernel::new(form, ty).map(|k| variant(k, false)));
        }
        for subgroups in [false, true] {
            for flags in 0..16u8 {
                let [norm, bias, residual, glu] = [0, 1, 2, 3].map(|b| flags >> b & 1 == 1);
                out.push(variant(Matvec::new(ty, 32, norm, bias, residual, glu, subgroups), subgroups));
            }
            out.push(variant(Matvec::new(ty, 64, false, false, false, false, subgroups), subgroups));
        }
    }
    for subgroups in [false, true] {
        out.extend(Op::gpu_variants(subgroups).into_iter().map(|op| variant(op, subgroups)));
    }
    out.extend(Op::cpu_adapter_variants(&HEAD_DIMS).into_iter().map(|op| variant(op, false)));
    out.extend(Op::head_variants(&HEAD_DIMS).into_iter().map(|op| variant(op, false)));
    out.push(variant(crate::bandwidth::Copy, false));
    out
}
